// Internal: the cluster events between two membership states.
#pragma once

#include "troupe/membership/cluster_event.hpp"
#include "troupe/membership/gossip.hpp"

#include <vector>

namespace troupe::membership {

/// Appends, in order: status changes of members (address order), removals,
/// reachability changes, and a leader change, from `before` to `after` as `self`
/// sees them. From an empty `before` this is the current state as events.
void diff_events(const gossip& before, const gossip& after, const node_identity& self,
                 std::vector<cluster_event>& out);

} // namespace troupe::membership
