// The CAF side of the transport, shared by its translation units: transport.cpp
// (the public API), transport_send.cpp (proxies, encoding, responses) and
// transport_receive.cpp (dispatch of arriving frames to registered actors,
// request/response correlation, packets, subscribers). The network side is the
// engine (engine.hpp).
#pragma once

#include "remote/engine.hpp"
#include "remote/rules_watcher.hpp"
#include "troupe/actors/caf_error.hpp"
#include "troupe/actors/node.hpp"
#include "troupe/actors/remote/message_types.hpp"
#include "troupe/actors/remote/transport.hpp"

#include <caf/actor_system.hpp>
#include <caf/mailbox_element.hpp>
#include <caf/monitorable_actor.hpp>
#include <caf/send.hpp>

#include <array>
#include <atomic>
#include <condition_variable>
#include <map>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <tuple>
#include <unordered_map>

namespace troupe::remote::detail {

using clock_type = std::chrono::steady_clock;

struct string_hash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept {
    return std::hash<std::string_view>{}(s);
  }
};

/// A thread's frame-encoding buffer.
wire::bytes& scratch();

/// Delivers `err` as the response to the request `mid` of `to`.
void reply_error(const caf::strong_actor_ptr& to, caf::message_id mid, const error& err,
                 caf::execution_unit* eu);

enum class drop_reason { overloaded, unreachable, oversize, encode_failed, unknown_target,
                         decode_failed, shutting_down, reply_failed, wrong_incarnation, count };

std::string_view to_string(drop_reason r);
drop_reason drop_reason_of(const error& e);

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

/// The subscribers of one kind of value: callbacks (run on the I/O thread) and
/// actors (sent the value). Guarded by transport_state::subs_mtx.
template <class T>
struct subscriber_list {
  std::vector<std::pair<std::uint64_t, std::function<void(const T&)>>> callbacks;
  std::vector<std::pair<std::uint64_t, caf::actor>> actors;

  bool empty() const { return callbacks.empty() && actors.empty(); }
  void erase(std::uint64_t id) {
    std::erase_if(callbacks, [&](auto& x) { return x.first == id; });
    std::erase_if(actors, [&](auto& x) { return x.first == id; });
  }
};

struct transport_state final : engine_sink, std::enable_shared_from_this<transport_state> {
  transport_state(node& n, duration stop_timeout, duration retention);

  // -- sending (any thread; transport_send.cpp) ------------------------------------

  /// Encodes `content` into a message (correlation 0) or request frame, for one
  /// incarnation of the receiver if `incarnation` is not 0.
  expected<void> encode_message(wire::bytes& out, std::uint64_t correlation,
                                std::string_view target, const caf::type_erased_tuple& content,
                                const node_address& to, std::uint64_t incarnation) const;
  /// Appends the values of `content` as elements; the error says which value
  /// failed and why (the caller adds where the message was going).
  expected<void> encode_values(wire::bytes& out, const caf::type_erased_tuple& content) const;

  /// Sends one CAF message to `target` on `p` (pinned to `incarnation` if not 0):
  /// the proxy path (errors go to the requester or are counted) and the direct
  /// path (errors are returned).
  expected<void> forward(peer_handle& p, const std::string& target,
                         const caf::strong_actor_ptr& sender, caf::message_id mid,
                         const caf::type_erased_tuple& content, std::uint64_t incarnation);
  /// Local delivery for this node's own address.
  expected<void> deliver_locally(const std::string& target, caf::mailbox_element_ptr what,
                                 caf::execution_unit* eu);
  /// Whether a message for (this node's address, `incarnation`) is for this node;
  /// the error says why not.
  expected<void> is_self(std::uint64_t incarnation) const;
  void proxy_enqueue(peer_handle& p, const std::string& target, std::uint64_t incarnation,
                     caf::mailbox_element_ptr what, caf::execution_unit* eu);
  void respond(reply_channel& ch, caf::mailbox_element_ptr what);
  /// Counts a dropped message and logs its 1st, 2nd, 4th, ... of that reason at
  /// `level`.
  void dropped(drop_reason r, const error& why, log_level level = log_level::warn);

  // -- engine_sink (I/O thread; transport_receive.cpp) ---------------------------------

  expected<void> on_frame(const inbound_frame& f) override;
  bool on_read_done(conn_id conn) override;
  void on_closed(conn_id conn, const error& reason) override;
  void on_event(const peer_event& e) override;
  void on_heartbeat(const heartbeat_sample& s) override;

  /// Decodes the values of an arriving message into a mailbox element from
  /// `sender` with `mid`.
  expected<caf::mailbox_element_ptr> decode_element(const wire::element_view* els,
                                                    std::size_t count, const node_identity& from,
                                                    caf::strong_actor_ptr sender,
                                                    caf::message_id mid) const;
  void on_response(const inbound_frame& f);
  expected<void> on_packet(const inbound_frame& f);
  /// Hands a packet to the subscribers of its channel (or counts the drop).
  void deliver_packet(const packet& p);
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

  /// Calls the callbacks (under invoke_mtx, skipping ones unsubscribed meanwhile)
  /// and sends the value to the actors of `list`; `list` is read under subs_mtx.
  template <class T>
  void deliver(const subscriber_list<T>& list, const T& value);
  std::uint64_t add_subscription() { return next_subscription++; }  // under subs_mtx

  void stop();

  caf::actor_system& sys;
  logger& log;
  std::shared_ptr<codec_registry> codec;
  std::shared_ptr<message_types> types;
  std::unique_ptr<engine> eng;
  std::shared_ptr<const transport_clock> clock;
  node_identity self;
  duration stop_timeout;
  duration retention;
  std::atomic<bool> stopped{false};
  std::unique_ptr<rules_watcher> rules;  ///< transport.fault-injection.rules-file

  mutable std::shared_mutex names_mtx;
  std::unordered_map<std::string, caf::actor, string_hash, std::equal_to<>> names;
  std::atomic<std::uint64_t> names_generation{0};
  name_cache io_names;  // I/O thread

  std::mutex proxies_mtx;
  /// By (address, incarnation (0: any), name).
  std::map<std::tuple<node_address, std::uint64_t, std::string>, caf::actor> proxies;

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
  subscriber_list<peer_event> events;
  subscriber_list<heartbeat_sample> heartbeats;
  std::atomic<bool> heartbeat_subscribers{false};  ///< skip the lock while none
  std::map<std::string, subscriber_list<packet>, std::less<>> packets;  ///< by channel

  std::array<counter_metric*, static_cast<std::size_t>(drop_reason::count)> drops{};
  std::array<std::atomic<std::uint64_t>, static_cast<std::size_t>(drop_reason::count)> drop_counts{};
  counter_metric* failed_requests;
  gauge_metric* pending_gauge;  // set under pending_mtx
};

template <class T>
void transport_state::deliver(const subscriber_list<T>& list, const T& value) {
  std::vector<std::pair<std::uint64_t, std::function<void(const T&)>>> fns;
  std::vector<std::pair<std::uint64_t, caf::actor>> actors;
  {
    std::lock_guard<std::mutex> guard{subs_mtx};
    fns = list.callbacks;
    actors = list.actors;
  }
  std::lock_guard<std::recursive_mutex> running{invoke_mtx};
  for (auto& [id, fn] : fns) {
    bool still_subscribed = false;
    {
      std::lock_guard<std::mutex> guard{subs_mtx};
      still_subscribed = std::any_of(list.callbacks.begin(), list.callbacks.end(),
                                     [id = id](auto& x) { return x.first == id; });
    }
    if (still_subscribed)
      fn(value);
  }
  for (auto& [id, a] : actors)
    caf::anon_send(a, value);
}

/// The CAF handle of a remote actor: encodes what it is sent, on the sender's
/// thread, and queues it on the peer's connection (no mailbox, no extra hop).
class remote_proxy final : public caf::monitorable_actor {
public:
  remote_proxy(caf::actor_config& cfg, std::shared_ptr<transport_state> st,
               std::shared_ptr<peer_handle> peer, std::string target, std::uint64_t incarnation)
    : caf::monitorable_actor(cfg),
      state_(std::move(st)),
      peer_(std::move(peer)),
      target_(std::move(target)),
      incarnation_(incarnation) {
  }

  void enqueue(caf::mailbox_element_ptr what, caf::execution_unit* eu) override {
    state_->proxy_enqueue(*peer_, target_, incarnation_, std::move(what), eu);
  }

  const char* name() const override { return "troupe.remote"; }

private:
  std::shared_ptr<transport_state> state_;
  std::shared_ptr<peer_handle> peer_;
  std::string target_;
  std::uint64_t incarnation_;
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

} // namespace troupe::remote::detail

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::remote::detail::inbound_batch)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::remote::detail::inbound_done)
