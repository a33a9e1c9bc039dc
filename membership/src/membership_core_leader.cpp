// membership_core's leader decisions: the leader actions on convergence
// (joining->up, leaving->exiting, removals), weakly-up without convergence, and
// downing (the split-brain resolver's decisions and an operator's), pushed to
// every reachable member at once.
#include "troupe/membership/membership_core.hpp"

#include <algorithm>
#include <vector>

namespace troupe::membership {

void membership_core::leader_tick(timestamp now, effects& out) {
  if (phase_ != phase::member || now < next_leader_actions_)
    return;
  next_leader_actions_ = now + settings_.leader_actions_interval;
  if (!is_leader()) {
    not_converged_since_.reset();
    return;
  }
  if (converged()) {
    not_converged_since_.reset();
    leader_actions_on_convergence(now, out);
  } else {
    weakly_up_actions(now, out);
  }
}

void membership_core::leader_actions_on_convergence(timestamp now, effects& out) {
  auto& g = *state_;
  auto next = g;
  bool changed = false;
  auto live = std::count_if(g.members.begin(), g.members.end(), [](const member& m) {
    return m.status != member_status::down && m.status != member_status::exiting;
  });
  bool enough = static_cast<std::size_t>(live) >= settings_.min_nr_of_members;
  std::uint32_t up_number = 0;
  for (auto& m : g.members)
    up_number = std::max(up_number, m.up_number);
  for (auto& m : next.members) {
    if ((m.status == member_status::joining || m.status == member_status::weakly_up) && enough) {
      m.status = member_status::up;
      m.up_number = ++up_number;
      changed = true;
    } else if (m.status == member_status::leaving) {
      m.status = member_status::exiting;
      changed = true;
    }
  }
  // Removal: down or exiting members that are gone (unreachable), and exiting
  // members that have seen that they are exiting (they get one last gossip so they
  // learn they were removed). A reachable down member is removed once it stopped.
  std::vector<node_identity> removed_exiting;
  bool removed_self = false;
  for (auto& m : g.members) {
    bool gone = !g.is_reachable(self_, m.node);
    bool remove = (m.status == member_status::down && gone)
                  || (m.status == member_status::exiting && (gone || g.has_seen(m.node)));
    if (!remove)
      continue;
    // An exiting leader is the last one standing (leaders are up or leaving if
    // any such member is reachable): it removes itself.
    if (m.node == self_)
      removed_self = true;
    else if (!gone)
      removed_exiting.push_back(m.node);
    next.remove(m.node, now);
    changed = true;
  }
  if (!changed)
    return;
  auto me = *self_member();
  change(std::move(next), out);
  push_to_members(out);
  for (auto& n : removed_exiting)
    gossip_to(n, out);
  if (removed_self)
    terminate(cluster_event{cluster_event::kind::self_removed, me, me.status, {},
                            "left the cluster"},
              out);
}

void membership_core::weakly_up_actions(timestamp now, effects& out) {
  if (!settings_.weakly_up_after)
    return;
  if (!not_converged_since_) {
    not_converged_since_ = now;
    return;
  }
  if (now - *not_converged_since_ < *settings_.weakly_up_after)
    return;
  auto next = *state_;
  bool changed = false;
  for (auto& m : next.members)
    if (m.status == member_status::joining && state_->is_reachable(self_, m.node)) {
      m.status = member_status::weakly_up;
      changed = true;
    }
  if (changed)
    change(std::move(next), out);
}

void membership_core::split_brain_tick(timestamp now, effects& out) {
  auto& g = *state_;
  auto unreachable = g.unreachable_as_seen_by(self_);
  std::erase_if(unreachable,
                [&](const node_identity& n) { return g.find(n)->status == member_status::down; });
  // The observed situation: the unreachable set, then every member.
  std::vector<node_identity> observed = unreachable;
  for (auto& m : g.members)
    observed.push_back(m.node);
  if (observed != sbr_observed_) {
    sbr_observed_ = std::move(observed);
    sbr_stable_since_ = now;
    if (!unreachable.empty() && !sbr_unstable_since_)
      sbr_unstable_since_ = now;
  }
  if (unreachable.empty()) {
    sbr_unstable_since_.reset();
    return;
  }
  // The leader of this node's side decides; judged by what this node itself can
  // reach, so that an isolated exiting node still decides for itself.
  auto& sbr = settings_.split_brain;
  if (sbr.strategy == downing_strategy::off || g.leader_as_seen_by(self_) != self_)
    return;
  if (now - sbr_stable_since_ >= sbr.stable_after) {
    auto d = decide_downing(sbr, g, self_);
    sbr_unstable_since_.reset();
    if (!d.downed.empty())
      apply_downing(std::move(d), out);
    return;
  }
  if (sbr.down_all_when_unstable && sbr_unstable_since_
      && now - *sbr_unstable_since_ >= sbr.stable_after + *sbr.down_all_when_unstable) {
    sbr_unstable_since_.reset();
    apply_downing(down_all_decision(g, "reachability kept changing for longer than "
                                       "stable-after + down-all-when-unstable"),
                  out);
  }
}

void membership_core::apply_downing(downing_decision d, effects& out) {
  auto next = *state_;
  bool changed = false;
  for (auto& n : d.downed)
    if (auto m = next.find(n); m && m->status != member_status::down) {
      m->status = member_status::down;
      changed = true;
    }
  if (!changed)
    return;
  ++stats_.downing_decisions;
  out.decisions.push_back(std::move(d));
  change(std::move(next), out);
  // When this node downs its own side it stops right away: random gossip would
  // not reach the rest of the side in time.
  push_to_members(out);
}

void membership_core::push_to_members(effects& out) {
  // Leader actions and downing decisions go to every reachable member at once
  // rather than by random gossip: they are rare, and the failover budget
  // (docs/membership.md) depends on how fast they spread and are acknowledged.
  for (auto& m : state_->members)
    if (m.node != self_ && state_->reachable_from(self_, m.node))
      gossip_to(m.node, out);
}

} // namespace troupe::membership
