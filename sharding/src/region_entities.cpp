// The shard region's entities: their lifecycle on this node.
//
// An entity is started on demand under its shard's fence, kept within
// max_active_entities (least recently used first) and passivated when idle. It is
// stopped with stop_and_hand_back, a bounded number of stop requests in flight;
// messages for its id wait until its actor is gone, and what it held unanswered
// is routed again (region_actor.cpp's overview says why). When its actor ends,
// the shard it was the last of is reported stopped. The tick that passivates idle
// entities also fails the messages the region held past their deadline.
#include "region_state.hpp"

#include "troupe/actors/ask.hpp"
#include "troupe/actors/caf_error.hpp"
#include "troupe/persistence/detail/entity_routing.hpp"
#include "troupe/persistence/owned_entity.hpp"

#include <caf/all.hpp>
#include <fmt/format.h>

#include <vector>

namespace troupe::sharding::detail {

namespace {

void count_passivation(region_self self, std::string_view reason) {
  auto& st = *self->state;
  st.ctx->metrics()
    .counter("troupe_sharding_passivations_total", {{"type", st.spec->name}, {"reason", std::string{reason}}},
             "Entities stopped after being idle (reason idle) or to stay within "
             "max_active_entities (reason limit).")
    .inc();
}

/// Passivates least recently used idle entities while more than
/// max_active_entities run (the newest is never chosen: it is about to be asked).
void enforce_entity_limit(region_self self) {
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

} // namespace

/// The entity `id`'s slot, its incarnation started (under the shard's fence) if
/// it has none; fails like spawn_owned_entity.
expected<entity_slot*> slot_for(region_self self, const std::string& id, shard_id shard) {
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

namespace {

/// Commands the stopped entity `id` never answered wait for its next incarnation,
/// ahead of those that arrived while it stopped: first those the region sent it,
/// then those refs sent it directly (`held`, as it handed them back; the region's
/// own are among them and skipped: they are in `asked`).
void requeue_unanswered(region_self self, const std::string& id,
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
    pending p{id, std::move(cmd), slot_clock::now() + held_command_deadline, 0,
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

/// Stop requests a region keeps in flight at once. CAF 0.17 keeps an actor's
/// pending responses in a flat vector (linear lookup and erase per response), so
/// 100,000 stop requests at once (a node with many entities shutting down) cost
/// quadratic time; queued beyond this, each response costs at most this much.
constexpr std::size_t max_stops_in_flight = 256;

void send_stop(region_self self, const std::string& id, entity_slot& slot);

/// Sends the queued stop requests while fewer than max_stops_in_flight are out
/// (skipping entities that ended or were replaced meanwhile).
void send_queued_stops(region_self self) {
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

} // namespace

/// Stops an entity the way a hand-off needs: its persist in flight finishes and
/// is answered, what it holds unanswered is routed again once it is gone.
void stop_entity(region_self self, const std::string& id, entity_slot& slot) {
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

namespace {

void send_stop(region_self self, const std::string& id, entity_slot& slot) {
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

} // namespace

void entity_down(region_self self, const caf::down_msg& dm) {
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

void expire_and_passivate(region_self self) {
  auto& st = *self->state;
  auto t = slot_clock::now();
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

} // namespace troupe::sharding::detail
