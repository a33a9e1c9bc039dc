#include "cluster_actor.hpp"

#include "cluster_event_diff.hpp"

#include "troupe/actors/caf_error.hpp"
#include "troupe/actors/node_context.hpp"

#include <caf/all.hpp>

#include <chrono>
#include <random>

namespace troupe::membership::detail {

namespace {

constexpr std::string_view channel = "troupe.membership";
constexpr std::string_view manifest = "troupe.membership.envelope";

timestamp now() {
  return std::chrono::duration_cast<timestamp>(
    std::chrono::steady_clock::now().time_since_epoch());
}

using self_ptr = caf::stateful_actor<cluster_actor_state>*;

void count_stats(self_ptr self) {
  auto& m = node_of(self).metrics();
  auto& st = self->state.core->stats();
  auto& old = self->state.reported;
  auto add = [&](std::string_view name, std::uint64_t now_value, std::uint64_t before,
                 std::string_view help) {
    if (now_value > before)
      m.counter(name, {}, help).inc(now_value - before);
  };
  add("troupe_cluster_gossip_sent_total", st.gossip_sent, old.gossip_sent,
      "Full membership states sent.");
  add("troupe_cluster_gossip_status_sent_total", st.gossip_status_sent, old.gossip_status_sent,
      "Membership digests sent.");
  add("troupe_cluster_gossip_received_total", st.gossip_received, old.gossip_received,
      "Membership states received (gossip rounds).");
  add("troupe_cluster_heartbeats_sent_total", st.heartbeats_sent, old.heartbeats_sent,
      "Membership heartbeats sent.");
  add("troupe_cluster_heartbeat_responses_total", st.heartbeat_responses,
      old.heartbeat_responses, "Membership heartbeat responses received.");
  add("troupe_cluster_downing_decisions_total", st.downing_decisions, old.downing_decisions,
      "Downing decisions taken by this node (split-brain resolver or operator).");
  old = st;
}

void update_gauges(self_ptr self, const cluster_view& v) {
  auto& m = node_of(self).metrics();
  std::array<int, 7> by_status{};
  for (auto& mb : v.state->members)
    ++by_status[static_cast<std::size_t>(mb.status)];
  for (std::size_t i = 0; i + 1 < by_status.size(); ++i)
    m.gauge("troupe_cluster_members", {{"status", std::string{to_string(static_cast<member_status>(i))}}},
            "Members by status, as this node sees them.")
      .set(by_status[i]);
  m.gauge("troupe_cluster_unreachable_members", {}, "Members some observer cannot reach.")
    .set(static_cast<double>(v.state->unreachable().size()));
  for (auto& [peer, phi] : v.phi)
    m.gauge("troupe_cluster_phi", {{"peer", peer.address.to_string()}},
            "Phi of the failure detector for each monitored member.")
      .set(phi);
}

/// The current state as events (what a new subscriber gets first).
std::vector<cluster_event> current_state_events(const cluster_actor_state& s) {
  std::vector<cluster_event> current;
  diff_events(gossip{}, s.core->state(), s.shared->self, current);
  return current;
}

void log_event(self_ptr self, const cluster_event& e) {
  auto& log = node_of(self).log();
  using k = cluster_event::kind;
  auto& me = self->state.shared->self;
  switch (e.what) {
    case k::member_up:
      if (e.subject.node == me)
        log.info("cluster", "this node is up ({})", me.to_string());
      else
        log.info("cluster", "{}", to_string(e));
      break;
    case k::self_downed:
    case k::join_refused:
      log.error("cluster", "{}", to_string(e));
      break;
    case k::unreachable_member:
    case k::member_downed:
      log.warn("cluster", "{}", to_string(e));
      break;
    default:
      log.info("cluster", "{}", to_string(e));
  }
}

std::chrono::microseconds quarantine_delay(const membership_core& core) {
  return std::chrono::duration_cast<std::chrono::microseconds>(4 * core.settings().gossip_interval);
}

/// Carries out one step's effects: messages, events, decisions, the new view.
void apply(self_ptr self) {
  auto& st = self->state;
  auto& fx = st.fx;
  auto t = st.shared->transport.lock();
  for (auto& e : fx.messages) {
    if (!t)
      break;
    auto bytes = encode(e);
    // A refused send (peer gone, queue full) is like a lost packet: the protocol
    // retries by itself.
    (void) t->send_packet(e.to, channel, manifest, 1, bytes);
  }
  for (auto& d : fx.decisions)
    node_of(self).log().warn("cluster", "downing decision ({}): {} member(s): {}",
                             to_string(d.strategy), d.downed.size(), d.reason);
  std::optional<cluster_event> ended;
  for (auto& e : fx.events) {
    log_event(self, e);
    using k = cluster_event::kind;
    // Quarantine a removed incarnation a little later: an exiting member is told
    // it was removed by the very gossip a quarantine would cut off.
    if (e.what == k::member_removed && e.subject.node != st.shared->self)
      self->delayed_send(self, quarantine_delay(*st.core), quarantine_atom::value,
                         e.subject.node);
    if (e.what == k::self_downed || e.what == k::self_removed
        || (e.what == k::join_refused && e.subject.node == st.shared->self))
      ended = e;
  }
  cluster_view v;
  v.self = st.shared->self;
  v.phase = st.core->current_phase();
  v.state = st.core->state_ptr();
  v.leader = st.core->leader();
  v.converged = st.core->converged();
  v.phi = st.core->monitored(now());
  std::vector<std::function<void(const cluster_event&)>> finals;
  {
    std::lock_guard<std::mutex> guard{st.shared->mtx};
    st.shared->view = v;
    if (ended && !st.shared->terminated) {
      st.shared->terminated = ended;
      finals = st.shared->on_terminated;
    }
  }
  st.shared->changed.notify_all();
  for (auto& e : fx.events) {
    for (auto& s : st.subscribers)
      self->send(s, e);
    for (auto& [id, fn] : st.callbacks)
      fn(e);
  }
  if (ended)
    for (auto& fn : finals)
      fn(*ended);
  update_gauges(self, v);
  count_stats(self);
  fx.clear();
}

/// An operator's command (leave, down): its effects, then its answer.
caf::result<void> command(self_ptr self,
                          expected<void> (membership_core::*fn)(timestamp, const node_address&,
                                                                effects&),
                          const node_address& a) {
  auto& s = self->state;
  auto r = ((*s.core).*fn)(now(), a, s.fx);
  apply(self);
  if (!r)
    return to_caf_error(r.error());
  return caf::unit;
}

} // namespace

caf::behavior cluster_actor(self_ptr self, std::shared_ptr<cluster_shared> shared) {
  auto& st = self->state;
  st.shared = shared;
  std::random_device entropy;
  auto seed = (std::uint64_t{entropy()} << 32) ^ entropy();
  st.core = std::make_unique<membership_core>(shared->self, shared->settings, seed);
  auto tick_every = std::chrono::duration_cast<std::chrono::microseconds>(
    st.core->tick_interval());
  if (auto t = shared->transport.lock()) {
    st.transport_subscriptions.push_back(t->subscribe_packets(std::string{channel}, self));
    st.transport_subscriptions.push_back(t->subscribe(caf::actor{self}));
  }
  self->attach_functor([shared, subs = st.transport_subscriptions] {
    if (auto t = shared->transport.lock())
      for (auto id : subs)
        t->unsubscribe(id);
  });
  self->set_down_handler([self](const caf::down_msg& dm) {
    std::erase_if(self->state.subscribers,
                  [&](const caf::actor& a) { return a.address() == dm.source; });
  });
  st.core->start(now(), st.fx);
  apply(self);
  self->delayed_send(self, tick_every, tick_atom::value);
  return {
    [=](tick_atom) {
      auto& s = self->state;
      s.core->tick(now(), s.fx);
      apply(self);
      self->delayed_send(self, tick_every, tick_atom::value);
    },
    [=](const remote::packet& p) {
      auto& s = self->state;
      auto e = decode_envelope(p.payload.data(), p.payload.size());
      if (!e) {
        node_of(self).log().warn("cluster", "dropped a membership message from {}: {}",
                                 p.from.to_string(), e.error().to_string());
        node_of(self).metrics()
          .counter("troupe_cluster_invalid_messages_total", {},
                   "Membership messages that did not decode.")
          .inc();
        return;
      }
      if (e->from != p.from) {
        // The transport authenticated the sender; the envelope must agree.
        node_of(self).log().warn("cluster", "dropped a membership message claiming to be "
                                 "from {} on the connection of {}",
                                 e->from.to_string(), p.from.to_string());
        return;
      }
      s.core->receive(now(), *e, s.fx);
      apply(self);
    },
    [=](const remote::peer_event& e) {
      if (e.what != remote::peer_event::kind::lost)
        return;
      auto& s = self->state;
      s.core->connection_lost(now(), e.peer, s.fx);
      apply(self);
    },
    [=](quarantine_atom, const node_identity& removed) {
      if (auto t = self->state.shared->transport.lock())
        t->quarantine(removed, "removed from the cluster");
    },
    [=](join_atom, std::vector<node_address> seeds) {
      auto& s = self->state;
      s.core->join_seed_nodes(now(), std::move(seeds), s.fx);
      apply(self);
    },
    [=](leave_atom, node_address a) { return command(self, &membership_core::leave, a); },
    [=](down_atom, node_address a) { return command(self, &membership_core::down, a); },
    [=](subscribe_atom, caf::actor subscriber) {
      auto& s = self->state;
      for (auto& e : current_state_events(s))
        self->send(subscriber, e);
      s.subscribers.push_back(subscriber);
      self->monitor(subscriber);
    },
    [=](subscribe_atom, std::uint64_t id, event_callback fn) {
      auto& s = self->state;
      for (auto& e : current_state_events(s))
        fn(e);
      s.callbacks.emplace(id, std::move(fn));
    },
    [=](unsubscribe_atom, caf::actor subscriber) {
      std::erase(self->state.subscribers, subscriber);
    },
    [=](unsubscribe_atom, std::uint64_t id) { self->state.callbacks.erase(id); },
  };
}

} // namespace troupe::membership::detail
