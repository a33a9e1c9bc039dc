// Internal: which members a node sends heartbeats to.
//
// Members (down ones too, until removed) sit on a ring ordered by a stable hash of their identity; each node
// monitors the next `n` reachable members after itself (and the unreachable ones
// it passes on the way, to notice when they come back). Every member is thus
// watched by about `n` others, whatever the cluster size.
#pragma once

#include "troupe/membership/gossip.hpp"

#include <cstddef>
#include <vector>

namespace troupe::membership {

std::vector<node_identity> ring_receivers(const gossip& g, const node_identity& self,
                                          std::size_t n);

} // namespace troupe::membership
