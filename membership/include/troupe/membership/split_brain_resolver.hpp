// The split-brain resolver's decision: which members to down when some are
// unreachable, as seen from one side of a (possible) partition.
//
// A pure function of the settings and the state the deciding node holds: both
// sides run it on their own view, and the strategies are built so that at most
// one side keeps running (docs/membership.md, "Split-brain resolver"). Members that
// are indirectly connected (they observe others as unreachable and are themselves
// observed unreachable: a flaky link rather than a clean partition) are downed,
// and the strategy decides between the remaining, cleanly separated sides.
//
// Each side counts pessimistically, so that two sides never both stay: its own
// side by what it knows (up and leaving members), the other side by what the
// other side may believe (joining and weakly-up members there may have been moved
// up before the partition hid it; a member downed here may not know it). Joining
// members go down with their side. The membership core calls this only on the
// leader of its side, once the unreachable set has been stable for `stable-after`.
#pragma once

#include "troupe/membership/gossip.hpp"
#include "troupe/membership/settings.hpp"

#include <string>
#include <vector>

namespace troupe::membership {

struct downing_decision {
  downing_strategy strategy = downing_strategy::keep_majority;
  std::vector<node_identity> downed;  ///< sorted; may include the decider itself
  std::string reason;

  friend bool operator==(const downing_decision&, const downing_decision&) = default;
};

/// Which members `self` should down now. `downed` is empty when nothing is
/// unreachable (or the strategy is off).
downing_decision decide_downing(const split_brain_settings& settings, const gossip& state,
                                const node_identity& self);

/// The members a down-all decision downs (every member not yet down).
downing_decision down_all_decision(const gossip& state, std::string reason);

} // namespace troupe::membership
