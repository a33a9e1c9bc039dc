// The shard region shell: carries out what region_core decides.
//
// Messages for entities arrive as sharded_command (an entity_ref on this node) or
// in a batch of forwarded commands (another node's region, through the
// transport). Each becomes a `pending` entry with a token the core routes: to a
// local shard (the entity is started on demand and asked), to another node's
// region (batched per node with the others of this burst:
// remote_commands.hpp), or into the core's buffer until the home is known. Every
// pending entry completes exactly once: with the entity's reply, its error, a
// refusal, or `timeout` at its deadline.
//
// An entity being stopped (passivation, hand-off) keeps its id's new messages
// waiting until its actor is gone, so one node never runs two incarnations of an
// id; a shard is reported stopped once all its entities are gone.
//
// Fencing: before a shard starts here, the region raises the journal's fence of
// the shard to the epoch the coordinator gave it; its entities persist under that
// fence. An entity is stopped with stop_and_hand_back: the persist in flight
// finishes and is answered, and every command the region sent it that was not
// answered is routed again (to the shard's next home), not failed.
//
// This file holds the region's behaviour: its message handlers and the effects of
// region_core it carries out (shards started and stopped, messages to the
// coordinator). Its state is in region_state.hpp; delivering commands in
// region_delivery.cpp, the entities' lifecycle in region_entities.cpp, remembered
// entities in region_remembered.cpp.
#include "region_actor.hpp"

#include "region_messages.hpp"
#include "region_state.hpp"
#include "wire.hpp"

#include "troupe/actors/caf_error.hpp"
#include "troupe/actors/node.hpp"
#include "troupe/actors/node_context.hpp"
#include "troupe/actors/remote/transport.hpp"
#include "troupe/membership/cluster.hpp"
#include "troupe/persistence/journal_actor.hpp"
#include "troupe/sharding/region_core.hpp"
#include "troupe/sharding/snapshot.hpp"

#include <caf/all.hpp>
#include <fmt/format.h>

#include <algorithm>

namespace troupe::sharding::detail {

namespace {

constexpr auto tick_interval = std::chrono::milliseconds{100};

void stop_shard(region_self self, shard_id s) {
  auto& st = *self->state;
  // Its entities stop to run at the next home: the set stays as it is.
  st.remembered.erase(s);
  st.stopping.insert(s);
  auto it = st.by_shard.find(s);
  if (it == st.by_shard.end() || it->second.empty()) {
    st.stopping.erase(s);
    st.by_shard.erase(s);
    st.core->shard_stopped_locally(now(), s, st.fx);
    return;
  }
  for (auto* slot : it->second.snapshot())
    stop_entity(self, *slot->id, *slot);
}

/// Raises the shard's fence to `epoch`, then reports the shard started (or, if
/// the journal refuses, failed: a newer owner fenced it, or the journal is down).
void start_shard(region_self self, shard_id s, std::uint64_t epoch) {
  auto& st = *self->state;
  auto key = shard_fence_key(st.spec->name, s);
  persistence::advance_fence(self, key, epoch, st.spec->settings.begin_hand_off_timeout)
    .then([self, s, epoch](expected<persistence::fence_advanced> r) {
      auto& st = *self->state;
      auto ls = st.core->local_shards().find(s);
      if (ls == st.core->local_shards().end() || ls->second.epoch != epoch
          || ls->second.state != region_core::shard_state::starting)
        return;  // the coordinator changed its mind meanwhile
      if (r && st.spec->settings.remember_entities) {
        // Started once its remembered entities are known (messages wait in the
        // core's buffer meanwhile).
        load_remembered(*st.journal, remembered_persistence_id(st.spec->name, s), s, epoch,
                        caf::actor_cast<caf::actor>(self));
        return;
      }
      if (r) {
        st.ctx->log().info("sharding", "{}: hosting shard {} (epoch {})", st.spec->name, s,
                           epoch);
        st.core->shard_started(now(), s, st.fx);
      } else {
        st.ctx->log().warn("sharding", "{}: shard {} (epoch {}) not started: {}",
                           st.spec->name, s, epoch, r.error().message());
        st.core->shard_start_failed(now(), s, st.fx);
      }
      apply(self);
    });
}

void answer_leave_waiters(region_self self) {
  auto& st = *self->state;
  if (st.leave_waiters.empty() || !st.core->local_shards().empty())
    return;
  for (auto& rp : st.leave_waiters)
    rp.deliver(true);
  st.leave_waiters.clear();
}

} // namespace

void apply(region_self self) {
  auto& st = *self->state;
  // Starting or stopping a shard feeds the core again: loop until nothing is left.
  for (int rounds = 0; rounds < 100; ++rounds) {
    auto fx = std::move(st.fx);
    st.fx.clear();
    if (fx.messages.empty() && fx.start_shards.empty() && fx.stop_shards.empty()
        && fx.deliveries.empty())
      break;
    for (auto& m : fx.messages) {
      if (!st.transport)
        break;
      auto bytes = encode(m);
      // A refused send is a lost message: the core asks again by itself.
      (void) st.transport->send_packet(m.to, coordinator_channel(st.spec->name),
                                       envelope_manifest, 1, bytes);
    }
    for (auto s : fx.stop_shards)
      stop_shard(self, s);
    for (auto [s, epoch] : fx.start_shards)
      start_shard(self, s, epoch);
    for (auto& batch : fx.deliveries)
      for (auto token : batch.tokens) {
        auto node = st.tokens.extract(token);
        if (!node.empty())
          deliver(self, batch.destination, std::move(node.mapped()));
      }
  }
  st.buffered_gauge->set(static_cast<double>(st.core->buffered()));
  st.shards_gauge->set(static_cast<double>(st.core->local_shards().size()));
  st.entities_gauge->set(static_cast<double>(st.entities.size()));
  answer_leave_waiters(self);
}

namespace {

region_report make_report(region_self self) {
  auto& st = *self->state;
  region_report r;
  r.entity_type = st.spec->name;
  r.region = st.core->self();
  for (auto& [s, ls] : st.core->local_shards()) {
    std::size_t n = 0;
    if (auto it = st.by_shard.find(s); it != st.by_shard.end())
      n = it->second.size();
    r.shards.push_back({s, ls.epoch, n});
  }
  r.entities = st.entities.size();
  r.buffered = st.core->buffered();
  r.refused = st.core->refused();
  return r;
}

void cluster_changed(region_self self) {
  auto& st = *self->state;
  if (!st.cluster)
    return;
  auto v = st.cluster->view();
  auto t = now();
  auto& role = st.spec->settings.role;
  st.core->members_changed(t, cluster_snapshot_of(*v.state, role), st.fx);
  st.core->coordinator_moved(t, coordinator_location(*v.state, role), st.fx);
  if (auto* me = v.self_member();
      me
      && (me->status == membership::member_status::leaving
          || me->status == membership::member_status::exiting))
    st.core->graceful_shutdown(t, st.fx);
  apply(self);
}

caf::behavior region_actor(caf::stateful_actor<std::shared_ptr<region_state>>* self,
                           std::shared_ptr<const entity_type_spec> spec) {
  // Shared with the exit functor below: CAF destroys an actor's state before
  // its attached functors run.
  self->state = std::make_shared<region_state>();
  auto& st = *self->state;
  st.ctx = &node_of(self);
  st.spec = spec;
  auto& metrics = st.ctx->metrics();
  st.buffered_gauge =
    &metrics.gauge("troupe_sharding_buffered", {{"type", spec->name}},
                   "Messages a region holds while shard homes are unknown or moving.");
  st.shards_gauge =
    &metrics.gauge("troupe_sharding_shards", {{"type", spec->name}}, "Shards this region hosts.");
  st.entities_gauge = &metrics.gauge("troupe_sharding_entities", {{"type", spec->name}},
                                     "Entities running in this region.");
  st.forwarded_batches =
    &metrics.counter("troupe_sharding_forwarded_batches_total", {{"type", spec->name}},
                     "Packets of commands this region forwarded to other nodes' regions.");
  st.forwarded_commands = &metrics.counter(
    "troupe_sharding_forwarded_commands_total", {{"type", spec->name}},
    "Commands this region forwarded to other nodes' regions (many per packet).");
  st.transport = remote::transport::of(self->system());
  st.cluster = membership::cluster::of(self->system());
  st.journal = st.ctx->extension<persistence::journal_service>();
  region_settings rs;
  rs.number_of_shards = spec->settings.number_of_shards;
  rs.buffer_size = spec->settings.buffer_size;
  auto self_id = st.transport ? st.transport->identity() : node_identity{};
  if (!spec->settings.role.empty()) {
    auto roles = st.cluster ? st.cluster->settings().roles : std::vector<std::string>{};
    rs.proxy_only = std::find(roles.begin(), roles.end(), spec->settings.role) == roles.end();
  }
  st.core = std::make_unique<region_core>(self_id, rs);
  st.channel = region_channel(spec->name);
  // A batch leaves room in a frame for the header and one more entry's growth.
  auto frame = static_cast<std::size_t>(st.ctx->config().get_int("transport.max-frame-size"));
  st.forwarded = remote_commands{std::min(default_batch_bytes, frame / 2)};
  if (st.transport) {
    st.packets = st.transport->subscribe_packets(st.channel, caf::actor_cast<caf::actor>(self));
    st.peers = st.transport->subscribe(caf::actor_cast<caf::actor>(self));
  }
  if (st.cluster)
    st.cluster->subscribe(caf::actor_cast<caf::actor>(self));
  self->set_down_handler([self](caf::down_msg& dm) { entity_down(self, dm); });
  self->attach_functor([self, shared = self->state] {
    // The region's entities end with it; its subscriptions too.
    auto& s = *shared;
    s.stopped = true;
    for (auto& [id, slot] : s.entities) {
      close_route(slot);
      if (slot.actor)
        caf::anon_send_exit(slot.actor, caf::exit_reason::user_shutdown);
    }
    if (s.transport && s.packets != 0)
      s.transport->unsubscribe(s.packets);
    if (s.transport && s.peers != 0)
      s.transport->unsubscribe(s.peers);
    if (s.cluster)
      s.cluster->unsubscribe(caf::actor_cast<caf::actor>(self));
    auto stopped = [&](pending& p) {
      complete(p, error{errc::shutting_down,
                        fmt::format("entity '{}|{}': the shard region stopped", s.spec->name, p.id)});
    };
    for (auto& [token, p] : s.tokens)
      stopped(p);
    s.tokens.clear();
    s.forwarded.fail_all(
      error{errc::shutting_down, fmt::format("{}: the shard region stopped", s.spec->name)});
    for (auto& [id, slot] : s.entities)
      if (slot.asked)
        for (auto& [token, p] : *slot.asked)
          stopped(p);
    s.lru = {};
    s.by_shard.clear();
    s.by_actor.clear();
    s.entities.clear();
  });
  self->send(self, region_tick_atom::value);
  return {
    [self](sharded_command& c) -> caf::result<sharded_reply> {
      auto rp = self->make_response_promise<sharded_reply>();
      pending p{std::move(c.id), std::move(c.cmd), c.deadline, 0,
                [rp](expected<reply_box> r) mutable {
                  if (r)
                    rp.deliver(sharded_reply{std::move(*r)});
                  else
                    rp.deliver(to_caf_error(r.error()));
                },
                std::move(c.cache), c.seq};
      route(self, std::move(p));
      return rp;
    },
    [self](flush_forwarded_atom) { flush_forwarded(self); },
    [self](const remote::peer_event& e) { peer_changed(self, e); },
    [self](remote::packet& pk) {
      auto& st = *self->state;
      if (pk.manifest == commands_manifest) {
        receive_commands(self, pk);
        return;
      }
      if (pk.manifest == answers_manifest) {
        receive_answers(self, pk);
        return;
      }
      auto e = decode_sharding_envelope(pk.payload.data(), pk.payload.size());
      if (!e) {
        st.ctx->log().warn("sharding", "{}: dropped a message from {}: {}", st.spec->name,
                           pk.from.to_string(), e.error().message());
        return;
      }
      if (e->to != st.core->self())
        return;  // meant for an earlier incarnation of this node
      st.core->receive(now(), *e, st.fx);
      apply(self);
    },
    [self](const membership::cluster_event&) { cluster_changed(self); },
    [self](remembered_loaded& m) { remembered_loaded_for(self, m); },
    [self](remembered_written& m) { remembered_written_for(self, m); },
    [self](region_tick_atom) {
      auto& st = *self->state;
      st.core->tick(now(), st.fx);
      st.forwarded.expire(slot_clock::now(), st.spec->name);
      expire_and_passivate(self);
      start_remembered(self);
      apply(self);
      self->delayed_send(self, tick_interval, region_tick_atom::value);
    },
    [self](hand_off_all_atom) -> caf::result<bool> {
      auto& st = *self->state;
      auto rp = self->make_response_promise();
      st.leave_waiters.push_back(rp);
      st.core->graceful_shutdown(now(), st.fx);
      apply(self);
      return caf::delegated<bool>{};
    },
    [self](report_atom) -> region_report { return make_report(self); },
    [self](const region_report_request& req) -> caf::result<region_report> {
      if (req.entity_type != self->state->spec->name)
        return to_caf_error(error{errc::not_found,
                                  fmt::format("region '{}' got a report request for '{}'",
                                              self->state->spec->name, req.entity_type)});
      return make_report(self);
    },
  };
}

} // namespace

expected<caf::actor> spawn_region(node& n, std::shared_ptr<const entity_type_spec> spec) {
  return n.spawn(region_name(spec->name), region_actor, spec);
}

} // namespace troupe::sharding::detail
