// membership_core: construction, the inputs (messages, ticks, leave and down
// commands) and the node's own phase, from joining through the seed nodes to
// termination.
//
// The rest of the state machine is split by concept: gossip in
// membership_core_gossip.cpp, failure detection in
// membership_core_failure_detection.cpp, leader actions and downing in
// membership_core_leader.cpp.
#include "troupe/membership/membership_core.hpp"
#include "troupe/actors/overloaded.hpp"

#include "cluster_event_diff.hpp"

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

} // namespace troupe::membership
