#include "troupe/membership/membership_core.hpp"
#include "troupe/actors/overloaded.hpp"

#include "cluster_event_diff.hpp"
#include "heartbeat_ring.hpp"

#include <fmt/format.h>

#include <algorithm>

namespace troupe::membership {

namespace {

/// The member a command for `address` means: the live incarnation there (a
/// replaced one is down already).
const member* member_at(const gossip& g, const node_address& address) {
  const member* result = nullptr;
  for (auto& m : g.members)
    if (m.node.address == address && (!result || result->status == member_status::down))
      result = &m;
  return result;
}

std::vector<std::string> sorted_unique(std::vector<std::string> xs) {
  std::sort(xs.begin(), xs.end());
  xs.erase(std::unique(xs.begin(), xs.end()), xs.end());
  return xs;
}

} // namespace

std::string_view to_string(membership_core::phase p) noexcept {
  switch (p) {
    case membership_core::phase::idle: return "idle";
    case membership_core::phase::joining: return "joining";
    case membership_core::phase::member: return "member";
    case membership_core::phase::terminated: return "terminated";
  }
  return "?";
}

membership_core::membership_core(node_identity self, membership_settings settings,
                                 std::uint64_t seed)
  : self_(std::move(self)),
    settings_(std::move(settings)),
    rng_(seed),
    state_(std::make_shared<const gossip>()) {
  settings_.roles = sorted_unique(std::move(settings_.roles));
}

duration membership_core::tick_interval() const noexcept {
  // A tenth of the heartbeat interval: heartbeats leave within 10% of their due
  // time, which keeps the jitter the detectors learn (and so detection) small.
  return std::min({settings_.gossip_interval / 3, settings_.leader_actions_interval,
                   settings_.join_retry_interval, settings_.heartbeat_interval / 10});
}

bool membership_core::is_leader() const {
  return phase_ == phase::member && leader() == self_;
}

// ---- plumbing --------------------------------------------------------------------

void membership_core::send(const node_identity& to, protocol_message m, effects& out) {
  out.messages.push_back(envelope{self_, to, std::move(m)});
}

void membership_core::gossip_to(const node_identity& to, effects& out) {
  ++stats_.gossip_sent;
  send(to, gossip_state{state_}, out);
}

void membership_core::adopt(gossip next, effects& out) {
  auto before = std::move(state_);
  state_ = std::make_shared<const gossip>(std::move(next));
  diff_events(*before, *state_, self_, out.events);
  auto me = state_->find(self_);
  if (me && me->status == member_status::down)
    terminate(cluster_event{cluster_event::kind::self_downed, *me, member_status::joining, {},
                            "this node was downed"},
              out);
}

void membership_core::change(gossip next, effects& out) {
  next.changed_by(self_);
  adopt(std::move(next), out);
}

void membership_core::terminate(cluster_event e, effects& out) {
  if (phase_ == phase::terminated)
    return;
  phase_ = phase::terminated;
  out.events.push_back(std::move(e));
}

// ---- inputs ----------------------------------------------------------------------

void membership_core::start(timestamp now, effects& out) {
  if (phase_ != phase::idle)
    return;
  next_gossip_ = now + settings_.gossip_interval;
  next_heartbeat_ = now;
  next_leader_actions_ = now;
  next_tombstone_prune_ = now + settings_.prune_tombstones_after / 24;
  if (settings_.seed_nodes.empty())
    return;
  join_seed_nodes(now, settings_.seed_nodes, out);
}

void membership_core::join_seed_nodes(timestamp now, std::vector<node_address> seeds,
                                      effects& out) {
  if (phase_ == phase::member || phase_ == phase::terminated || seeds.empty())
    return;
  phase_ = phase::joining;
  seeds_ = std::move(seeds);
  nacked_.clear();
  cluster_answered_ = false;
  join_started_ = now;
  next_join_attempt_ = now;
  join_target_.reset();
  join_tick(now, out);
}

void membership_core::receive(timestamp now, const envelope& e, effects& out) {
  bool for_me = e.to == self_
                || (e.to.incarnation == 0 && e.to.address == self_.address
                    && std::holds_alternative<init_join>(e.message));
  if (!for_me || e.from == self_ || phase_ == phase::terminated || phase_ == phase::idle) {
    ++stats_.dropped_messages;
    return;
  }
  std::visit(overloaded{
               [&](const init_join&) { on_init_join(now, e, out); },
               [&](const init_join_ack&) { on_init_join_ack(now, e, out); },
               [&](const init_join_nack&) { on_init_join_nack(now, e, out); },
               [&](const join_request& j) { on_join(now, e, j, out); },
               [&](const welcome& w) { on_welcome(now, e, w, out); },
               [&](const join_refused& r) {
                 if (phase_ != phase::joining)
                   return;
                 member me{self_, member_status::joining, 0, settings_.roles,
                           settings_.app_version};
                 terminate(cluster_event{cluster_event::kind::join_refused, me,
                                         member_status::joining, {},
                                         fmt::format("refused by {}: {}", e.from.to_string(),
                                                     r.reason)},
                           out);
               },
               [&](const gossip_state& g) { on_gossip(now, e, *g.state, out); },
               [&](const gossip_status& s) { on_gossip_status(e, s, out); },
               [&](const heartbeat& h) { send(e.from, heartbeat_response{h.sequence}, out); },
               [&](const heartbeat_response&) { on_heartbeat_response(now, e); },
             },
             e.message);
}

void membership_core::tick(timestamp now, effects& out) {
  switch (phase_) {
    case phase::joining:
      join_tick(now, out);
      return;
    case phase::member:
      heartbeat_tick(now, out);
      reachability_tick(now, out);
      gossip_tick(now, out);
      split_brain_tick(now, out);
      leader_tick(now, out);
      conflict_tick(now, out);
      if (phase_ == phase::member && now >= next_tombstone_prune_) {
        next_tombstone_prune_ = now + settings_.prune_tombstones_after / 24;
        auto next = *state_;
        next.prune_tombstones(now - settings_.prune_tombstones_after);
        if (next.tombstones.size() != state_->tombstones.size())
          state_ = std::make_shared<const gossip>(std::move(next));
      }
      return;
    case phase::idle:
    case phase::terminated:
      return;
  }
}

void membership_core::connection_lost(timestamp now, const node_identity& peer, effects& out) {
  if (phase_ != phase::member || !settings_.unreachable_on_connection_loss)
    return;
  auto i = monitored_.find(peer);
  if (i == monitored_.end())
    return;
  i->second.connection_lost = true;
  reachability_tick(now, out);
}

expected<void> membership_core::leave(timestamp, const node_address& node, effects& out) {
  if (phase_ != phase::member)
    return error{errc::invalid_argument,
                 fmt::format("this node is {}, not a member: it cannot leave", to_string(phase_))};
  auto m = member_at(*state_, node);
  if (!m)
    return error{errc::not_found, fmt::format("no member at {}", node.to_string())};
  if (m->status == member_status::leaving || m->status == member_status::exiting
      || m->status == member_status::down)
    return {};
  auto next = *state_;
  next.find(m->node)->status = member_status::leaving;
  change(std::move(next), out);
  return {};
}

expected<void> membership_core::down(timestamp, const node_address& node, effects& out) {
  if (phase_ != phase::member)
    return error{errc::invalid_argument,
                 fmt::format("this node is {}, not a member: it cannot down others",
                             to_string(phase_))};
  auto m = member_at(*state_, node);
  if (!m)
    return error{errc::not_found, fmt::format("no member at {}", node.to_string())};
  if (m->status == member_status::down)
    return {};
  apply_downing(downing_decision{downing_strategy::off, {m->node}, "downed by an operator"}, out);
  return {};
}

// ---- joining ---------------------------------------------------------------------

void membership_core::join_tick(timestamp now, effects& out) {
  if (phase_ != phase::joining || seeds_.empty())
    return;
  bool first_seed = seeds_.front() == self_.address;
  if (first_seed && seeds_.size() == 1) {
    self_join(out);
    return;
  }
  if (join_target_) {
    if (now - join_sent_at_ < settings_.retry_unsuccessful_join_after) {
      if (now >= next_join_attempt_) {
        next_join_attempt_ = now + settings_.join_retry_interval;
        send(*join_target_,
             join_request{settings_.cluster_name, settings_.roles, settings_.app_version,
                          settings_.compatibility},
             out);
      }
      return;
    }
    join_target_.reset();
    nacked_.clear();
  }
  // A cluster answered once: never bootstrap a second one on a timeout (only when
  // every other seed says it is not a member).
  if (first_seed && !cluster_answered_ && now - join_started_ >= settings_.seed_node_timeout) {
    self_join(out);
    return;
  }
  if (now < next_join_attempt_)
    return;
  next_join_attempt_ = now + settings_.join_retry_interval;
  for (auto& s : seeds_)
    if (s != self_.address)
      send(node_identity{s, 0}, init_join{settings_.cluster_name}, out);
}

void membership_core::self_join(effects& out) {
  gossip next;
  next.put(member{self_, member_status::joining, 0, settings_.roles, settings_.app_version});
  phase_ = phase::member;
  join_target_.reset();
  change(std::move(next), out);
}

std::size_t membership_core::seed_rank() const {
  auto rank = seeds_.size();
  for (auto& m : state_->members)
    if (m.status != member_status::down && m.status != member_status::exiting)
      for (std::size_t i = 0; i < rank; ++i)
        if (seeds_[i] == m.node.address)
          rank = i;
  return rank;
}

void membership_core::conflict_tick(timestamp now, effects& out) {
  if (phase_ != phase::member || seeds_.empty() || now < next_conflict_check_)
    return;
  next_conflict_check_ = now + 2 * settings_.join_retry_interval;
  // Probe the seed addresses where this cluster has no live member: a joining
  // seed joins this cluster instead of bootstrapping another, and a seed that
  // belongs to another cluster answers with that cluster's rank.
  auto me = self_member();
  if (!me || me->status == member_status::leaving || me->status == member_status::exiting
      || me->status == member_status::down)
    return;
  for (auto& s : seeds_) {
    if (s == self_.address)
      continue;
    bool live_here = std::any_of(state_->members.begin(), state_->members.end(), [&](const member& m) {
      return m.node.address == s && m.status != member_status::down
             && m.status != member_status::exiting;
    });
    if (!live_here)
      send(node_identity{s, 0}, init_join{settings_.cluster_name, true}, out);
  }
}

void membership_core::on_init_join(timestamp now, const envelope& e, effects& out) {
  auto& request = std::get<init_join>(e.message);
  if (phase_ == phase::joining && request.from_member
      && request.cluster_name == settings_.cluster_name) {
    join_through(now, e.from, out);  // a cluster exists: join it, never bootstrap
    return;
  }
  auto me = self_member();
  bool can_accept = phase_ == phase::member && me && me->status != member_status::leaving
                    && me->status != member_status::exiting && me->status != member_status::down;
  if (can_accept) {
    if (auto why = incompatibility(join_request{request.cluster_name, {}, {}, {}}))
      send(e.from, join_refused{*why}, out);
    else
      send(e.from, init_join_ack{seed_rank()}, out);
  } else {
    send(e.from, init_join_nack{}, out);
  }
}

void membership_core::on_init_join_ack(timestamp now, const envelope& e, effects& out) {
  if (phase_ != phase::member) {
    join_through(now, e.from, out);
    return;
  }
  // A member of another cluster answered a probe (late answers to this node's
  // own join come from its own cluster and change nothing). Two clusters share
  // the seed list: the one holding the earlier seed stays, the other yields; this
  // node stops, and its restart joins through the seeds.
  auto rank = std::get<init_join_ack>(e.message).seed_rank;
  if (state_->find(e.from) || state_->is_tombstoned(e.from) || rank >= seed_rank())
    return;
  auto me = *self_member();
  terminate(cluster_event{cluster_event::kind::self_downed, me, member_status::joining, {},
                          fmt::format("seed {} belongs to another cluster, which holds an "
                                      "earlier seed node than this one: leaving to rejoin it",
                                      e.from.to_string())},
            out);
}

void membership_core::join_through(timestamp now, const node_identity& member, effects& out) {
  if (phase_ != phase::joining || join_target_)
    return;
  join_target_ = member;
  cluster_answered_ = true;
  join_sent_at_ = now;
  next_join_attempt_ = now + settings_.join_retry_interval;
  send(member,
       join_request{settings_.cluster_name, settings_.roles, settings_.app_version,
                    settings_.compatibility},
       out);
}

void membership_core::on_init_join_nack(timestamp, const envelope& e, effects& out) {
  if (phase_ != phase::joining || seeds_.empty() || seeds_.front() != self_.address)
    return;
  auto i = std::lower_bound(nacked_.begin(), nacked_.end(), e.from.address);
  if (i == nacked_.end() || *i != e.from.address)
    nacked_.insert(i, e.from.address);
  // Every other seed answered and none is a member: no cluster exists yet.
  bool all = std::all_of(seeds_.begin() + 1, seeds_.end(), [&](const node_address& s) {
    return s == self_.address || std::binary_search(nacked_.begin(), nacked_.end(), s);
  });
  if (all && !join_target_)
    self_join(out);
}

std::optional<std::string> membership_core::incompatibility(const join_request& j) const {
  if (j.cluster_name != settings_.cluster_name)
    return fmt::format("the cluster is named '{}', the joining node's cluster is '{}'",
                       settings_.cluster_name, j.cluster_name);
  for (auto& [key, value] : j.compatibility) {
    auto i = std::lower_bound(settings_.compatibility.begin(), settings_.compatibility.end(), key,
                              [](const auto& kv, const std::string& k) { return kv.first < k; });
    if (i != settings_.compatibility.end() && i->first == key && i->second != value)
      return fmt::format("'{}' is '{}' in the cluster but '{}' on the joining node", key,
                         i->second, value);
  }
  return std::nullopt;
}

void membership_core::on_join(timestamp, const envelope& e, const join_request& j, effects& out) {
  auto me = self_member();
  if (phase_ != phase::member || !me || me->status == member_status::leaving
      || me->status == member_status::exiting || me->status == member_status::down) {
    ++stats_.dropped_messages;
    return;
  }
  member joiner{e.from, member_status::joining, 0, sorted_unique(j.roles), j.app_version};
  if (auto why = incompatibility(j)) {
    out.events.push_back(
      cluster_event{cluster_event::kind::join_refused, joiner, member_status::joining, {}, *why});
    send(e.from, join_refused{*why}, out);
    return;
  }
  if (state_->is_tombstoned(e.from)) {
    send(e.from,
         join_refused{"this incarnation was removed from the cluster; a restarted node (a new "
                      "incarnation) may join"},
         out);
    return;
  }
  if (auto existing = state_->find(e.from)) {
    if (existing->status == member_status::down)
      send(e.from, join_refused{"this incarnation was downed before it saw its welcome; a "
                                "restarted node (a new incarnation) may join"},
           out);
    else
      send(e.from, welcome{state_}, out);  // the welcome was lost: send it again
    return;
  }
  auto next = *state_;
  // A new incarnation at a member's address replaces it: the old one is down.
  for (auto& m : next.members)
    if (m.node.address == e.from.address && m.status != member_status::down)
      m.status = member_status::down;
  next.put(std::move(joiner));
  change(std::move(next), out);
  send(e.from, welcome{state_}, out);
}

void membership_core::on_welcome(timestamp, const envelope&, const welcome& w, effects& out) {
  if (phase_ != phase::joining || !w.state || !w.state->find(self_))
    return;
  phase_ = phase::member;
  join_target_.reset();
  auto next = *w.state;
  next.mark_seen(self_);
  adopt(std::move(next), out);
}

// ---- gossip ----------------------------------------------------------------------

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

// ---- failure detection -----------------------------------------------------------

std::vector<node_identity> membership_core::heartbeat_receivers() const {
  return ring_receivers(*state_, self_, settings_.monitored_by_nr_of_members);
}

void membership_core::heartbeat_tick(timestamp now, effects& out) {
  if (now < next_heartbeat_)
    return;
  // Keep the interval exact on average whatever the tick granularity: the
  // detectors on the other side learn it.
  next_heartbeat_ += settings_.heartbeat_interval;
  if (next_heartbeat_ <= now)
    next_heartbeat_ = now + settings_.heartbeat_interval;
  auto receivers = heartbeat_receivers();
  // Keep watching members this node marked unreachable: they may come back.
  for (auto& r : state_->overview.rows())
    if (r.observer == self_)
      for (auto& s : r.unreachable)
        if (state_->find(s))
          receivers.push_back(s);
  std::sort(receivers.begin(), receivers.end());
  receivers.erase(std::unique(receivers.begin(), receivers.end()), receivers.end());
  std::erase_if(monitored_, [&](const auto& kv) {
    return !std::binary_search(receivers.begin(), receivers.end(), kv.first);
  });
  for (auto& r : receivers) {
    auto i = monitored_.find(r);
    if (i == monitored_.end()) {
      phi_settings ps = settings_.detector;
      ps.first_heartbeat_estimate = settings_.heartbeat_interval;
      i = monitored_.emplace(r, monitored_node{phi_accrual_detector{ps}, false}).first;
      // The first response is due within an interval: start the clock now, so a
      // node that never answers becomes suspicious like one that stopped.
      i->second.detector.heartbeat(now);
    }
    ++stats_.heartbeats_sent;
    send(r, heartbeat{++heartbeat_sequence_}, out);
  }
}

void membership_core::on_heartbeat_response(timestamp now, const envelope& e) {
  auto i = monitored_.find(e.from);
  if (i == monitored_.end())
    return;
  ++stats_.heartbeat_responses;
  i->second.detector.heartbeat(now);
  i->second.connection_lost = false;
}

void membership_core::reachability_tick(timestamp now, effects& out) {
  std::optional<gossip> next;
  for (auto& [node, watch] : monitored_) {
    if (!state_->find(node))
      continue;
    bool available = !watch.connection_lost && watch.detector.is_available(now);
    bool reachable = state_->overview.is_reachable_by(self_, node);
    if (available == reachable)
      continue;
    if (!next)
      next = *state_;
    if (available)
      next->overview.mark_reachable(self_, node);
    else
      next->overview.mark_unreachable(self_, node);
  }
  if (next)
    change(std::move(*next), out);
}

std::vector<std::pair<node_identity, double>> membership_core::monitored(timestamp now) const {
  std::vector<std::pair<node_identity, double>> result;
  for (auto& [node, watch] : monitored_)
    result.emplace_back(node, watch.detector.phi(now));
  return result;
}

// ---- leader actions and downing --------------------------------------------------

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
