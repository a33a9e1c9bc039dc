// What sharding reads from a membership state: the cluster snapshot the cores
// take, and where the coordinator singleton runs. One definition, used by the
// actor shell and by the simulation alike.
//
// Thread-safety: pure functions.
#pragma once

#include "troupe/membership/gossip.hpp"
#include "troupe/sharding/coordinator_core.hpp"

#include <optional>
#include <string_view>

namespace troupe::sharding {

/// Eligible regions are the up members with `role` (any member if empty); members
/// are all that are not down; the cluster is stable when it converged, nobody is
/// unreachable, joining or weakly up, and every up member runs one app version.
cluster_snapshot cluster_snapshot_of(const membership::gossip& g, std::string_view role = {});

/// The oldest up member with `role`: where the coordinator singleton runs.
std::optional<node_identity> coordinator_location(const membership::gossip& g,
                                                  std::string_view role = {});

} // namespace troupe::sharding
