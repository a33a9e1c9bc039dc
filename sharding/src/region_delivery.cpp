// The shard region's delivery: carries a command to where region_core routed it.
//
// A command for a local shard asks its entity (started on demand), whose answer,
// or bounce if it ended first, completes the command's pending entry; a command
// for another node's region is queued in remote_commands, sent in a batch per
// node once the worker's burst is over, and completed by that region's answer.
// Batches of commands from other nodes' regions are routed like local ones and
// answered in batches.
#include "region_state.hpp"

#include "troupe/actors/detail/after_queued_work.hpp"
#include "troupe/persistence/detail/entity_routing.hpp"

#include <caf/all.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <chrono>

namespace troupe::sharding::detail {

namespace {

/// The answer to a command the region sent an entity; ignored if the command was
/// routed again meanwhile (the entity handed it back).
void answered(region_self self, const std::string& id, message_token token,
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
void offer_route(region_self self, entity_slot& slot, direct_cache& cache, std::uint64_t seq) {
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
void bounced(region_self self, const std::string& id, message_token token) {
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

} // namespace

/// Asks the local entity; the token's entry is consumed.
void deliver_local(region_self self, shard_id shard, pending p) {
  auto& st = *self->state;
  auto t = slot_clock::now();
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
  auto p_deadline = p.deadline;
  auto timeout = std::chrono::duration_cast<duration>(p_deadline - t);
  auto cmd = p.cmd;
  auto id = p.id;
  auto cache = std::move(p.cache);
  auto seq = p.seq;
  slot.asked_map().emplace(token, std::move(p));
  persistence::detail::ask_entity(
    self, slot.actor, p_deadline, timeout, std::move(cmd),
    [self, id, token](expected<reply_box> r) { answered(self, id, token, std::move(r)); },
    [self, id, token](command_ptr, persistence::detail::ask_continuation) {
      bounced(self, id, token);
    });
  if (cache)
    offer_route(self, slot, *cache, seq);
}

/// Sends what remote_commands queued (flush_forwarded_atom).
void flush_forwarded(region_self self) {
  auto& st = *self->state;
  for (auto& p : st.forwarded.take()) {
    auto sent = st.transport ? st.transport->send_packet(p.to, st.channel, p.manifest, 1, p.bytes)
                             : expected<void>{error{errc::shutting_down, "no transport"}};
    if (!sent) {
      st.forwarded.not_sent(p, sent.error());  // answers not sent: the origin times out
      continue;
    }
    if (p.requests.empty())
      continue;
    st.forwarded_batches->inc();
    st.forwarded_commands->inc(p.requests.size());
  }
}

namespace {

/// `needed`: the first entry since the last flush. A full packet goes at once;
/// the rest wait for the end of the burst: the flush message comes once the
/// worker ran what it has queued (the entities just asked answer first).
void schedule_flush(region_self self, bool needed) {
  if (self->state->forwarded.full())
    flush_forwarded(self);
  else if (needed)
    troupe::detail::send_after_queued_work(self, caf::make_message(flush_forwarded_atom::value));
}

/// Forwards to another node's region through the transport.
void deliver_remote(region_self self, const node_identity& region, pending p) {
  auto& st = *self->state;
  auto t = slot_clock::now();
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

/// A command another node's region forwarded: answered to it (batched) once the
/// entity answers.
pending from_forwarded(region_self self, const node_identity& origin, forwarded_command& c,
                       command_ptr cmd) {
  auto& st = *self->state;
  pending p;
  p.id = std::move(c.entity_id);
  p.cmd = cmd;
  p.hops = c.hops;
  p.deadline = slot_clock::now() + std::chrono::milliseconds{std::max<std::int64_t>(c.timeout_ms, 0)};
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

} // namespace

void deliver(region_self self, const routing& where, pending p) {
  if (where.what == routing::kind::local)
    deliver_local(self, where.shard, std::move(p));
  else
    deliver_remote(self, where.region, std::move(p));
}

void route(region_self self, pending p) {
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

/// A batch of commands from another node's region: each is routed like a local
/// one; one that does not decode is answered with the error at once.
void receive_commands(region_self self, const remote::packet& pk) {
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

void receive_answers(region_self self, const remote::packet& pk) {
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
void peer_changed(region_self self, const remote::peer_event& e) {
  using kind = remote::peer_event::kind;
  if (e.what != kind::lost && e.what != kind::quarantined)
    return;
  self->state->forwarded.fail_region(
    e.peer, error{errc::node_unreachable,
                  fmt::format("the connection to {} was lost: {}", e.peer.to_string(), e.reason)});
}

} // namespace troupe::sharding::detail
