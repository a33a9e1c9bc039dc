// `troupe journal ...`: inspects any troupe SQLite journal without the user's
// types. Every command but `create` opens the file read-only and never creates,
// migrates or writes it; on read-only storage it falls back to SQLite's immutable
// mode and says so. Output goes to `out` (stdout), notes and errors to `err`
// (stderr). Exit codes: 0 ok, 1 problems found (verify) or failure, 2 usage error.
#pragma once

#include <cstdio>
#include <string>
#include <vector>

namespace troupe::tools {

int journal_command(const std::vector<std::string>& args, std::FILE* out = stdout,
                    std::FILE* err = stderr);

} // namespace troupe::tools
