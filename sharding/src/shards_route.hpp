// Internal: GET /cluster/shards on the node's management endpoint.
#pragma once

#include <string>

namespace troupe {
class node;
} // namespace troupe

namespace troupe::sharding::detail {

/// Adds `entity_type` to what this node's GET /cluster/shards reports (adding the
/// route with the first type; a node without a management endpoint has none).
void add_to_shards_route(node& n, std::string entity_type);

} // namespace troupe::sharding::detail
