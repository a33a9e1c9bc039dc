// `troupe journal ...`: inspects any troupe SQLite journal without the user's
// types. Opens the file read-only; never creates, migrates or writes it.
// Exit codes: 0 ok, 1 problems found (verify) or failure, 2 usage error.
#pragma once

#include <string>
#include <vector>

namespace troupe::tools {

int journal_command(const std::vector<std::string>& args);

} // namespace troupe::tools
