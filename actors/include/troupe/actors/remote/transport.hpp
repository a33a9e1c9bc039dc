// troupe::remote::transport: node-to-node messaging over TCP (docs/transport.md).
//
//   auto t = troupe::remote::transport::start(*node);           // listens on node.port
//   (*t)->register_actor("accounts", accounts);                   // reachable by name
//   caf::actor acc = (*t)->actor_for(peer_address, "accounts");  // a remote actor
//   self->send(acc, deposit{"a", 5});                             // as if it were local
//   troupe::ask<balance>(self, acc, 2s, get_balance{"a"}).then(...);
//
// Addressing: a remote actor is (node address, registered name). actor_for returns
// a CAF handle (one per address and name) whose sends are encoded with the codec
// (remote::add_message_type) and queued on the connection to that node; the
// connection is opened on first use. Replies to requests come back to the
// requester, errors included. Messages from one sender to one node keep their
// order. Pinned to a node_identity instead, a handle reaches that incarnation
// only: never the process that replaced it.
//
// Backpressure: each connection has a bounded queue (transport.max-queue-bytes).
//   - A request through a handle to a full queue fails at once with `overloaded`.
//   - A one-way send through a handle to a full queue is dropped (drop-newest),
//     counted in troupe_transport_dropped_messages_total{reason="overloaded"} and
//     logged; use send() below where a drop is not acceptable.
//   - send() and remote_actor::send() return the result instead, and a `writable`
//     peer event follows once the queue drained below half.
// An oversize message fails at the sender with errc::oversize.
//
// Failure signals: subscribe() to peer events (up, lost, new incarnation,
// writable, quarantined). When a connection is lost, every request pending on it
// fails at once with node_unreachable. subscribe_heartbeats() hands a failure
// detector the arrival times of the peers' heartbeats; quarantine() shuts an
// incarnation out for good.
//
// Packets: send_packet() / subscribe_packets() carry bytes with a manifest to a
// channel of a peer incarnation, outside CAF (the membership protocol).
//
// Fault injection: set_filter() installs a frame filter that every frame passes
// (filter.hpp); transport_options injects the clock (clock.hpp).
//
// Lifetime: start() registers a stop hook on the node; the node's shutdown stops
// the transport after its actors (goodbye to every peer, sockets closed, I/O thread
// joined). Handles must not be used after the node is destroyed.
// Thread-safety: every member may be called from any thread, including actors.
#pragma once

#include "troupe/actors/expected.hpp"
#include "troupe/actors/remote/address.hpp"
#include "troupe/actors/remote/clock.hpp"
#include "troupe/actors/remote/events.hpp"
#include "troupe/actors/remote/filter.hpp"

#include <caf/actor.hpp>
#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/fwd.hpp>
#include <caf/make_message.hpp>

#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace troupe {
class node;
} // namespace troupe

namespace troupe::remote {

namespace detail {
class peer_handle;
struct transport_state;
} // namespace detail

class transport;

/// A named actor on some node, bound to a transport: send with a result (for
/// backpressure-aware senders), or get the CAF handle. Cheap to copy; reuse it to
/// skip the address lookup per send.
class remote_actor {
public:
  remote_actor() = default;

  /// Queues a one-way message; the result says whether it was accepted
  /// (overloaded, node_unreachable, oversize, encode_failed, shutting_down).
  template <class... Ts>
  expected<void> send(Ts&&... xs) const {
    return send_message(caf::make_message(std::forward<Ts>(xs)...));
  }
  expected<void> send_message(const caf::message& msg) const;

  /// The CAF handle of the same actor (see transport::actor_for).
  caf::actor handle() const;

  const node_address& node() const noexcept;
  /// The incarnation it is pinned to, 0 if any.
  std::uint64_t incarnation() const noexcept { return incarnation_; }
  const std::string& name() const noexcept { return name_; }
  explicit operator bool() const noexcept { return state_ != nullptr; }

private:
  friend class transport;
  std::shared_ptr<detail::transport_state> state_;
  std::shared_ptr<detail::peer_handle> peer_;
  std::string name_;
  std::uint64_t incarnation_ = 0;
};

/// What a program may inject into a transport (tests, simulations).
struct transport_options {
  /// What the transport measures time with (clock.hpp); null: steady_clock.
  std::shared_ptr<const transport_clock> clock;
  /// A frame filter from the start (filter.hpp); see also transport::set_filter.
  std::shared_ptr<frame_filter> filter;
};

class transport {
public:
  /// Starts the node's transport on node.host:node.port (port 0 picks one; see
  /// address()) with the transport.* settings. Fails with invalid_config or
  /// io_error (e.g. the port is taken). The node keeps it as an extension and
  /// stops it in its shutdown.
  static expected<std::shared_ptr<transport>> start(node& n, transport_options opts = {});

  /// The transport started for a node, or nullptr.
  static std::shared_ptr<transport> of(node& n);
  static std::shared_ptr<transport> of(caf::actor_system& sys);

  ~transport();
  transport(const transport&) = delete;
  transport& operator=(const transport&) = delete;

  /// This node's address (with the bound port) and incarnation.
  const node_identity& identity() const noexcept;
  const node_address& address() const noexcept { return identity().address; }

  /// Makes `a` reachable under `name` from other nodes. Fails if the name is taken
  /// by a running actor; the entry goes away when the actor stops. Register
  /// supervised actors by their stable handle (child_handle).
  expected<void> register_actor(std::string name, caf::actor a);
  void unregister_actor(std::string_view name);
  /// The local actor registered under `name`, or an invalid handle.
  caf::actor registered(std::string_view name) const;

  /// The CAF handle of actor `name` on `node` (the same handle for the same pair).
  /// For this node's own address it delivers locally, without encoding.
  caf::actor actor_for(const node_address& node, std::string name);
  /// The handle of actor `name` on incarnation `node` only: a message through it
  /// never reaches another incarnation at that address. Once that incarnation is
  /// known to be replaced or is quarantined, requests fail with node_unreachable
  /// and one-way messages are dropped and counted (reason "node_unreachable"); one
  /// that reaches the new process anyway is refused there ("wrong_incarnation").
  /// Incarnation 0 means any (the address form above).
  caf::actor actor_for(const node_identity& node, std::string name);
  /// Pinned if ref.incarnation is set.
  caf::actor actor_for(const actor_ref& ref);

  /// A send-with-result handle of actor `name` on `node`.
  remote_actor remote(const node_address& node, std::string name);
  remote_actor remote(const node_identity& node, std::string name);

  /// One-way send with a result (see remote_actor::send).
  template <class... Ts>
  expected<void> send(const node_address& node, std::string name, Ts&&... xs) {
    return remote(node, std::move(name)).send(std::forward<Ts>(xs)...);
  }

  /// Wants a peer: connect now and reconnect with backoff whenever the connection
  /// fails, until disconnect(). Membership drives this for cluster members.
  void connect(const node_address& node);
  /// No longer wanted: closes the outbound connection after a goodbye. Later sends
  /// open a new one (without automatic reconnects).
  void disconnect(const node_address& node);

  std::vector<peer_info> peers() const;
  std::optional<peer_info> peer(const node_address& node) const;

  /// Shuts incarnation `id` out for good: its connections close now (its pending
  /// requests fail; `lost` if it was up), its handshakes are refused (it is told
  /// why) and sends pinned to it fail with node_unreachable; subscribers get a
  /// `quarantined` event. Another incarnation at the same address is not
  /// affected. Membership quarantines what it removed or downed. Idempotent.
  void quarantine(const node_identity& id, std::string reason);
  bool is_quarantined(const node_identity& id) const;

  using subscription = std::uint64_t;
  /// Calls `fn` for every peer event, on the transport's I/O thread: keep it
  /// short and never block in it (send a message instead).
  subscription subscribe(std::function<void(const peer_event&)> fn);
  /// Sends every peer event to `subscriber` as a peer_event message.
  subscription subscribe(caf::actor subscriber);
  /// Calls `fn` (I/O thread) / sends a heartbeat_sample to `subscriber` for every
  /// heartbeat that arrives: a failure detector's samples. One connection per
  /// peer incarnation reports them (events.hpp), every transport.heartbeat-interval
  /// of the peer, timed with the transport's clock.
  subscription subscribe_heartbeats(std::function<void(const heartbeat_sample&)> fn);
  subscription subscribe_heartbeats(caf::actor subscriber);
  /// Once this returns, the callback is not running and will not be called again
  /// (a callback may unsubscribe itself). Works for every kind of subscription.
  void unsubscribe(subscription id);

  /// Sends `payload` (bytes of type `manifest` at `version`) to `channel` on
  /// incarnation `to` (incarnation 0: whichever runs at the address), without CAF:
  /// one frame on this node's connection to it, in order with its other packets.
  /// Errors as remote_actor::send, and invalid_argument for an empty channel or
  /// manifest. A packet to this node's own address is delivered at once, on the
  /// caller's thread.
  expected<void> send_packet(const node_identity& to, std::string_view channel,
                             std::string_view manifest, std::uint32_t version,
                             std::span<const std::uint8_t> payload);
  /// Calls `fn` (I/O thread) / sends a `packet` message to `subscriber` for every
  /// packet that arrives for `channel`. Packets for a channel nobody subscribed
  /// are dropped and counted (troupe_transport_dropped_messages_total{reason=
  /// "unknown_target"}) and logged at debug level only: they are datagrams of
  /// protocols that send again.
  subscription subscribe_packets(std::string channel, std::function<void(const packet&)> fn);
  subscription subscribe_packets(std::string channel, caf::actor subscriber);

  /// Installs a frame filter that every frame in and out passes (filter.hpp), or
  /// removes it (nullptr). For tests and fault injection.
  void set_filter(std::shared_ptr<frame_filter> f);
  /// The clock the transport measures time with.
  const transport_clock& clock() const noexcept;

  /// Stops the transport now (the node's shutdown does it too); idempotent.
  void stop();

private:
  explicit transport(std::shared_ptr<detail::transport_state> x) : state_(std::move(x)) {}
  std::shared_ptr<detail::transport_state> state_;
};

} // namespace troupe::remote

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::remote::peer_event)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::remote::heartbeat_sample)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::remote::packet)
