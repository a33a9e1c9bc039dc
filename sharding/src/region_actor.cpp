// The shard region shell: carries out what region_core decides.
//
// Messages for entities arrive as sharded_command (an entity_ref on this node) or
// in a batch of forwarded commands (another node's region, through the
// transport). Each becomes a `pending` entry with a token the core routes: to a
// local shard (the entity is started on demand and asked), to another node's
// region (batched per node with the others of this mailbox burst:
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
#include "region_actor.hpp"

#include "entity_slots.hpp"
#include "region_messages.hpp"
#include "remembered_entities.hpp"
#include "remote_commands.hpp"
#include "wire.hpp"

#include "troupe/actors/ask.hpp"
#include "troupe/actors/caf_error.hpp"
#include "troupe/actors/detail/lazy_deque.hpp"
#include "troupe/actors/node.hpp"
#include "troupe/actors/node_context.hpp"
#include "troupe/actors/remote/transport.hpp"
#include "troupe/membership/cluster.hpp"
#include "troupe/persistence/detail/entity_routing.hpp"
#include "troupe/persistence/journal_actor.hpp"
#include "troupe/persistence/owned_entity.hpp"
#include "troupe/sharding/region_core.hpp"
#include "troupe/sharding/snapshot.hpp"

#include <caf/all.hpp>

#include <map>
#include <deque>
#include <set>
#include <unordered_map>

namespace troupe::sharding::detail {

namespace {

using clock = slot_clock;

constexpr auto tick_interval = std::chrono::milliseconds{100};
/// The most a batch of forwarded commands or answers grows to (less if the
/// transport's frames are smaller).
constexpr std::size_t default_batch_bytes = 64 * 1024;

timestamp now() {
  return std::chrono::duration_cast<timestamp>(clock::now().time_since_epoch());
}

/// A shard's remembered entities (remember_entities), once loaded.
struct remembered_shard {
  std::uint64_t epoch = 0;
  std::set<std::string> ids;
  persistence::sequence_nr next_seq = 1;
  bool writing = false;
  bool writing_set = false;            ///< the write in flight holds the whole set
  std::size_t changes_since_set = 0;  ///< change events stored after the last set
  std::vector<std::string> started;  ///< changes not written yet
  std::vector<std::string> stopped;
  std::deque<std::string> to_start;  ///< remembered, not started yet
};

} // namespace

struct region_state {
  node_context* ctx = nullptr;
  std::shared_ptr<const entity_type_spec> spec;
  std::unique_ptr<region_core> core;
  region_effects fx;
  std::shared_ptr<remote::transport> transport;
  std::shared_ptr<membership::cluster> cluster;
  /// Set first when the region stops: answers owed to other nodes are dropped
  /// (their deadlines answer them there), no flush is scheduled any more.
  bool stopped = false;
  remote::transport::subscription packets = 0;
  remote::transport::subscription peers = 0;
  std::string channel;  ///< region_channel of the type
  /// Commands forwarded to other nodes' regions, answers owed to them.
  remote_commands forwarded{default_batch_bytes};
  message_token next_token = 1;
  std::unordered_map<message_token, pending> tokens;
  std::unordered_map<std::string, entity_slot> entities;
  /// The slot of each incarnation, by its actor id (for its down message).
  std::unordered_map<caf::actor_id, entity_slot*> by_actor;
  std::map<shard_id, shard_members> by_shard;
  /// Running entities, most recently used first (for max_active_entities).
  lru_list lru;
  std::size_t stopping_entities = 0;
  /// Entities marked stopping whose stop request waits for a free slot (id and
  /// the incarnation's actor id), and the stop requests in flight.
  std::deque<std::pair<std::string, caf::actor_id>> stop_queue;
  std::size_t stops_in_flight = 0;
  std::set<shard_id> stopping;
  std::shared_ptr<persistence::journal_service> journal;
  std::map<shard_id, remembered_shard> remembered;
  std::vector<caf::response_promise> leave_waiters;
};

namespace {

using self_ptr = caf::stateful_actor<std::shared_ptr<region_state>>*;

void apply(self_ptr self);
void route(self_ptr self, pending p);

void complete(pending& p, expected<reply_box> r) {
  if (p.done)
    p.done(std::move(r));
}

void stop_entity(self_ptr self, const std::string& id, entity_slot& slot);

/// Writes a remembered shard's pending changes (one write in flight per shard,
/// under the shard's fence).
void write_remembered(self_ptr self, shard_id s) {
  auto& st = *self->state;
  auto it = st.remembered.find(s);
  if (it == st.remembered.end())
    return;
  auto& r = it->second;
  if (r.writing || (r.started.empty() && r.stopped.empty()))
    return;
  persistence::atomic_write w;
  w.persistence_id = remembered_persistence_id(st.spec->name, s);
  // Every compact_after changes the whole set (r.ids has the pending changes).
  r.writing_set = r.changes_since_set >= compact_after;
  w.events.push_back(r.writing_set
                       ? remembered_set_record(w.persistence_id, r.next_seq, r.ids)
                       : remembered_record(w.persistence_id, r.next_seq, r.started, r.stopped));
  w.fence = persistence::write_fence{shard_fence_key(st.spec->name, s), r.epoch};
  r.started.clear();
  r.stopped.clear();
  r.writing = true;
  st.journal->write(std::move(w), [me = caf::actor_cast<caf::actor>(self), s,
                                   epoch = r.epoch](expected<void> result) {
    caf::anon_send(me, remembered_written{s, epoch, std::move(result)});
  });
}

/// Records that entity `id` of shard `s` started (or was passivated), if the
/// shard remembers its entities.
void remember(self_ptr self, shard_id s, const std::string& id, bool started) {
  auto& st = *self->state;
  auto it = st.remembered.find(s);
  if (it == st.remembered.end())
    return;
  auto& r = it->second;
  if (started ? !r.ids.insert(id).second : r.ids.erase(id) == 0)
    return;
  (started ? r.started : r.stopped).push_back(id);
  write_remembered(self, s);
}

void count_passivation(self_ptr self, std::string_view reason) {
  auto& st = *self->state;
  st.ctx->metrics()
    .counter("troupe_sharding_passivations_total", {{"type", st.spec->name}, {"reason", std::string{reason}}},
             "Entities stopped after being idle (reason idle) or to stay within "
             "max_active_entities (reason limit).")
    .inc();
}

/// Passivates least recently used idle entities while more than
/// max_active_entities run (the newest is never chosen: it is about to be asked).
void enforce_entity_limit(self_ptr self) {
  auto& st = *self->state;
  auto limit = st.spec->settings.max_active_entities;
  if (limit == 0)
    return;
  auto* newest = st.lru.front();
  for (auto* s = st.lru.back();
       s != nullptr && s != newest && st.entities.size() - st.stopping_entities > limit;) {
    auto* older_next = lru_list::prev(s);
    auto& slot = *s;
    s = older_next;
    if (slot.stopping || slot.has_asked() || !slot.waiting.empty())
      continue;
    if (auto t = used_at(slot); t > slot.last_used) {
      // Used over its direct route since: as recent as that use.
      slot.last_used = t;
      st.lru.move_to_front(&slot);
      continue;
    }
    count_passivation(self, "limit");
    auto id = *slot.id;
    remember(self, slot.shard, id, false);
    stop_entity(self, id, slot);
  }
}

/// The entity `id`'s slot, its incarnation started (under the shard's fence) if
/// it has none; fails like spawn_owned_entity.
expected<entity_slot*> slot_for(self_ptr self, const std::string& id, shard_id shard) {
  auto& st = *self->state;
  if (auto it = st.entities.find(id); it != st.entities.end() && it->second.actor)
    return &it->second;
  auto& local = st.core->local_shards();
  auto ls = local.find(shard);
  if (ls == local.end())
    return error{errc::internal, fmt::format("entity '{}|{}': shard {} is not hosted here",
                                             st.spec->name, id, shard)};
  persistence::entity_placement placement;
  placement.fence = persistence::write_fence{shard_fence_key(st.spec->name, shard),
                                             ls->second.epoch};
  auto a = st.spec->spawn(self, id, std::move(placement));
  if (!a)
    return std::move(a).error();
  auto [it, inserted] = st.entities.try_emplace(id);
  auto& slot = it->second;
  slot.actor = *a;
  slot.shard = shard;
  slot.stopping = false;
  if (inserted) {
    slot.id = &it->first;
    st.lru.push_front(&slot);
    st.by_shard[shard].push_front(&slot);
  }
  st.by_actor[a->id()] = &slot;
  remember(self, shard, id, true);
  enforce_entity_limit(self);
  return &slot;
}

/// The answer to a command the region sent an entity; ignored if the command was
/// routed again meanwhile (the entity handed it back).
void answered(self_ptr self, const std::string& id, message_token token,
              expected<reply_box> r) {
  auto& ents = self->state->entities;
  auto it = ents.find(id);
  if (it == ents.end())
    return;
  auto& slot = it->second;
  if (!slot.asked)
    return;
  auto node = slot.asked->extract(token);
  if (slot.asked->empty())
    slot.asked.reset();  // an idle entity keeps no map
  if (!node.empty())
    complete(node.mapped(), std::move(r));
}

/// Tells a ref's cache that its command `seq` is in the entity's mailbox, with
/// the direct route to the entity from the second command a ref sent it on.
void offer_route(self_ptr self, entity_slot& slot, direct_cache& cache, std::uint64_t seq) {
  auto& st = *self->state;
  if (slot.asked_by_ref && !slot.direct) {
    slot.direct = std::make_shared<direct_route>(slot.actor);
    st.ctx->metrics()
      .counter("troupe_sharding_direct_routes_total", {{"type", st.spec->name}},
               "Direct routes given to entity_refs on this node (their next commands skip "
               "the region).")
      .inc();
  }
  slot.asked_by_ref = true;
  cache.forwarded(seq, slot.direct);
}

/// The entity `id` ended before it got the command `token` (CAF bounced it,
/// unhandled): it waits for the next incarnation like a command that arrives
/// while one stops.
void bounced(self_ptr self, const std::string& id, message_token token) {
  auto& st = *self->state;
  auto it = st.entities.find(id);
  if (it == st.entities.end())
    return;
  auto& slot = it->second;
  if (!slot.asked)
    return;
  auto node = slot.asked->extract(token);
  if (slot.asked->empty())
    slot.asked.reset();
  if (node.empty())
    return;
  auto again = st.next_token++;
  st.tokens.emplace(again, std::move(node.mapped()));
  it->second.waiting.push_back(again);
}

/// Asks the local entity; the token's entry is consumed.
void deliver_local(self_ptr self, shard_id shard, pending p) {
  auto& st = *self->state;
  auto t = clock::now();
  if (t >= p.deadline) {
    complete(p, error{errc::timeout, fmt::format("entity '{}|{}': no reply in time",
                                                 st.spec->name, p.id)});
    return;
  }
  auto found = slot_for(self, p.id, shard);
  if (!found) {
    complete(p, std::move(found).error());
    return;
  }
  auto& slot = **found;
  auto token = st.next_token++;
  if (slot.stopping) {
    slot.waiting.push_back(token);
    st.tokens.emplace(token, std::move(p));
    return;
  }
  slot.last_used = t;
  st.lru.move_to_front(&slot);
  auto timeout = std::chrono::duration_cast<duration>(p.deadline - t);
  auto cmd = p.cmd;
  auto id = p.id;
  auto cache = std::move(p.cache);
  auto seq = p.seq;
  slot.asked_map().emplace(token, std::move(p));
  persistence::detail::ask_entity(
    self, slot.actor, timeout, std::move(cmd),
    [self, id, token](expected<reply_box> r) { answered(self, id, token, std::move(r)); },
    [self, id, token](command_ptr, persistence::detail::ask_continuation) {
      bounced(self, id, token);
    });
  if (cache)
    offer_route(self, slot, *cache, seq);
}

/// Forwards to another node's region through the transport.
/// Sends what remote_commands queued (flush_forwarded_atom).
void flush_forwarded(self_ptr self) {
  auto& st = *self->state;
  auto& metrics = st.ctx->metrics();
  for (auto& p : st.forwarded.take()) {
    auto sent = st.transport ? st.transport->send_packet(p.to, st.channel, p.manifest, 1, p.bytes)
                             : expected<void>{error{errc::shutting_down, "no transport"}};
    if (!sent) {
      st.forwarded.not_sent(p, sent.error());  // answers not sent: the origin times out
      continue;
    }
    if (p.requests.empty())
      continue;
    metrics
      .counter("troupe_sharding_forwarded_batches_total", {{"type", st.spec->name}},
               "Packets of commands this region forwarded to other nodes' regions.")
      .inc();
    metrics
      .counter("troupe_sharding_forwarded_commands_total", {{"type", st.spec->name}},
               "Commands this region forwarded to other nodes' regions (many per packet).")
      .inc(p.requests.size());
  }
}

void schedule_flush(self_ptr self, bool needed) {
  if (needed)
    self->send(self, flush_forwarded_atom::value);
}

void deliver_remote(self_ptr self, const node_identity& region, pending p) {
  auto& st = *self->state;
  auto t = clock::now();
  if (t >= p.deadline || !st.transport) {
    complete(p, error{errc::timeout, fmt::format("entity '{}|{}': no reply in time",
                                                 st.spec->name, p.id)});
    return;
  }
  auto bytes = st.spec->protocol->encode_command(*p.cmd);
  if (!bytes) {
    complete(p, std::move(bytes).error());
    return;
  }
  auto timeout = std::chrono::duration_cast<std::chrono::milliseconds>(p.deadline - t);
  forwarded_command c{0, p.hops + 1, timeout.count(), p.id, std::move(*bytes)};
  auto done = [done = std::move(p.done), proto = st.spec->protocol](
                expected<persistence::encoded_message> r) mutable {
    if (!done)
      return;
    if (!r)
      done(std::move(r).error());
    else
      done(proto->decode_reply(r->manifest, r->version, r->payload));
  };
  schedule_flush(self, st.forwarded.forward(region, std::move(c), p.deadline, std::move(done)));
}

void deliver(self_ptr self, const routing& where, pending p) {
  if (where.what == routing::kind::local)
    deliver_local(self, where.shard, std::move(p));
  else
    deliver_remote(self, where.region, std::move(p));
}

void route(self_ptr self, pending p) {
  auto& st = *self->state;
  auto token = st.next_token++;
  auto hops = static_cast<int>(p.hops);
  auto id = p.id;
  st.tokens.emplace(token, std::move(p));
  auto r = st.core->route(now(), id, token, st.fx, hops);
  if (r.what != routing::kind::buffered) {
    auto node = st.tokens.extract(token);
    if (r.what == routing::kind::refused) {
      st.ctx->metrics()
        .counter("troupe_sharding_refused_total", {{"type", st.spec->name}},
                 "Messages a region refused (buffer full, too many hops).")
        .inc();
      complete(node.mapped(), error{errc::overloaded, fmt::format("entity '{}|{}': {}",
                                                                  st.spec->name, id, r.reason)});
    } else {
      deliver(self, r, std::move(node.mapped()));
    }
  }
  apply(self);
}

/// Commands the stopped entity `id` never answered wait for its next incarnation,
/// ahead of those that arrived while it stopped: first those the region sent it,
/// then those refs sent it directly (`held`, as it handed them back; the region's
/// own are among them and skipped: they are in `asked`).
void requeue_unanswered(self_ptr self, const std::string& id,
                        std::vector<caf::mailbox_element_ptr>& held) {
  auto& st = *self->state;
  auto it = st.entities.find(id);
  if (it == st.entities.end())
    return;
  auto& slot = it->second;
  auto me = caf::actor_cast<caf::strong_actor_ptr>(self);
  for (auto e = held.rbegin(); e != held.rend(); ++e) {
    auto& elem = **e;
    auto cmd = persistence::detail::command_of(elem);
    if (elem.sender == me || !cmd)
      continue;
    caf::response_promise rp{me, elem};
    pending p{id, std::move(cmd), clock::now() + held_command_deadline, 0,
              [rp](expected<reply_box> r) mutable {
                persistence::detail::answer_command(rp, std::move(r));
              }};
    auto token = st.next_token++;
    st.tokens.emplace(token, std::move(p));
    slot.waiting.push_front(token);
  }
  if (!slot.asked)
    return;
  for (auto a = slot.asked->rbegin(); a != slot.asked->rend(); ++a) {
    auto token = st.next_token++;
    st.tokens.emplace(token, std::move(a->second));
    slot.waiting.push_front(token);
  }
  slot.asked.reset();
}

/// Stops an entity the way a hand-off needs: its persist in flight finishes and
/// is answered, what it holds unanswered is routed again once it is gone.
/// Stop requests a region keeps in flight at once. CAF 0.17 keeps an actor's
/// pending responses in a flat vector (linear lookup and erase per response), so
/// 100,000 stop requests at once (a node with many entities shutting down) cost
/// quadratic time; queued beyond this, each response costs at most this much.
constexpr std::size_t max_stops_in_flight = 256;

void send_stop(self_ptr self, const std::string& id, entity_slot& slot);

/// Sends the queued stop requests while fewer than max_stops_in_flight are out
/// (skipping entities that ended or were replaced meanwhile).
void send_queued_stops(self_ptr self) {
  auto& st = *self->state;
  while (st.stops_in_flight < max_stops_in_flight && !st.stop_queue.empty()) {
    auto [id, actor_id] = std::move(st.stop_queue.front());
    st.stop_queue.pop_front();
    auto it = st.entities.find(id);
    if (it != st.entities.end() && it->second.stopping && it->second.actor
        && it->second.actor.id() == actor_id)
      send_stop(self, id, it->second);
  }
}

void stop_entity(self_ptr self, const std::string& id, entity_slot& slot) {
  if (slot.stopping || !slot.actor)
    return;
  // Every direct command is in the entity's mailbox before the stop request.
  close_route(slot);
  slot.stopping = true;
  auto& st = *self->state;
  ++st.stopping_entities;
  if (st.stops_in_flight >= max_stops_in_flight) {
    st.stop_queue.emplace_back(id, slot.actor.id());
    return;
  }
  send_stop(self, id, slot);
}

void send_stop(self_ptr self, const std::string& id, entity_slot& slot) {
  ++self->state->stops_in_flight;
  auto timeout = self->state->spec->settings.hand_off_timeout;
  troupe::ask<persistence::handed_back>(self, slot.actor, timeout,
                                        persistence::stop_and_hand_back{})
    .then([self, id, actor = slot.actor](expected<persistence::handed_back> r) {
      --self->state->stops_in_flight;
      send_queued_stops(self);
      if (r) {
        // Every command the entity answered was answered before this reply (one
        // sender, one receiver: in order), so what is still asked was not handled.
        if (r->commands)
          requeue_unanswered(self, id, *r->commands);
        else {
          std::vector<caf::mailbox_element_ptr> none;
          requeue_unanswered(self, id, none);
        }
        return;
      }
      if (r.error().code() != errc::actor_down) {
        self->state->ctx->log().warn("sharding", "{}: entity '{}' did not stop in time ({}); "
                                                 "killing it",
                                     self->state->spec->name, id, r.error().message());
        self->send_exit(actor, caf::exit_reason::kill);
      }
    });
}

void stop_shard(self_ptr self, shard_id s) {
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
void start_shard(self_ptr self, shard_id s, std::uint64_t epoch) {
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

/// The remembered entities of a starting shard are known: start the shard, and
/// its entities a few per tick.
void remembered_loaded_for(self_ptr self, remembered_loaded& m) {
  auto& st = *self->state;
  auto ls = st.core->local_shards().find(m.shard);
  if (ls == st.core->local_shards().end() || ls->second.epoch != m.epoch
      || ls->second.state != region_core::shard_state::starting)
    return;
  auto ids = m.events ? fold_remembered(*m.events) : expected<remembered_fold>{m.events.error()};
  if (!ids) {
    st.ctx->log().warn("sharding", "{}: shard {} (epoch {}) not started: its remembered entities "
                                   "cannot be read: {}",
                       st.spec->name, m.shard, m.epoch, ids.error().message());
    st.core->shard_start_failed(now(), m.shard, st.fx);
    apply(self);
    return;
  }
  auto& r = st.remembered[m.shard];
  r = remembered_shard{};
  r.epoch = m.epoch;
  r.ids = std::move(ids->ids);
  r.changes_since_set = ids->changes_since_set;
  r.next_seq = m.highest + 1;
  r.to_start.assign(r.ids.begin(), r.ids.end());
  st.ctx->log().info("sharding", "{}: hosting shard {} (epoch {}), {} remembered entities",
                     st.spec->name, m.shard, m.epoch, r.ids.size());
  st.core->shard_started(now(), m.shard, st.fx);
  apply(self);
}

void remembered_written_for(self_ptr self, remembered_written& m) {
  auto& st = *self->state;
  auto it = st.remembered.find(m.shard);
  if (it == st.remembered.end() || it->second.epoch != m.epoch)
    return;
  it->second.writing = false;
  if (!m.result) {
    // Fenced (a newer owner), or the journal failed: this region stops
    // remembering the shard's changes rather than guess what was stored.
    st.ctx->log().warn("sharding", "{}: shard {}: remembered entities not updated: {}",
                       st.spec->name, m.shard, m.result.error().message());
    st.remembered.erase(it);
    return;
  }
  auto& r = it->second;
  if (r.writing_set) {
    // The events before the whole set are folded into it: delete them (a failed
    // delete only leaves more to read; the set is stored either way).
    r.changes_since_set = 0;
    st.journal->delete_events_to(
      remembered_persistence_id(st.spec->name, m.shard), r.next_seq - 1,
      [log = &st.ctx->log(), type = st.spec->name, shard = m.shard](expected<void> d) {
        if (!d)
          log->warn("sharding", "{}: shard {}: compacting remembered entities: {}", type, shard,
                    d.error().message());
      });
  } else {
    ++r.changes_since_set;
  }
  ++r.next_seq;
  write_remembered(self, m.shard);
}

/// Starts remembered entities of active shards, at most
/// remembered_starts_per_second.
void start_remembered(self_ptr self) {
  auto& st = *self->state;
  auto budget = std::max<std::size_t>(1, st.spec->settings.remembered_starts_per_second / 10);
  for (auto& [s, r] : st.remembered) {
    auto ls = st.core->local_shards().find(s);
    if (ls == st.core->local_shards().end() || ls->second.state != region_core::shard_state::active)
      continue;
    while (budget > 0 && !r.to_start.empty()) {
      auto id = std::move(r.to_start.front());
      r.to_start.pop_front();
      if (auto e = st.entities.find(id); e != st.entities.end() && e->second.actor)
        continue;
      --budget;
      if (auto slot = slot_for(self, id, s); !slot)
        st.ctx->log().warn("sharding", "{}: remembered entity '{}' not started: {}",
                           st.spec->name, id, slot.error().message());
    }
  }
}

void answer_leave_waiters(self_ptr self) {
  auto& st = *self->state;
  if (st.leave_waiters.empty() || !st.core->local_shards().empty())
    return;
  for (auto& rp : st.leave_waiters)
    rp.deliver(true);
  st.leave_waiters.clear();
}

void apply(self_ptr self) {
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
  st.ctx->metrics()
    .gauge("troupe_sharding_buffered", {{"type", st.spec->name}},
           "Messages a region holds while shard homes are unknown or moving.")
    .set(static_cast<double>(st.core->buffered()));
  st.ctx->metrics()
    .gauge("troupe_sharding_shards", {{"type", st.spec->name}}, "Shards this region hosts.")
    .set(static_cast<double>(st.core->local_shards().size()));
  st.ctx->metrics()
    .gauge("troupe_sharding_entities", {{"type", st.spec->name}},
           "Entities running in this region.")
    .set(static_cast<double>(st.entities.size()));
  answer_leave_waiters(self);
}

void entity_down(self_ptr self, const caf::down_msg& dm) {
  auto& st = *self->state;
  auto it = st.by_actor.find(dm.source.id());
  if (it == st.by_actor.end())
    return;
  auto* found = it->second;
  st.by_actor.erase(it);
  if (found->actor.address() != dm.source)
    return;  // not the incarnation that slot runs now
  auto id = *found->id;
  if (dm.reason && from_caf_error(dm.reason).code() == errc::fenced) {
    // A newer owner of the shard raised its fence: this node's view is stale, and
    // the coordinator will tell it so; until then, nothing this entity did was stored.
    st.ctx->log().warn("sharding", "{}: entity '{}' was fenced: {}", st.spec->name, id,
                       from_caf_error(dm.reason).message());
    st.ctx->metrics()
      .counter("troupe_sharding_fenced_total", {{"type", st.spec->name}},
               "Entities stopped because a newer owner of their shard fenced the journal.")
      .inc();
  }
  auto slot_it = st.entities.find(id);
  if (slot_it == st.entities.end())
    return;
  auto& members = st.by_shard[slot_it->second.shard];
  st.lru.erase(&slot_it->second);
  members.erase(&slot_it->second);
  auto slot = std::move(slot_it->second);
  slot.id = nullptr;  // the key goes with the map entry below
  close_route(slot);
  if (slot.stopping)
    --st.stopping_entities;
  // What it was asked and never answered gets the error that ended it (CAF
  // answers pending requests to a dead actor too; whichever comes first wins).
  if (slot.asked)
    for (auto& [token, p] : *slot.asked)
      complete(p, error{errc::actor_down, fmt::format("entity '{}|{}' stopped: {}",
                                                      st.spec->name, id,
                                                      caf::to_string(dm.reason))});
  slot.asked.reset();
  st.entities.erase(slot_it);
  if (!slot.waiting.empty()) {
    // Messages that waited for this incarnation to end: route them again, ahead
    // of what arrives later (the shard may have moved meanwhile).
    std::vector<message_token> tokens(slot.waiting.begin(), slot.waiting.end());
    if (st.stopping.count(slot.shard) == 0 && st.core->local_shards().count(slot.shard) > 0) {
      for (auto t : tokens) {
        auto node = st.tokens.extract(t);
        if (!node.empty())
          deliver_local(self, slot.shard, std::move(node.mapped()));
      }
    } else {
      st.core->requeue_front(now(), slot.shard, tokens, st.fx);
    }
  }
  if (members.empty() && st.stopping.erase(slot.shard) > 0) {
    st.by_shard.erase(slot.shard);
    st.core->shard_stopped_locally(now(), slot.shard, st.fx);
  }
  apply(self);
}

void expire_and_passivate(self_ptr self) {
  auto& st = *self->state;
  auto t = clock::now();
  for (auto it = st.tokens.begin(); it != st.tokens.end();) {
    if (it->second.deadline <= t) {
      auto p = std::move(it->second);
      it = st.tokens.erase(it);
      st.ctx->metrics()
        .counter("troupe_sharding_expired_total", {{"type", st.spec->name}},
                 "Messages whose deadline passed while a region held them.")
        .inc();
      complete(p, error{errc::timeout, fmt::format("entity '{}|{}': its shard had no home in time",
                                                   st.spec->name, p.id)});
    } else {
      ++it;
    }
  }
  auto idle = st.spec->settings.passivate_idle_after;
  if (idle.count() <= 0)
    return;
  for (auto& [id, slot] : st.entities)
    if (!slot.stopping && !slot.has_asked() && slot.waiting.empty()
        && t - used_at(slot) >= idle) {
      count_passivation(self, "idle");
      remember(self, slot.shard, id, false);
      stop_entity(self, id, slot);
    }
}

region_report make_report(self_ptr self) {
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

void cluster_changed(self_ptr self) {
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

/// A command another node's region forwarded: answered to it (batched) once the
/// entity answers.
pending from_forwarded(self_ptr self, const node_identity& origin, forwarded_command& c,
                       command_ptr cmd) {
  auto& st = *self->state;
  pending p;
  p.id = std::move(c.entity_id);
  p.cmd = cmd;
  p.hops = c.hops;
  p.deadline = clock::now() + std::chrono::milliseconds{std::max<std::int64_t>(c.timeout_ms, 0)};
  // The state is held weakly: the region's exit completes what it holds after
  // CAF destroyed the actor's own state member (see the exit functor).
  p.done = [self, weak = std::weak_ptr<region_state>{self->state}, origin, request = c.request,
            cmd, proto = st.spec->protocol](expected<reply_box> r) {
    auto state = weak.lock();
    if (!state || state->stopped)
      return;
    command_answer a{request, {}, {}};
    if (!r) {
      a.failure = std::move(r).error();
    } else if (auto bytes = proto->encode_reply(*cmd, *r); !bytes) {
      a.failure = std::move(bytes).error();
    } else {
      a.reply = std::move(*bytes);
    }
    schedule_flush(self, state->forwarded.answer(origin, a));
  };
  return p;
}

/// A batch of commands from another node's region: each is routed like a local
/// one; one that does not decode is answered with the error at once.
void receive_commands(self_ptr self, const remote::packet& pk) {
  auto& st = *self->state;
  auto batch = decode_commands(pk.payload);
  if (!batch) {
    st.ctx->log().warn("sharding", "{}: dropped commands from {}: {}", st.spec->name,
                       pk.from.to_string(), batch.error().message());
    return;
  }
  for (auto& c : *batch) {
    auto cmd = st.spec->protocol->decode_command(c.command.manifest, c.command.version,
                                                 c.command.payload);
    if (!cmd) {
      schedule_flush(self, st.forwarded.answer(pk.from, command_answer{c.request, cmd.error(), {}}));
      continue;
    }
    route(self, from_forwarded(self, pk.from, c, std::move(*cmd)));
  }
}

void receive_answers(self_ptr self, const remote::packet& pk) {
  auto& st = *self->state;
  auto batch = decode_answers(pk.payload);
  if (!batch) {
    st.ctx->log().warn("sharding", "{}: dropped answers from {}: {}", st.spec->name,
                       pk.from.to_string(), batch.error().message());
    return;
  }
  st.forwarded.answered(*batch);
}

/// A peer's connection was lost (or it was quarantined): what this region
/// forwarded to it fails now (the asker may retry), as a transport request would.
void peer_changed(self_ptr self, const remote::peer_event& e) {
  using kind = remote::peer_event::kind;
  if (e.what != kind::lost && e.what != kind::quarantined)
    return;
  self->state->forwarded.fail_region(
    e.peer, error{errc::node_unreachable,
                  fmt::format("the connection to {} was lost: {}", e.peer.to_string(), e.reason)});
}

} // namespace

namespace {

caf::behavior region_actor(caf::stateful_actor<std::shared_ptr<region_state>>* self,
                           std::shared_ptr<const entity_type_spec> spec) {
  // Shared with the exit functor below: CAF destroys an actor's state before
  // its attached functors run.
  self->state = std::make_shared<region_state>();
  auto& st = *self->state;
  st.ctx = &node_of(self);
  st.spec = spec;
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
      st.forwarded.expire(clock::now(), st.spec->name);
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
