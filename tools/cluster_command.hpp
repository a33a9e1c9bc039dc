// `troupe cluster members|leave|down --http HOST:PORT`: the management endpoint
// of a running node (docs/membership.md, "Management endpoint and CLI").
// Exit codes: 0 ok, 1 the node could not be reached or refused, 2 usage error.
#pragma once

#include <string>
#include <vector>

namespace troupe::tools {

int cluster_command(const std::vector<std::string>& args);

} // namespace troupe::tools
