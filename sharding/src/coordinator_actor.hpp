// Internal: the shard coordinator actor of one entity type (the shell around
// coordinator_core), run as a cluster singleton.
#pragma once

#include "troupe/sharding/sharding.hpp"

#include <caf/fwd.hpp>

#include <memory>

namespace troupe::sharding::detail {

/// Starts a coordinator instance (the singleton manager calls this).
caf::actor spawn_coordinator(caf::actor_system& sys, std::shared_ptr<const entity_type_spec> spec);

} // namespace troupe::sharding::detail
