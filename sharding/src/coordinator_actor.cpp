// The shard coordinator shell: recovers coordinator_core from the journal, then
// feeds it the regions' packets, membership changes and a timer, and carries out
// its decisions: packets to regions, and durable writes of its events in order
// (persisted() once each is stored). A write that conflicts (another coordinator
// appended meanwhile: a split brain, or an instance that was too slow to stop)
// ends this instance: its view is stale.
#include "coordinator_actor.hpp"

#include "region_messages.hpp"
#include "wire.hpp"

#include "troupe/actors/node_context.hpp"
#include "troupe/actors/spawn.hpp"
#include "troupe/actors/remote/transport.hpp"
#include "troupe/membership/cluster.hpp"
#include "troupe/persistence/journal_service.hpp"
#include "troupe/sharding/coordinator_core.hpp"
#include "troupe/sharding/snapshot.hpp"

#include <caf/all.hpp>

#include <deque>
#include <optional>

namespace troupe::sharding::detail {

namespace {

constexpr auto tick_interval = std::chrono::milliseconds{100};
constexpr auto retry_interval = std::chrono::milliseconds{500};

timestamp now() {
  return std::chrono::duration_cast<timestamp>(
    std::chrono::steady_clock::now().time_since_epoch());
}

struct recovery_result {
  expected<std::vector<persistence::event_record>> events;
  persistence::sequence_nr highest = 0;
};

struct write_result {
  expected<void> result;
  std::size_t events = 0;
};

using retry_atom = caf::atom_constant<caf::atom("sh_cretry")>;

} // namespace

} // namespace troupe::sharding::detail

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::sharding::detail::recovery_result)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::sharding::detail::write_result)

namespace troupe::sharding::detail {

struct coordinator_state {
  node_context* ctx = nullptr;
  std::shared_ptr<const entity_type_spec> spec;
  std::unique_ptr<coordinator_core> core;
  coordinator_effects fx;
  std::shared_ptr<remote::transport> transport;
  std::shared_ptr<membership::cluster> cluster;
  std::shared_ptr<persistence::journal_service> journal;
  remote::transport::subscription packets = 0;
  std::string persistence_id;
  persistence::sequence_nr next_seq = 1;
  bool recovered = false;
  std::vector<remote::packet> early;  ///< arrived before the recovery finished
  std::deque<coordinator_event> unwritten;
  std::size_t writing = 0;  ///< events of the write in flight (front of unwritten)
  std::optional<cluster_snapshot> snapshot;  ///< the last one the core got
  std::uint64_t ticks = 0;
  /// troupe_sharding_coordinator_regions: the hosting regions the core knows (0
  /// once this coordinator stops), what a caller waits on before it relies on
  /// shards spreading over every node. Registered once, at start.
  gauge_metric* regions = nullptr;
};

namespace {

using self_ptr = caf::stateful_actor<std::shared_ptr<coordinator_state>>*;

void write_next(self_ptr self) {
  auto& st = *self->state;
  if (st.writing > 0 || st.unwritten.empty())
    return;
  persistence::atomic_write w;
  w.persistence_id = st.persistence_id;
  auto seq = st.next_seq;
  for (auto& e : st.unwritten)
    w.events.push_back(to_record(e, st.persistence_id, seq++));
  st.writing = st.unwritten.size();
  auto me = caf::actor_cast<caf::actor>(self);
  st.journal->write(std::move(w), [me, n = st.writing](expected<void> r) {
    caf::anon_send(me, write_result{std::move(r), n});
  });
}

void apply(self_ptr self) {
  auto& st = *self->state;
  auto fx = std::move(st.fx);
  st.fx.clear();
  for (auto& m : fx.messages) {
    auto bytes = encode(m);
    // A refused send is a lost message: regions ask again.
    (void) st.transport->send_packet(m.to, region_channel(st.spec->name), envelope_manifest, 1,
                                     bytes);
  }
  for (auto& e : fx.persist)
    st.unwritten.push_back(std::move(e));
  auto& metrics = st.ctx->metrics();
  st.regions->set(static_cast<double>(st.core->registered().size()));
  for (auto& h : fx.hand_offs) {
    metrics
      .counter("troupe_sharding_hand_offs_total",
               {{"type", st.spec->name}, {"outcome", h.completed ? "completed" : "rolled_back"}},
               "Shard hand-offs the coordinator finished or rolled back.")
      .inc();
    metrics
      .gauge("troupe_sharding_last_hand_off_seconds", {{"type", st.spec->name}},
             "How long the last shard hand-off took.")
      .set(std::chrono::duration<double>(h.took).count());
    for (auto [phase, took] : {std::pair{"begin", h.begin}, std::pair{"stopping", h.stopping},
                               std::pair{"releasing", h.releasing}}) {
      if (took <= duration::zero() && std::string_view{phase} != "begin")
        continue;  // not reached (a rolled-back hand-off)
      metrics
        .histogram("troupe_sharding_hand_off_phase_seconds",
                   histogram_metric::exponential_bounds(0.001, 4, 9),
                   {{"type", st.spec->name}, {"phase", phase}},
                   "Time shard hand-offs spent in each phase: begin (regions acknowledge), "
                   "stopping (the owner stops the shard's entities), releasing (the "
                   "release is stored).")
        .observe(std::chrono::duration<double>(took).count());
    }
    st.ctx->log().info("sharding", "{}: hand-off of shard {} from {} {} after {} ms ({})",
                       st.spec->name, h.shard, h.from.to_string(),
                       h.completed ? "completed" : "rolled back",
                       std::chrono::duration_cast<std::chrono::milliseconds>(h.took).count(),
                       h.how);
  }
  write_next(self);
}

void members_changed(self_ptr self) {
  auto& st = *self->state;
  auto v = st.cluster->view();
  auto snap = cluster_snapshot_of(*v.state, st.spec->settings.role);
  if (st.snapshot && st.snapshot->members == snap.members && st.snapshot->eligible == snap.eligible
      && st.snapshot->stable == snap.stable)
    return;
  st.snapshot = snap;
  st.core->members_changed(now(), snap, st.fx);
  apply(self);
}

void receive_packet(self_ptr self, const remote::packet& pk) {
  auto& st = *self->state;
  auto e = decode_sharding_envelope(pk.payload.data(), pk.payload.size());
  if (!e) {
    st.ctx->log().warn("sharding", "{} coordinator: dropped a message from {}: {}",
                       st.spec->name, pk.from.to_string(), e.error().message());
    return;
  }
  if (e->to != st.transport->identity())
    return;
  st.core->receive(now(), *e, st.fx);
  apply(self);
}

void read_journal(self_ptr self) {
  auto& st = *self->state;
  auto me = caf::actor_cast<caf::actor>(self);
  auto journal = st.journal;
  auto pid = st.persistence_id;
  journal->highest_sequence_nr(pid, [me, journal, pid](expected<persistence::sequence_nr> h) {
    if (!h) {
      caf::anon_send(me, recovery_result{std::move(h).error(), 0});
      return;
    }
    if (*h == 0) {
      caf::anon_send(me, recovery_result{std::vector<persistence::event_record>{}, 0});
      return;
    }
    journal->read_events(pid, 1, *h, static_cast<std::size_t>(*h),
                         [me, hi = *h](expected<std::vector<persistence::event_record>> r) {
                           caf::anon_send(me, recovery_result{std::move(r), hi});
                         });
  });
}

void recovered(self_ptr self, recovery_result& r) {
  auto& st = *self->state;
  if (!r.events) {
    st.ctx->log().error("sharding", "{} coordinator: cannot read its state ({}); retrying",
                        st.spec->name, r.events.error().message());
    self->delayed_send(self, retry_interval, retry_atom::value, true);
    return;
  }
  for (auto& rec : *r.events) {
    auto e = from_record(rec);
    if (!e) {
      // A coordinator that skipped an allocation could hand a shard out twice
      // under one epoch: refuse to run instead.
      st.ctx->log().error("sharding", "{} coordinator: its state is damaged: {}", st.spec->name,
                          e.error().message());
      self->quit(caf::exit_reason::user_shutdown);
      return;
    }
    st.core->recover(*e);
  }
  st.next_seq = r.highest + 1;
  st.recovered = true;
  st.ctx->log().info("sharding", "{} coordinator started on {} with {} allocations ({} events)",
                     st.spec->name, st.transport->identity().to_string(),
                     st.core->allocations().size(), r.events->size());
  st.core->start(now(), st.fx);
  members_changed(self);
  for (auto& pk : st.early)
    receive_packet(self, pk);
  st.early.clear();
  self->send(self, coordinator_tick_atom::value);
}

void written(self_ptr self, write_result& w) {
  auto& st = *self->state;
  st.writing = 0;
  if (!w.result) {
    if (w.result.error().code() == errc::sequence_conflict) {
      st.ctx->log().error("sharding",
                          "{} coordinator: another coordinator wrote its state ({}); this one "
                          "stops",
                          st.spec->name, w.result.error().message());
      self->quit(caf::exit_reason::user_shutdown);
      return;
    }
    st.ctx->log().warn("sharding", "{} coordinator: writing its state failed ({}); retrying",
                       st.spec->name, w.result.error().message());
    self->delayed_send(self, retry_interval, retry_atom::value, false);
    return;
  }
  st.next_seq += w.events;
  auto t = now();
  for (std::size_t i = 0; i < w.events; ++i) {
    st.unwritten.pop_front();
    st.core->persisted(t, st.fx);
  }
  apply(self);
}

} // namespace

namespace {

caf::behavior coordinator_actor(caf::stateful_actor<std::shared_ptr<coordinator_state>>* self,
                                std::shared_ptr<const entity_type_spec> spec) {
  // Shared with the exit functor below: CAF destroys an actor's state before
  // its attached functors run.
  self->state = std::make_shared<coordinator_state>();
  auto& st = *self->state;
  st.ctx = &node_of(self);
  st.spec = spec;
  st.transport = remote::transport::of(self->system());
  st.cluster = membership::cluster::of(self->system());
  st.journal = st.ctx->extension<persistence::journal_service>();
  st.persistence_id = coordinator_persistence_id(spec->name);
  coordinator_settings cs;
  cs.number_of_shards = spec->settings.number_of_shards;
  cs.rebalance_interval = spec->settings.rebalance_interval;
  cs.begin_hand_off_timeout = spec->settings.begin_hand_off_timeout;
  cs.hand_off_timeout = spec->settings.hand_off_timeout;
  cs.allocate_released_at_once = spec->settings.remember_entities;
  st.core = std::make_unique<coordinator_core>(st.transport->identity(), cs);
  st.regions = &st.ctx->metrics().gauge("troupe_sharding_coordinator_regions",
                                        {{"type", spec->name}},
                                        "Hosting regions registered with this node's coordinator.");
  st.packets = st.transport->subscribe_packets(coordinator_channel(spec->name),
                                               caf::actor_cast<caf::actor>(self));
  st.cluster->subscribe(caf::actor_cast<caf::actor>(self));
  self->attach_functor([self, shared = self->state] {
    auto& s = *shared;
    // Another node's coordinator counts the regions from here on.
    s.regions->set(0);
    s.transport->unsubscribe(s.packets);
    s.cluster->unsubscribe(caf::actor_cast<caf::actor>(self));
  });
  read_journal(self);
  return {
    [self](recovery_result& r) { recovered(self, r); },
    [self](write_result& w) { written(self, w); },
    [self](retry_atom, bool recovery) {
      if (recovery)
        read_journal(self);
      else
        write_next(self);
    },
    [self](remote::packet& pk) {
      if (!self->state->recovered)
        self->state->early.push_back(std::move(pk));
      else
        receive_packet(self, pk);
    },
    [self](const membership::cluster_event&) {
      if (self->state->recovered)
        members_changed(self);
    },
    [self](coordinator_tick_atom) {
      auto& st = *self->state;
      st.core->tick(now(), st.fx);
      // Convergence is no cluster event: look at the state now and then, or a
      // coordinator that saw a join before it converged would never rebalance.
      if (++st.ticks % 5 == 0)
        members_changed(self);
      apply(self);
      self->delayed_send(self, tick_interval, coordinator_tick_atom::value);
    },
  };
}

} // namespace

caf::actor spawn_coordinator(caf::actor_system& sys, std::shared_ptr<const entity_type_spec> spec) {
  return spawn_actor(sys, "troupe.sharding.coordinator." + spec->name, coordinator_actor, spec);
}

} // namespace troupe::sharding::detail
