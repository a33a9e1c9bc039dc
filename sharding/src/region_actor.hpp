// Internal: the shard region actor of one entity type on one node (the shell
// around region_core).
#pragma once

#include "troupe/sharding/sharding.hpp"

#include <caf/fwd.hpp>

#include <memory>

namespace troupe::sharding::detail {

/// Starts the region under the node's guardian (stopped at shutdown).
expected<caf::actor> spawn_region(node& n, std::shared_ptr<const entity_type_spec> spec);

} // namespace troupe::sharding::detail
