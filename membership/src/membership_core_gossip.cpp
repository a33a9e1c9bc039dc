// membership_core's gossip: spreading the membership state and merging what
// other members send.
//
// A state newer than this node's replaces it, an older one is answered with this
// node's, concurrent ones are merged; the seen set tells when every member has
// seen a version (convergence, which the leader waits for). While converged, a
// digest (gossip_status) replaces the full state.
#include "troupe/membership/membership_core.hpp"

#include <algorithm>
#include <vector>

namespace troupe::membership {

void membership_core::on_gossip(timestamp now, const envelope& e, const gossip& remote,
                                effects& out) {
  if (phase_ == phase::joining && remote.find(self_) && remote.find(e.from)) {
    // The welcome was lost, but the cluster already holds this node.
    on_welcome(now, e, welcome{std::make_shared<const gossip>(remote)}, out);
    return;
  }
  if (phase_ != phase::member) {
    ++stats_.dropped_messages;
    return;
  }
  if (remote.is_tombstoned(self_)) {
    auto me = self_member();
    terminate(cluster_event{cluster_event::kind::self_removed,
                            me ? *me : member{self_, member_status::removed, 0, settings_.roles,
                                              settings_.app_version},
                            me ? me->status : member_status::removed, {},
                            "removed from the cluster"},
              out);
    return;
  }
  if (state_->is_tombstoned(e.from)) {
    gossip_to(e.from, out);  // it missed its removal: our state tells it
    return;
  }
  // A sender this node does not know yet may have joined through a member that
  // crashed before gossiping the join: its state holds this node, so merge it.
  if (!remote.find(self_) || !remote.find(e.from)) {
    ++stats_.dropped_messages;  // a state from before this node joined
    return;
  }
  ++stats_.gossip_received;
  switch (remote.version.compare(state_->version)) {
    case vector_clock::ordering::same: {
      auto next = *state_;
      for (auto& n : remote.seen)
        if (next.find(n))
          next.mark_seen(n);
      next.mark_seen(self_);
      if (next.seen != state_->seen)
        adopt(std::move(next), out);
      break;
    }
    case vector_clock::ordering::after: {
      auto next = remote;
      next.mark_seen(self_);
      adopt(std::move(next), out);
      // Acknowledge: the sender (often the leader, waiting for convergence)
      // learns at once that this node has seen its state.
      if (phase_ == phase::member) {
        ++stats_.gossip_status_sent;
        send(e.from, gossip_status{state_->version, state_->seen}, out);
      }
      break;
    }
    case vector_clock::ordering::before:
      gossip_to(e.from, out);
      return;
    case vector_clock::ordering::concurrent: {
      ++stats_.gossip_merges;
      auto next = gossip::merge(*state_, remote);
      // The merge prunes the clock entries of removed nodes. A member such a node
      // added (it may have welcomed a joining node just before it learned of its
      // own removal) survives the merge, but no entry records that addition any
      // more: a state that descends from the rest would replace this one and drop
      // the member without a tombstone. Make the merge this node's own change.
      if (next.version.entries().size()
          < state_->version.merge(remote.version).entries().size())
        next.version.increment(self_);
      next.mark_seen(self_);
      adopt(std::move(next), out);
      break;
    }
  }
  if (phase_ == phase::member && !state_->has_seen(e.from) && state_->find(e.from))
    gossip_to(e.from, out);
}

void membership_core::on_gossip_status(const envelope& e, const gossip_status& s, effects& out) {
  if (phase_ == phase::member && state_->is_tombstoned(e.from)) {
    gossip_to(e.from, out);
    return;
  }
  if (phase_ != phase::member || !state_->find(e.from)) {
    ++stats_.dropped_messages;
    return;
  }
  switch (s.version.compare(state_->version)) {
    case vector_clock::ordering::same: {
      auto next = *state_;
      next.mark_seen(e.from);
      for (auto& n : s.seen)
        if (next.find(n))
          next.mark_seen(n);
      bool they_lack = std::any_of(next.seen.begin(), next.seen.end(), [&](const node_identity& n) {
        return !std::binary_search(s.seen.begin(), s.seen.end(), n);
      });
      if (next.seen != state_->seen)
        adopt(std::move(next), out);
      if (they_lack)
        gossip_to(e.from, out);
      break;
    }
    case vector_clock::ordering::after:
      // Theirs is newer: a digest back makes them send the state.
      ++stats_.gossip_status_sent;
      send(e.from, gossip_status{state_->version, state_->seen}, out);
      break;
    case vector_clock::ordering::before:
    case vector_clock::ordering::concurrent:
      gossip_to(e.from, out);
      break;
  }
}

void membership_core::gossip_tick(timestamp now, effects& out) {
  if (now < next_gossip_)
    return;
  auto& g = *state_;
  bool speed_up = g.seen.size() < g.members.size() / 2
                  || std::any_of(g.members.begin(), g.members.end(), [](const member& m) {
                       return m.status == member_status::down;
                     });
  next_gossip_ = now + (speed_up ? settings_.gossip_interval / 3 : settings_.gossip_interval);
  std::vector<const node_identity*> candidates;
  std::vector<const node_identity*> not_seen;
  for (auto& m : g.members) {
    if (m.node == self_ || !g.reachable_from(self_, m.node))
      continue;
    candidates.push_back(&m.node);
    if (!g.has_seen(m.node))
      not_seen.push_back(&m.node);
  }
  if (candidates.empty())
    return;
  auto probability = settings_.gossip_different_view_probability;
  if (g.members.size() >= settings_.reduce_gossip_different_view_probability)
    probability /= 3;
  auto& pool = !not_seen.empty() && rng_.chance(probability) ? not_seen : candidates;
  auto target = *pool[rng_.below(pool.size())];
  if (g.has_seen(target)) {
    ++stats_.gossip_status_sent;
    send(target, gossip_status{g.version, g.seen}, out);
  } else {
    gossip_to(target, out);
  }
}

} // namespace troupe::membership
