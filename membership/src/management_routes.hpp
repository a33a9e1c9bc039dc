// Internal: the cluster and health routes of the management endpoint.
#pragma once

#include "troupe/membership/management_endpoint.hpp"

#include <nlohmann/json.hpp>

namespace troupe {
class node;
} // namespace troupe

namespace troupe::membership {

struct cluster_view;

void add_cluster_routes(node& n, management_endpoint& ep);

/// The JSON document GET /cluster/members answers with.
nlohmann::json members_json(const cluster_view& v);

} // namespace troupe::membership
