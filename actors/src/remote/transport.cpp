// The CAF side of the transport: proxies that turn CAF sends into frames, the
// dispatch of arriving frames to registered actors, request/response correlation,
// and subscribers. The network side is engine.cpp.
#include "troupe/actors/remote/transport.hpp"

#include "remote/engine.hpp"
#include "troupe/actors/caf_error.hpp"
#include "troupe/actors/node.hpp"
#include "troupe/actors/remote/message_types.hpp"

#include <caf/actor_cast.hpp>
#include <caf/actor_system.hpp>
#include <caf/mailbox_element.hpp>
#include <caf/make_actor.hpp>
#include <caf/monitorable_actor.hpp>
#include <caf/send.hpp>
#include <caf/type_nr.hpp>

#include <cxxabi.h>
#include <fmt/core.h>

#include <atomic>
#include <condition_variable>
#include <map>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <unordered_map>

namespace troupe::remote {

namespace detail {

namespace {

using clock_type = std::chrono::steady_clock;

/// Scratch buffers above this size are released after use, not kept per thread.
constexpr std::size_t keep_scratch_limit = 1 << 20;
/// Every this many requests, pending entries older than the retention are purged.
constexpr std::uint64_t purge_every = 1024;

struct string_hash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept {
    return std::hash<std::string_view>{}(s);
  }
};

std::string type_name(const caf::rtti_pair& t) {
  if (t.first != 0)
    return caf::numbered_type_names[t.first - 1];
  if (t.second == nullptr)
    return "?";
  int status = 0;
  char* demangled = abi::__cxa_demangle(t.second->name(), nullptr, nullptr, &status);
  std::string result = status == 0 && demangled ? demangled : t.second->name();
  std::free(demangled);
  return result;
}

/// A thread's frame-encoding buffer.
wire::bytes& scratch() {
  thread_local wire::bytes buf;
  if (buf.capacity() > keep_scratch_limit)
    wire::bytes{}.swap(buf);
  buf.clear();
  return buf;
}

errc checked_errc(std::uint8_t code) {
  return code == 0 || code > static_cast<std::uint8_t>(errc::internal) ? errc::internal
                                                                        : static_cast<errc>(code);
}

/// Delivers `err` as the response to the request `mid` of `to`.
void reply_error(const caf::strong_actor_ptr& to, caf::message_id mid, const error& err,
                 caf::execution_unit* eu) {
  if (to && mid.is_request())
    to->enqueue(nullptr, mid.response_id(), caf::make_message(to_caf_error(err)), eu);
}

enum class drop_reason { overloaded, unreachable, oversize, encode_failed, unknown_target,
                         decode_failed, shutting_down, reply_failed, count };

std::string_view to_string(drop_reason r) {
  switch (r) {
    case drop_reason::overloaded: return "overloaded";
    case drop_reason::unreachable: return "node_unreachable";
    case drop_reason::oversize: return "oversize";
    case drop_reason::encode_failed: return "encode_failed";
    case drop_reason::unknown_target: return "unknown_target";
    case drop_reason::decode_failed: return "decode_failed";
    case drop_reason::shutting_down: return "shutting_down";
    case drop_reason::reply_failed: return "reply_failed";
    case drop_reason::count: break;
  }
  return "?";
}

drop_reason drop_reason_of(const error& e) {
  switch (e.code()) {
    case errc::overloaded: return drop_reason::overloaded;
    case errc::oversize: return drop_reason::oversize;
    case errc::shutting_down: return drop_reason::shutting_down;
    case errc::node_unreachable: return drop_reason::unreachable;
    default: return drop_reason::encode_failed;
  }
}

} // namespace

struct pending_request {
  caf::strong_actor_ptr requester;
  caf::message_id mid;
  conn_id conn = 0;
  clock_type::time_point since;
};

struct transport_state;

/// Registered actors by name for one thread (the I/O thread, or one dispatcher):
/// a local cache that any change of the registry invalidates, so arriving
/// messages take no shared lock.
class name_cache {
public:
  /// The actor registered as `name`, or nullptr; valid until the next call.
  const caf::actor* find(const transport_state& st, std::string_view name);

private:
  std::uint64_t generation_ = ~std::uint64_t{0};
  std::unordered_map<std::string, caf::actor, string_hash, std::equal_to<>> cache_;
  // The last hit: a stream of messages to one actor skips the hashing.
  std::string_view last_name_;  // views the key inside cache_
  const caf::actor* last_ = nullptr;
};

/// Where the messages and requests of one inbound connection go.
struct inbound_route {
  conn_id conn = 0;
  node_identity peer;
  std::shared_ptr<reply_channel> replies;
  caf::strong_actor_ptr requester;  ///< the sender of its requests (a reply_proxy)
};

/// Frames of one inbound connection, handed to its dispatcher actor.
struct inbound_batch {
  std::shared_ptr<wire::bytes> frames;  ///< complete frames, back to back
};

/// Ends a dispatcher after the batches before it.
struct inbound_done {};

/// A decoded message and the actor it goes to.
struct delivery {
  caf::actor dest;
  caf::mailbox_element_ptr element;
};

/// Calls f(frame) for each frame of `frames` (complete frames, back to back).
template <class F>
void for_each_frame(wire::byte_span frames, F f) {
  while (!frames.empty()) {
    auto len = wire::length_size
               + ((std::size_t{frames[0]} << 24) | (std::size_t{frames[1]} << 16)
                  | (std::size_t{frames[2]} << 8) | frames[3]);
    f(frames.first(len));
    frames = frames.subspan(len);
  }
}

} // namespace detail
} // namespace troupe::remote

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::remote::detail::inbound_batch)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::remote::detail::inbound_done)

namespace troupe::remote {
namespace detail {

/// The I/O thread's state of one inbound connection.
struct inbound_conn {
  inbound_route route;
  std::shared_ptr<wire::bytes> pending;  ///< frames of the current read
  std::size_t pending_count = 0;
  /// Batches handed to the dispatcher and not yet delivered; while any are,
  /// later frames go the same way so that they stay behind them.
  std::shared_ptr<std::atomic<int>> in_flight = std::make_shared<std::atomic<int>>(0);
  caf::actor dispatcher;
};

class remote_proxy;
class reply_proxy;

struct transport_state final : engine_sink, std::enable_shared_from_this<transport_state> {
  transport_state(node& n, duration stop_timeout, duration retention)
    : sys(n.system()),
      log(n.log()),
      codec(n.context().shared_codec()),
      types(message_types_of(n.context())),
      stop_timeout(stop_timeout),
      retention(retention) {
    for (std::size_t i = 0; i < drops.size(); ++i)
      drops[i] = &n.metrics().counter("troupe_transport_dropped_messages_total",
                                      {{"reason", std::string{to_string(drop_reason(i))}}},
                                      "Messages dropped instead of delivered, by reason.");
    failed_requests = &n.metrics().counter(
      "troupe_transport_failed_requests_total", {},
      "Requests failed because their connection closed before the response.");
    pending_gauge = &n.metrics().gauge(
      "troupe_transport_pending_requests", {},
      "Requests sent and neither answered nor failed yet (bounded by "
      "transport.request-retention).");
  }

  // -- sending (any thread) --------------------------------------------------------

  /// Encodes `content` into a message (correlation 0) or request frame.
  expected<void> encode_message(wire::bytes& out, std::uint64_t correlation,
                                std::string_view target, const caf::type_erased_tuple& content,
                                const node_address& to) const;
  /// Appends the values of `content` as elements; the error says which value
  /// failed and why (the caller adds where the message was going).
  expected<void> encode_values(wire::bytes& out, const caf::type_erased_tuple& content) const;

  /// Sends one CAF message to `target` on `p`: the proxy path (errors go to the
  /// requester or are counted) and the direct path (errors are returned).
  expected<void> forward(peer_handle& p, const std::string& target,
                         const caf::strong_actor_ptr& sender, caf::message_id mid,
                         const caf::type_erased_tuple& content);
  /// Local delivery for this node's own address.
  expected<void> deliver_locally(const std::string& target, caf::mailbox_element_ptr what,
                                 caf::execution_unit* eu);
  void proxy_enqueue(peer_handle& p, const std::string& target, caf::mailbox_element_ptr what,
                     caf::execution_unit* eu);
  void respond(reply_channel& ch, caf::mailbox_element_ptr what);
  void dropped(drop_reason r, const error& why);

  // -- engine_sink (I/O thread) ------------------------------------------------------

  expected<void> on_frame(const inbound_frame& f) override;
  bool on_read_done(conn_id conn) override;
  void on_closed(conn_id conn, const error& reason) override;
  void on_event(const peer_event& e) override;

  /// Decodes the values of an arriving message into a mailbox element from
  /// `sender` with `mid`.
  expected<caf::mailbox_element_ptr> decode_element(const wire::element_view* els,
                                                    std::size_t count, const node_identity& from,
                                                    caf::strong_actor_ptr sender,
                                                    caf::message_id mid) const;
  void on_response(const inbound_frame& f);
  /// Hands the frames of the last read to their actors: on the I/O thread when
  /// they are few and nothing is queued at the dispatcher (latency), else as one
  /// batch to the connection's dispatcher actor, which decodes on the actor
  /// scheduler (throughput: the I/O thread only reads and frames).
  void flush_inbound(inbound_conn& in);
  /// Decodes one validated message/request frame for its actor. A frame that
  /// cannot be delivered is answered (requests) or dropped and counted here, and
  /// yields nothing.
  std::optional<delivery> decode_frame(wire::byte_span raw, const inbound_route& route,
                                       name_cache& names);
  caf::actor find_name(std::string_view name) const;
  void names_changed() { names_generation.fetch_add(1, std::memory_order_release); }

  void stop();

  caf::actor_system& sys;
  logger& log;
  std::shared_ptr<codec_registry> codec;
  std::shared_ptr<message_types> types;
  std::unique_ptr<engine> eng;
  node_identity self;
  duration stop_timeout;
  duration retention;
  std::atomic<bool> stopped{false};

  mutable std::shared_mutex names_mtx;
  std::unordered_map<std::string, caf::actor, string_hash, std::equal_to<>> names;
  std::atomic<std::uint64_t> names_generation{0};
  name_cache io_names;  // I/O thread

  std::mutex proxies_mtx;
  std::map<std::pair<node_address, std::string>, caf::actor> proxies;

  std::mutex pending_mtx;
  std::unordered_map<std::uint64_t, pending_request> pending;
  std::atomic<std::uint64_t> next_correlation{1};

  std::unordered_map<conn_id, inbound_conn> inbound;  // I/O thread
  inbound_conn* last_inbound = nullptr;                // I/O thread: the last one used
  conn_id last_inbound_conn = 0;

  /// Batch buffers go back here after delivery, so that steady traffic does not
  /// allocate (and page-fault) a fresh 256 KiB buffer per read.
  std::shared_ptr<wire::bytes> take_buffer();
  void give_back(std::shared_ptr<wire::bytes> buf);
  std::mutex pool_mtx;
  std::vector<std::shared_ptr<wire::bytes>> pool;

  // Dispatcher actors still running; stop() waits for them (bounded).
  std::mutex dispatchers_mtx;
  std::condition_variable dispatchers_cv;
  int dispatchers_alive = 0;

  std::mutex subs_mtx;
  /// Held while callbacks run (I/O thread), so that unsubscribe() can wait for a
  /// running one; recursive because a callback may unsubscribe itself.
  std::recursive_mutex invoke_mtx;
  std::uint64_t next_subscription = 1;
  std::vector<std::pair<std::uint64_t, std::function<void(const peer_event&)>>> callbacks;
  std::vector<std::pair<std::uint64_t, caf::actor>> subscribers;

  std::array<counter_metric*, static_cast<std::size_t>(drop_reason::count)> drops{};
  std::array<std::atomic<std::uint64_t>, static_cast<std::size_t>(drop_reason::count)> drop_counts{};
  counter_metric* failed_requests;
  gauge_metric* pending_gauge;  // set under pending_mtx
};

/// The CAF handle of a remote actor: encodes what it is sent, on the sender's
/// thread, and queues it on the peer's connection (no mailbox, no extra hop).
class remote_proxy final : public caf::monitorable_actor {
public:
  remote_proxy(caf::actor_config& cfg, std::shared_ptr<transport_state> st,
               std::shared_ptr<peer_handle> peer, std::string target)
    : caf::monitorable_actor(cfg),
      state_(std::move(st)),
      peer_(std::move(peer)),
      target_(std::move(target)) {
  }

  void enqueue(caf::mailbox_element_ptr what, caf::execution_unit* eu) override {
    state_->proxy_enqueue(*peer_, target_, std::move(what), eu);
  }

  const char* name() const override { return "troupe.remote"; }

private:
  std::shared_ptr<transport_state> state_;
  std::shared_ptr<peer_handle> peer_;
  std::string target_;
};

/// The sender of a request that arrived from a peer: the local actor's response,
/// enqueued here, travels back on the connection the request came on.
class reply_proxy final : public caf::monitorable_actor {
public:
  reply_proxy(caf::actor_config& cfg, std::shared_ptr<transport_state> st,
              std::shared_ptr<reply_channel> channel)
    : caf::monitorable_actor(cfg), state_(std::move(st)), channel_(std::move(channel)) {
  }

  void enqueue(caf::mailbox_element_ptr what, caf::execution_unit*) override {
    state_->respond(*channel_, std::move(what));
  }

  const char* name() const override { return "troupe.remote-requester"; }

private:
  std::shared_ptr<transport_state> state_;
  std::shared_ptr<reply_channel> channel_;
};

// -- encoding -----------------------------------------------------------------------

expected<void> transport_state::encode_values(wire::bytes& out,
                                              const caf::type_erased_tuple& content) const {
  if (content.size() > wire::max_elements)
    return error{errc::encode_failed, fmt::format("{} values, at most {} are allowed",
                                                  content.size(), wire::max_elements)};
  for (std::size_t i = 0; i < content.size(); ++i) {
    auto type = content.type(i);
    auto adapter = types->find(type);
    if (adapter == nullptr)
      return error{errc::encode_failed,
                   fmt::format("value {} has type {}, which is not registered for remote "
                               "messaging (remote::add_message_type)",
                               i, type_name(type))};
    auto at = wire::begin_element(out, adapter->manifest, adapter->version);
    if (auto r = adapter->encode(content.get(i), out); !r)
      return error{errc::encode_failed,
                   fmt::format("value {} ('{}'): {}", i, adapter->manifest, r.error().message())};
    wire::end_element(out, at);
  }
  return {};
}

expected<void> transport_state::encode_message(wire::bytes& out, std::uint64_t correlation,
                                               std::string_view target,
                                               const caf::type_erased_tuple& content,
                                               const node_address& to) const {
  auto offset = wire::begin_message(out, correlation, target,
                                    static_cast<std::uint8_t>(content.size()));
  if (auto r = encode_values(out, content); !r)
    return error{r.error().code(), fmt::format("cannot send a message to {}/{}: {}",
                                               to.to_string(), target, r.error().message())};
  wire::end_frame(out, offset);
  return {};
}

// -- sending ---------------------------------------------------------------------------

expected<void> transport_state::forward(peer_handle& p, const std::string& target,
                                        const caf::strong_actor_ptr& sender, caf::message_id mid,
                                        const caf::type_erased_tuple& content) {
  bool is_request = mid.is_request();
  std::uint64_t correlation = 0;
  if (is_request) {
    correlation = next_correlation.fetch_add(1) & wire::max_correlation;
    if (correlation == 0)
      correlation = next_correlation.fetch_add(1) & wire::max_correlation;
  }
  auto& buf = scratch();
  if (auto r = encode_message(buf, correlation, target, content, p.address()); !r)
    return r;
  auto register_request = [&](conn_id conn) {
    if (!is_request)
      return;
    std::lock_guard<std::mutex> guard{pending_mtx};
    auto now = clock_type::now();
    if (correlation % purge_every == 0) {
      // Requests whose responder never answered (CAF has no broken promises) would
      // otherwise stay forever; their requesters timed out long ago.
      std::erase_if(pending, [&](auto& kv) { return now - kv.second.since > retention; });
    }
    pending.emplace(correlation, pending_request{sender, mid, conn, now});
    pending_gauge->set(static_cast<double>(pending.size()));
  };
  return eng->send(p, buf, register_request);
}

expected<void> transport_state::deliver_locally(const std::string& target,
                                                caf::mailbox_element_ptr what,
                                                caf::execution_unit* eu) {
  auto dest = find_name(target);
  if (!dest)
    return error{errc::not_found,
                 fmt::format("no actor is registered as '{}' on {}", target,
                             self.address.to_string())};
  dest->enqueue(std::move(what), eu);
  return {};
}

void transport_state::proxy_enqueue(peer_handle& p, const std::string& target,
                                    caf::mailbox_element_ptr what, caf::execution_unit* eu) {
  auto mid = what->mid;
  if (mid.is_response())
    return;  // a proxy never sends requests, so nothing can answer it
  if (stopped) {
    // After stop the node may be gone: touch nothing but the requester.
    reply_error(what->sender, mid,
                error{errc::shutting_down, fmt::format("the transport is stopped; cannot send to "
                                                       "{}/{}",
                                                       p.address().to_string(), target)},
                eu);
    return;
  }
  expected<void> r;
  if (p.address() == self.address) {
    auto sender = what->sender;
    r = deliver_locally(target, std::move(what), eu);
    if (!r)
      reply_error(sender, mid, r.error(), eu);
    return;
  }
  r = forward(p, target, what->sender, mid, what->content());
  if (r)
    return;
  if (mid.is_request())
    reply_error(what->sender, mid, r.error(), eu);
  else
    dropped(drop_reason_of(r.error()), r.error());
}

void transport_state::dropped(drop_reason r, const error& why) {
  auto i = static_cast<std::size_t>(r);
  drops[i]->inc();
  // Logs the 1st, 2nd, 4th, 8th, ... drop per reason: visible, never a flood.
  auto n = drop_counts[i].fetch_add(1) + 1;
  if ((n & (n - 1)) == 0)
    log.warn("transport", "dropped a message ({} {} so far): {}", n, to_string(r), why.message());
}

void transport_state::respond(reply_channel& ch, caf::mailbox_element_ptr what) {
  if (stopped)
    return;
  auto mid = what->mid;
  if (!mid.is_response()) {
    dropped(drop_reason::reply_failed,
            error{errc::invalid_argument,
                  fmt::format("a one-way message to the requester on {} cannot be delivered: "
                              "reply to the request instead, or send to an actor_ref",
                              ch.peer().to_string())});
    return;
  }
  auto correlation = mid.integer_value() & caf::message_id::request_id_mask;
  auto& content = what->content();
  auto& buf = scratch();
  if (content.size() == 1 && content.type(0).first == caf::type_nr<caf::error>::value) {
    auto err = from_caf_error(*static_cast<const caf::error*>(content.get(0)));
    wire::put_error_response(buf, correlation, static_cast<std::uint8_t>(err.code()),
                             err.message());
  } else {
    auto offset = wire::begin_response(buf, correlation, static_cast<std::uint8_t>(content.size()));
    if (auto r = encode_values(buf, content); r) {
      wire::end_frame(buf, offset);
    } else {
      // The requester learns why instead of waiting for its timeout.
      buf.clear();
      wire::put_error_response(buf, correlation, static_cast<std::uint8_t>(r.error().code()),
                               fmt::format("cannot send the response from {}: {}",
                                           self.address.to_string(), r.error().message()));
    }
  }
  if (auto r = ch.send(buf); !r)
    dropped(drop_reason::reply_failed, r.error());
}

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
        for_each_frame(*b.frames, [&](wire::byte_span raw) {
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
    for_each_frame(*in.pending, [&](wire::byte_span raw) {
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
  decltype(callbacks) fns;
  decltype(subscribers) actors;
  {
    std::lock_guard<std::mutex> guard{subs_mtx};
    fns = callbacks;
    actors = subscribers;
  }
  std::lock_guard<std::recursive_mutex> running{invoke_mtx};
  for (auto& [id, fn] : fns) {
    bool still_subscribed = false;
    {
      std::lock_guard<std::mutex> guard{subs_mtx};
      still_subscribed = std::any_of(callbacks.begin(), callbacks.end(),
                                     [id = id](auto& x) { return x.first == id; });
    }
    if (still_subscribed)
      fn(e);
  }
  for (auto& [id, a] : actors)
    caf::anon_send(a, e);
}

void transport_state::stop() {
  if (stopped.exchange(true))
    return;
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
  std::map<std::pair<node_address, std::string>, caf::actor> doomed;
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
    callbacks.clear();
    subscribers.clear();
  }
  std::lock_guard<std::mutex> guard{pending_mtx};
  for (auto& [id, r] : pending)
    reply_error(r.requester, r.mid, error{errc::shutting_down, "the transport stopped"}, nullptr);
  pending.clear();
  pending_gauge->set(0);
}

} // namespace detail

// -- public API ----------------------------------------------------------------------------

namespace {

expected<detail::engine_settings> settings_from(const troupe::config& cfg) {
  detail::engine_settings s;
  auto bad = [](std::string_view key, std::string why) {
    return error{errc::invalid_config, fmt::format("config key '{}': {}", key, why)};
  };
  s.host = cfg.get_string("node.host");
  auto port = cfg.get_int("node.port");
  if (port < 0 || port > 65535)
    return bad("node.port", "must be within 0..65535");
  s.port = static_cast<std::uint16_t>(port);
  s.advertised_host = cfg.get_string("transport.advertised-host");
  s.cluster = cfg.get_string("node.cluster-name");
  s.secret = cfg.get_string("transport.secret");
  auto max_frame = cfg.get_int("transport.max-frame-size");
  if (max_frame < wire::min_frame_limit || max_frame > (std::int64_t{1} << 30))
    return bad("transport.max-frame-size", fmt::format("must be within {}..{}",
                                                       wire::min_frame_limit, 1 << 30));
  s.max_frame = static_cast<std::uint32_t>(max_frame);
  auto queue = cfg.get_int("transport.max-queue-bytes");
  if (queue < max_frame + static_cast<std::int64_t>(wire::header_size))
    return bad("transport.max-queue-bytes",
               "must hold at least one frame of transport.max-frame-size");
  s.max_queue_bytes = static_cast<std::size_t>(queue);
  s.heartbeat_interval = cfg.get_duration("transport.heartbeat-interval");
  s.failure_timeout = cfg.get_duration("transport.failure-timeout");
  s.handshake_timeout = cfg.get_duration("transport.handshake-timeout");
  s.backoff_min = cfg.get_duration("transport.reconnect-backoff-min");
  s.backoff_max = cfg.get_duration("transport.reconnect-backoff-max");
  if (s.handshake_timeout <= duration{0})
    return bad("transport.handshake-timeout", "must be positive");
  if (s.backoff_min <= duration{0} || s.backoff_max < s.backoff_min)
    return bad("transport.reconnect-backoff-min",
               "must be positive and at most transport.reconnect-backoff-max");
  if (s.failure_timeout > duration{0} && s.failure_timeout <= s.heartbeat_interval)
    return bad("transport.failure-timeout", "must exceed transport.heartbeat-interval (or be 0)");
  return s;
}

} // namespace

expected<std::shared_ptr<transport>> transport::start(node& n) {
  if (of(n))
    return error{errc::invalid_argument,
                 fmt::format("the transport of node '{}' is already started", n.name())};
  if (n.context().stopping())
    return error{errc::shutting_down, fmt::format("node '{}' is shutting down", n.name())};
  auto settings = settings_from(n.config());
  if (!settings)
    return std::move(settings).error();
  auto st = std::make_shared<detail::transport_state>(
    n, n.config().get_duration("transport.stop-timeout"),
    n.config().get_duration("transport.request-retention"));
  auto eng = detail::engine::start(std::move(*settings), *st, n.log(), n.metrics());
  if (!eng)
    return std::move(eng).error();
  st->eng = std::move(*eng);
  st->self = st->eng->identity();
  auto t = std::shared_ptr<transport>(new transport(st));
  n.context().set_extension<transport>(t);
  n.add_stop_hook("transport", [st] { st->stop(); });
  return t;
}

std::shared_ptr<transport> transport::of(node& n) {
  return n.context().extension<transport>();
}

std::shared_ptr<transport> transport::of(caf::actor_system& sys) {
  auto ctx = find_context(sys);
  return ctx ? ctx->extension<transport>() : nullptr;
}

transport::~transport() = default;

const node_identity& transport::identity() const noexcept {
  return state_->self;
}

expected<void> transport::register_actor(std::string name, caf::actor a) {
  if (name.empty() || !a)
    return error{errc::invalid_argument, "register_actor needs a name and a valid actor"};
  {
    std::unique_lock<std::shared_mutex> guard{state_->names_mtx};
    auto [it, added] = state_->names.emplace(name, a);
    if (!added)
      return error{errc::invalid_argument,
                   fmt::format("the name '{}' is already registered on {}", name,
                               state_->self.address.to_string())};
    state_->names_changed();
  }
  // Outside the lock: attaching to an actor that already stopped runs this now.
  a->attach_functor([w = std::weak_ptr<detail::transport_state>{state_}, name,
                     addr = a.address()] {
    if (auto st = w.lock()) {
      std::unique_lock<std::shared_mutex> guard{st->names_mtx};
      auto i = st->names.find(name);
      if (i != st->names.end() && i->second.address() == addr) {
        st->names.erase(i);
        st->names_changed();
      }
    }
  });
  return {};
}

void transport::unregister_actor(std::string_view name) {
  std::unique_lock<std::shared_mutex> guard{state_->names_mtx};
  if (auto i = state_->names.find(name); i != state_->names.end()) {
    state_->names.erase(i);
    state_->names_changed();
  }
}

caf::actor transport::registered(std::string_view name) const {
  return state_->find_name(name);
}

caf::actor transport::actor_for(const node_address& node, std::string name) {
  std::lock_guard<std::mutex> guard{state_->proxies_mtx};
  auto key = std::make_pair(node, name);
  if (auto i = state_->proxies.find(key); i != state_->proxies.end())
    return i->second;
  auto& sys = state_->sys;
  caf::actor_config cfg;
  auto ptr = caf::make_actor<detail::remote_proxy, caf::strong_actor_ptr>(
    sys.next_actor_id(), sys.node(), &sys, cfg, state_, state_->eng->peer(node), std::move(name));
  auto h = caf::actor_cast<caf::actor>(std::move(ptr));
  if (!state_->stopped)
    state_->proxies.emplace(std::move(key), h);
  return h;
}

remote_actor transport::remote(const node_address& node, std::string name) {
  remote_actor r;
  r.state_ = state_;
  r.peer_ = state_->eng->peer(node);
  r.name_ = std::move(name);
  return r;
}

void transport::connect(const node_address& node) {
  state_->eng->connect(node);
}

void transport::disconnect(const node_address& node) {
  state_->eng->disconnect(node);
}

std::vector<peer_info> transport::peers() const {
  return state_->eng->peers();
}

std::optional<peer_info> transport::peer(const node_address& node) const {
  for (auto& p : peers())
    if (p.address == node)
      return p;
  return std::nullopt;
}

transport::subscription transport::subscribe(std::function<void(const peer_event&)> fn) {
  std::lock_guard<std::mutex> guard{state_->subs_mtx};
  auto id = state_->next_subscription++;
  state_->callbacks.emplace_back(id, std::move(fn));
  return id;
}

transport::subscription transport::subscribe(caf::actor subscriber) {
  std::lock_guard<std::mutex> guard{state_->subs_mtx};
  auto id = state_->next_subscription++;
  state_->subscribers.emplace_back(id, std::move(subscriber));
  return id;
}

void transport::unsubscribe(subscription id) {
  {
    std::lock_guard<std::mutex> guard{state_->subs_mtx};
    std::erase_if(state_->callbacks, [&](auto& x) { return x.first == id; });
    std::erase_if(state_->subscribers, [&](auto& x) { return x.first == id; });
  }
  // Wait for a callback that is running right now (not if it is ours).
  std::lock_guard<std::recursive_mutex> running{state_->invoke_mtx};
}

void transport::stop() {
  state_->stop();
}

// -- remote_actor ----------------------------------------------------------------------------

expected<void> remote_actor::send_message(const caf::message& msg) const {
  if (!state_)
    return error{errc::invalid_argument, "send on an empty remote_actor"};
  if (state_->stopped)
    return error{errc::shutting_down, "the transport is stopped"};
  if (peer_->address() == state_->self.address) {
    auto dest = state_->find_name(name_);
    if (!dest)
      return error{errc::not_found, fmt::format("no actor is registered as '{}' on {}", name_,
                                                state_->self.address.to_string())};
    dest->enqueue(nullptr, caf::make_message_id(), msg, nullptr);
    return {};
  }
  return state_->forward(*peer_, name_, nullptr, caf::make_message_id(), msg.content());
}

caf::actor remote_actor::handle() const {
  auto t = state_ ? transport::of(state_->sys) : nullptr;
  return t ? t->actor_for(peer_->address(), name_) : caf::actor{};
}

const node_address& remote_actor::node() const noexcept {
  static const node_address none;
  return peer_ ? peer_->address() : none;
}

std::string_view to_string(peer_event::kind k) noexcept {
  switch (k) {
    case peer_event::kind::up: return "up";
    case peer_event::kind::lost: return "lost";
    case peer_event::kind::new_incarnation: return "new_incarnation";
    case peer_event::kind::writable: return "writable";
  }
  return "?";
}

std::string_view to_string(peer_info::state s) noexcept {
  switch (s) {
    case peer_info::state::idle: return "idle";
    case peer_info::state::connecting: return "connecting";
    case peer_info::state::connected: return "connected";
    case peer_info::state::backoff: return "backoff";
  }
  return "?";
}

} // namespace troupe::remote
