// Receiving (I/O thread and dispatcher actors): arriving frames are decoded for
// their registered actors, responses matched with their requests, packets handed
// to their channel's subscribers; closed connections fail what was pending on them.
#include "remote/transport_state.hpp"

#include <caf/make_actor.hpp>

#include <fmt/core.h>

namespace troupe::remote::detail {

namespace {

errc checked_errc(std::uint8_t code) {
  return code == 0 || code > static_cast<std::uint8_t>(last_errc) ? errc::internal
                                                                   : static_cast<errc>(code);
}

} // namespace

// -- receiving (I/O thread) -------------------------------------------------------------

caf::actor transport_state::find_name(std::string_view name) const {
  std::shared_lock<std::shared_mutex> guard{names_mtx};
  auto i = names.find(name);
  return i == names.end() ? caf::actor{} : i->second;
}

const caf::actor* name_cache::find(const transport_state& st, std::string_view name) {
  auto generation = st.names_generation.load(std::memory_order_acquire);
  if (generation != generation_) {
    cache_.clear();
    last_ = nullptr;
    generation_ = generation;
  }
  if (last_ != nullptr && name == last_name_)
    return last_;
  auto i = cache_.find(name);
  if (i == cache_.end()) {
    auto found = st.find_name(name);
    if (!found)
      return nullptr;
    i = cache_.emplace(std::string{name}, std::move(found)).first;
  }
  last_name_ = i->first;
  last_ = &i->second;
  return last_;
}

expected<caf::mailbox_element_ptr>
transport_state::decode_element(const wire::element_view* els, std::size_t count,
                                const node_identity& from, caf::strong_actor_ptr sender,
                                caf::message_id mid) const {
  auto adapter_for = [&](const wire::element_view& e) -> expected<const message_adapter*> {
    auto a = types->find(e.manifest);
    if (a == nullptr)
      return error{errc::unknown_manifest,
                   fmt::format("a message from {} holds manifest '{}', which this node has not "
                               "registered",
                               from.to_string(), e.manifest)};
    return a;
  };
  if (count == 0)  // an empty message, e.g. the reply of a void handler
    return caf::make_mailbox_element(std::move(sender), mid, {}, caf::message{});
  if (count == 1) {
    auto a = adapter_for(els[0]);
    if (!a)
      return std::move(a).error();
    return (*a)->decode_element(**a, *codec, els[0].version, els[0].payload, std::move(sender),
                                mid);
  }
  caf::message_builder mb;
  for (std::size_t i = 0; i < count; ++i) {
    auto a = adapter_for(els[i]);
    if (!a)
      return std::move(a).error();
    if (auto r = (*a)->decode(**a, *codec, els[i].version, els[i].payload, mb); !r)
      return std::move(r).error();
  }
  return caf::make_mailbox_element(std::move(sender), mid, {}, mb.move_to_message());
}

/// How many frames of one read the I/O thread delivers itself.
constexpr std::size_t inline_frames = 4;
/// Batches (reads, at most 256 KiB each) a connection's dispatcher may hold
/// before the connection stops reading.
constexpr int max_batches_in_flight = 4;

struct dispatcher_state {
  name_cache names;
  std::vector<delivery> ready;  // reused between batches
};

caf::behavior inbound_dispatcher(caf::stateful_actor<dispatcher_state>* self,
                                 std::weak_ptr<transport_state> weak, inbound_route route,
                                 std::shared_ptr<std::atomic<int>> in_flight) {
  return {
    [=](const inbound_batch& b) {
      if (auto st = weak.lock()) {
        // Decode the whole batch first, then enqueue it in one burst: a receiver
        // then takes many messages per activation instead of being scheduled
        // (or stolen by another worker) once per message.
        auto& ready = self->state.ready;
        wire::for_each_frame(*b.frames, [&](wire::byte_span raw) {
          if (auto d = st->decode_frame(raw, route, self->state.names))
            ready.push_back(std::move(*d));
        });
        for (auto& d : ready)
          d.dest->enqueue(std::move(d.element), self->context());
        ready.clear();
        st->give_back(b.frames);
      }
      if (in_flight->fetch_sub(1, std::memory_order_acq_rel) == max_batches_in_flight)
        if (auto st = weak.lock())
          st->eng->resume_reading(route.conn);
    },
    [=](const inbound_done&) { self->quit(); },
  };
}

std::optional<delivery> transport_state::decode_frame(wire::byte_span raw,
                                                      const inbound_route& route,
                                                      name_cache& names) {
  wire::frame_view f{static_cast<wire::frame_type>(raw[wire::length_size]),
                     raw.subspan(wire::header_size)};
  wire::message_view m;
  if (!wire::decode_message(f, m))
    return std::nullopt;  // validated on arrival; cannot happen
  bool is_request = m.correlation != 0;
  auto fail = [&](drop_reason why, const error& err) {
    if (is_request) {
      auto& buf = scratch();
      wire::put_error_response(buf, m.correlation, static_cast<std::uint8_t>(err.code()),
                               err.message());
      if (auto r = route.replies->send(buf); !r)
        dropped(drop_reason::reply_failed, r.error());
    } else {
      dropped(why, err);
    }
    return std::nullopt;
  };
  if (m.incarnation != 0 && m.incarnation != self.incarnation)
    return fail(drop_reason::wrong_incarnation,
                error{errc::node_unreachable,
                      fmt::format("a message for '{}' on {} (from {}) reached incarnation {:016x} "
                                  "instead: the one it was meant for is gone",
                                  m.target,
                                  node_identity{self.address, m.incarnation}.to_string(),
                                  route.peer.to_string(), self.incarnation)});
  auto* dest = names.find(*this, m.target);
  if (dest == nullptr)
    return fail(drop_reason::unknown_target,
                error{errc::not_found,
                      fmt::format("no actor is registered as '{}' on {} (message from {})",
                                  m.target, self.address.to_string(), route.peer.to_string())});
  auto element = decode_element(m.elements.data(), m.count, route.peer,
                                is_request ? route.requester : nullptr,
                                is_request ? caf::make_message_id(m.correlation)
                                           : caf::make_message_id());
  if (!element)
    return fail(drop_reason::decode_failed, element.error());
  return delivery{*dest, std::move(*element)};
}

void transport_state::on_response(const inbound_frame& f) {
  wire::response_view r;
  if (!wire::decode_response(f.frame, r))
    return;  // validated by the caller
  pending_request entry;
  {
    std::lock_guard<std::mutex> guard{pending_mtx};
    auto i = pending.find(r.correlation);
    // A response must come on the connection its request went out on.
    if (i == pending.end() || i->second.conn != f.conn)
      return;  // its requester was already failed or purged
    entry = std::move(i->second);
    pending.erase(i);
    pending_gauge->set(static_cast<double>(pending.size()));
  }
  auto mid = entry.mid.response_id();
  auto failed = [&](const error& e) {
    return caf::make_mailbox_element(nullptr, mid, {}, to_caf_error(e));
  };
  caf::mailbox_element_ptr element;
  if (r.is_error) {
    element = failed(error{checked_errc(r.error_code), std::string{r.error_text}});
  } else if (auto decoded = decode_element(r.elements.data(), r.count, f.peer, nullptr, mid)) {
    element = std::move(*decoded);
  } else {
    element = failed(decoded.error());
  }
  entry.requester->enqueue(std::move(element), nullptr);
}

expected<void> transport_state::on_frame(const inbound_frame& f) {
  if (f.frame.type == wire::frame_type::response) {
    wire::response_view r;
    if (auto ok = wire::decode_response(f.frame, r); !ok)
      return ok;
    on_response(f);
    return {};
  }
  if (f.frame.type == wire::frame_type::packet)
    return on_packet(f);
  // Check the structure now: a malformed frame closes the connection before
  // anything behind it is delivered.
  wire::message_view m;
  if (auto ok = wire::decode_message(f.frame, m); !ok)
    return ok;
  if (last_inbound == nullptr || last_inbound_conn != f.conn) {
    last_inbound = &inbound[f.conn];  // node-based map: the address is stable
    last_inbound_conn = f.conn;
  }
  auto& in = *last_inbound;
  if (!in.route.replies) {
    in.route.conn = f.conn;
    in.route.peer = f.peer;
    in.route.replies = *f.replies;
    caf::actor_config cfg;
    in.route.requester = caf::make_actor<reply_proxy, caf::strong_actor_ptr>(
      sys.next_actor_id(), sys.node(), &sys, cfg, shared_from_this(), *f.replies);
  }
  if (!in.pending)
    in.pending = take_buffer();
  in.pending->insert(in.pending->end(), f.raw.begin(), f.raw.end());
  ++in.pending_count;
  return {};
}

expected<void> transport_state::on_packet(const inbound_frame& f) {
  wire::packet_view pv;
  if (auto ok = wire::decode_packet(f.frame, pv); !ok)
    return ok;
  if (pv.incarnation != 0 && pv.incarnation != self.incarnation) {
    dropped(drop_reason::wrong_incarnation,
            error{errc::node_unreachable,
                  fmt::format("a packet for channel '{}' of {} (from {}) reached incarnation "
                              "{:016x} instead",
                              pv.channel, node_identity{self.address, pv.incarnation}.to_string(),
                              f.peer.to_string(), self.incarnation)});
    return {};
  }
  packet p{f.peer, std::string{pv.channel}, std::string{pv.element.manifest}, pv.element.version,
           std::vector<std::uint8_t>(pv.element.payload.begin(), pv.element.payload.end())};
  deliver_packet(p);
  return {};
}

void transport_state::deliver_packet(const packet& p) {
  const subscriber_list<packet>* list = nullptr;
  {
    std::lock_guard<std::mutex> guard{subs_mtx};
    // Lists are never erased (only emptied), so the pointer stays valid.
    if (auto i = packets.find(p.channel); i != packets.end() && !i->second.empty())
      list = &i->second;
  }
  if (list == nullptr) {
    // Debug, not warn: packets carry loss-tolerant protocols whose senders send
    // again, and a channel is often unserved for a while on purpose. A region
    // starting after the shard coordinator said hello to every member, or asking a
    // coordinator that is still starting, is no fault. The metric still counts it.
    dropped(drop_reason::unknown_target,
            error{errc::not_found,
                  fmt::format("no subscriber for packets on channel '{}' on {} (a '{}' from {})",
                              p.channel, self.address.to_string(), p.manifest,
                              p.from.to_string())},
            log_level::debug);
    return;
  }
  deliver(*list, p);
}

std::shared_ptr<wire::bytes> transport_state::take_buffer() {
  std::lock_guard<std::mutex> guard{pool_mtx};
  if (pool.empty())
    return std::make_shared<wire::bytes>();
  auto buf = std::move(pool.back());
  pool.pop_back();
  return buf;
}

void transport_state::give_back(std::shared_ptr<wire::bytes> buf) {
  constexpr std::size_t max_pooled = 16;
  buf->clear();
  std::lock_guard<std::mutex> guard{pool_mtx};
  if (pool.size() < max_pooled)
    pool.push_back(std::move(buf));
}

bool transport_state::on_read_done(conn_id conn) {
  auto i = inbound.find(conn);
  if (i == inbound.end())
    return true;
  flush_inbound(i->second);
  // With enough batches waiting, stop reading: TCP flow control then pushes
  // back to the sender's queue instead of this process buffering without bound.
  return i->second.in_flight->load(std::memory_order_acquire) < max_batches_in_flight;
}

void transport_state::flush_inbound(inbound_conn& in) {
  if (in.pending_count == 0)
    return;
  if (in.pending_count <= inline_frames && in.in_flight->load(std::memory_order_acquire) == 0) {
    wire::for_each_frame(*in.pending, [&](wire::byte_span raw) {
      if (auto d = decode_frame(raw, in.route, io_names))
        d->dest->enqueue(std::move(d->element), nullptr);
    });
    in.pending->clear();
    in.pending_count = 0;
    return;
  }
  if (!in.dispatcher) {
    in.dispatcher = spawn_actor(sys, "transport/inbound", inbound_dispatcher,
                                weak_from_this(), in.route, in.in_flight);
    {
      std::lock_guard<std::mutex> guard{dispatchers_mtx};
      ++dispatchers_alive;
    }
    in.dispatcher->attach_functor([w = weak_from_this()] {
      if (auto st = w.lock()) {
        std::lock_guard<std::mutex> guard{st->dispatchers_mtx};
        --st->dispatchers_alive;
        st->dispatchers_cv.notify_all();
      }
    });
  }
  in.in_flight->fetch_add(1, std::memory_order_acq_rel);
  caf::anon_send(in.dispatcher, inbound_batch{std::move(in.pending)});
  in.pending.reset();
  in.pending_count = 0;
}

void transport_state::on_closed(conn_id conn, const error& reason) {
  if (auto i = inbound.find(conn); i != inbound.end()) {
    // Frames that arrived before the close are delivered.
    flush_inbound(i->second);
    if (i->second.dispatcher)
      caf::anon_send(i->second.dispatcher, inbound_done{});
    if (last_inbound == &i->second)
      last_inbound = nullptr;
    inbound.erase(i);
  }
  std::vector<pending_request> failed;
  {
    std::lock_guard<std::mutex> guard{pending_mtx};
    for (auto i = pending.begin(); i != pending.end();) {
      if (i->second.conn == conn) {
        failed.push_back(std::move(i->second));
        i = pending.erase(i);
      } else {
        ++i;
      }
    }
    pending_gauge->set(static_cast<double>(pending.size()));
  }
  if (failed.empty())
    return;
  failed_requests->inc(failed.size());
  auto code = reason.code() == errc::shutting_down ? errc::shutting_down : errc::node_unreachable;
  error why{code, reason.message()};
  for (auto& r : failed)
    reply_error(r.requester, r.mid, why, nullptr);
}

void transport_state::on_event(const peer_event& e) {
  deliver(events, e);
}

void transport_state::on_heartbeat(const heartbeat_sample& sample) {
  if (heartbeat_subscribers.load(std::memory_order_acquire))
    deliver(heartbeats, sample);
}

void transport_state::stop() {
  if (stopped.exchange(true))
    return;
  rules.reset();
  eng->stop(stop_timeout);
  // The I/O thread is joined: what it owned is ours now. Dropping the handles
  // breaks the cycles between this state and its proxies.
  inbound.clear();
  last_inbound = nullptr;
  {
    // Dispatchers finish the batches they hold; the node's shutdown must not
    // find them running.
    std::unique_lock<std::mutex> guard{dispatchers_mtx};
    dispatchers_cv.wait_for(guard, stop_timeout, [&] { return dispatchers_alive == 0; });
  }
  decltype(proxies) doomed;
  {
    std::lock_guard<std::mutex> guard{proxies_mtx};
    doomed.swap(proxies);
  }
  for (auto& [key, h] : doomed) {
    // Monitors of remote handles learn that they are gone for good.
    auto ptr = caf::actor_cast<caf::abstract_actor*>(h);
    static_cast<caf::monitorable_actor*>(ptr)->cleanup(caf::exit_reason::user_shutdown, nullptr);
  }
  {
    std::unique_lock<std::shared_mutex> guard{names_mtx};
    names.clear();
    names_changed();
  }
  io_names = name_cache{};
  {
    std::lock_guard<std::mutex> guard{subs_mtx};
    events = {};
    heartbeats = {};
    heartbeat_subscribers = false;
    for (auto& [channel, list] : packets)
      list = {};
  }
  std::lock_guard<std::mutex> guard{pending_mtx};
  for (auto& [id, r] : pending)
    reply_error(r.requester, r.mid, error{errc::shutting_down, "the transport stopped"}, nullptr);
  pending.clear();
  pending_gauge->set(0);
}

} // namespace troupe::remote::detail
