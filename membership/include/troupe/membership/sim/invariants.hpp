// The invariants the membership simulation checks after every step.
//
// Per observer (one incarnation's view, over time):
//   - a member's status only moves along the allowed transitions (member.hpp);
//   - a removed incarnation never reappears in the view;
// Across observers:
//   - one leader per converged state: every node holding the same converged
//     version computes the same leader;
//   - one up number per member: once a member is up, every view gives it the
//     same up number (so the oldest member, and every singleton's home, only
//     changes when a member leaves or is removed);
//   - no two sides stay up: once a running node's view has another running node
//     down or removed, that node stops (learns it was downed, or its own side
//     downs itself) within `split_brain_grace`, unless it is paused.
// Convergence after the last fault is checked by the test itself
// (membership_simulation::all_converged_up) within the bound it states.
//
// Thread-safety: none.
#pragma once

#include "troupe/membership/membership_core.hpp"

#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace troupe::membership::sim {

struct invariant_options {
  bool split_brain = true;
  duration split_brain_grace = std::chrono::seconds{15};
};

class invariant_checker {
public:
  explicit invariant_checker(invariant_options options) : options_(options) {}

  /// After `core` (a running node) handled an input at `now`.
  void after_step(timestamp now, const membership_core& core);
  /// Cross-node checks over the running, unpaused cores.
  void periodic(timestamp now, const std::vector<const membership_core*>& running);

  const std::vector<std::string>& violations() const noexcept { return violations_; }

private:
  void fail(timestamp now, std::string what);

  invariant_options options_;
  std::map<node_identity, std::shared_ptr<const gossip>> last_state_;
  std::map<std::pair<node_identity, node_identity>, member_status> last_status_;
  std::map<node_identity, std::set<node_identity>> removed_;
  std::map<std::uint64_t, std::optional<node_identity>> leader_of_version_;
  std::map<node_identity, std::uint32_t> up_number_;
  std::map<std::pair<node_identity, node_identity>, timestamp> conflict_since_;
  std::vector<std::string> violations_;
};

} // namespace troupe::membership::sim
