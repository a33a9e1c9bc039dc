// The transport's network engine: sockets, handshakes, framing, bounded outbound
// queues, heartbeats and reconnects, on one Boost.Asio I/O thread. It moves frames
// (bytes), not messages: the CAF side (transport.cpp) encodes and decodes them.
// Neither this header nor its users see CAF or Asio.
//
// Connections are one-directional for application traffic: a node sends its
// messages and requests on its own *outbound* connection to a peer and receives
// the peer's on the peer's outbound connection (our *inbound* one). Responses go
// back on the connection their request came on. So a pair of nodes that talk both
// ways uses two connections, and no tie-break between simultaneous connects is
// ever needed.
//
// Queues: every connection has one send queue (outbound: the peer's messages and
// requests; inbound: responses). A queue holds at most `max_queue_bytes` of frames
// not yet handed to the kernel; a send that would exceed it fails with
// errc::overloaded and, once the queue drained below half, subscribers get a
// `writable` event. Sender threads append under the queue's mutex and wake the I/O
// thread only when it is not already going to look at the queue, so a busy
// connection costs one syscall per batch, not per frame.
//
// Admission: inbound connections are capped (pending handshakes and established
// connections, in total and per source address); when the pending cap is reached
// the oldest pending handshake (silent ones first) makes room, so that silent
// sockets cannot starve new peers. Buffers grow as bytes arrive, never to what a
// peer merely declares. Without authentication (no secret, no TLS) a hello cannot
// displace a live incarnation, and an inbound connection's failure ends only that
// connection (docs/transport.md, "Hostile peers").
//
// Thread-safety: send(), peer(), connect(), disconnect(), peers(), quarantine(),
// is_quarantined(), set_filter() and stop() may be called from any thread.
// engine_sink callbacks run on the I/O thread, one at a time, in the order things
// happened.
#pragma once

#include "troupe/actors/config.hpp"
#include "troupe/actors/log.hpp"
#include "troupe/actors/metrics.hpp"
#include "troupe/actors/remote/address.hpp"
#include "troupe/actors/remote/clock.hpp"
#include "troupe/actors/remote/events.hpp"
#include "troupe/actors/remote/filter.hpp"
#include "troupe/actors/remote/handshake.hpp"
#include "troupe/actors/remote/wire.hpp"

#include <cstdint>
#include <memory>
#include <type_traits>
#include <utility>
#include <vector>

namespace troupe::remote::detail {

using conn_id = std::uint64_t;
class tls_context;

/// A non-owning reference to a callable; valid only during the call it is passed to.
template <class Signature>
class function_ref;

template <class R, class... Ts>
class function_ref<R(Ts...)> {
public:
  template <class F>
    requires(!std::is_same_v<std::decay_t<F>, function_ref>)
  function_ref(F& f) noexcept  // NOLINT: implicit by design
    : obj_(static_cast<void*>(&f)),
      call_([](void* obj, Ts... xs) -> R { return (*static_cast<F*>(obj))(std::forward<Ts>(xs)...); }) {
  }
  R operator()(Ts... xs) const { return call_(obj_, std::forward<Ts>(xs)...); }

private:
  void* obj_;
  R (*call_)(void*, Ts...);
};

/// Per-thread buffers that senders reuse (cleared on each use; released if a burst
/// made them larger than 1 MiB). Slots tell buffers that are in use at once apart.
enum class thread_slot { frame, sealed };

template <thread_slot Slot>
wire::bytes& thread_buffer() {
  thread_local wire::bytes buf;
  if (buf.capacity() > (std::size_t{1} << 20))
    wire::bytes{}.swap(buf);
  buf.clear();
  return buf;
}

struct engine_settings {
  std::string host = "127.0.0.1";
  std::uint16_t port = 0;
  std::string advertised_host;  ///< what peers are told; empty: `host`
  std::string cluster = "troupe";
  std::string secret;
  std::uint32_t max_frame = 4u << 20;
  std::size_t max_queue_bytes = 8u << 20;
  duration heartbeat_interval = std::chrono::seconds{1};
  duration failure_timeout = std::chrono::seconds{5};
  duration handshake_timeout = std::chrono::seconds{3};
  duration backoff_min = std::chrono::milliseconds{100};
  duration backoff_max = std::chrono::seconds{5};
  std::size_t max_connections = 2048;              ///< established inbound connections
  std::size_t max_connections_per_address = 512;   ///< ... from one source IP address
  std::size_t max_pending = 128;                   ///< inbound connections in their handshake
  std::size_t max_pending_per_address = 64;        ///< ... from one source IP address
  std::shared_ptr<tls_context> tls;                ///< null: plaintext TCP
  std::shared_ptr<const transport_clock> clock;    ///< null: steady_clock
  std::shared_ptr<frame_filter> filter;            ///< null: none (see set_filter)
};

/// Where the responses to requests of one inbound connection go.
class reply_channel {
public:
  virtual ~reply_channel() = default;
  /// Queues a complete response frame; any thread. Fails with overloaded,
  /// oversize or node_unreachable (the connection closed).
  virtual expected<void> send(wire::byte_span frame) = 0;
  virtual const node_identity& peer() const noexcept = 0;
};

/// An application frame (message, request or response) as it arrived.
struct inbound_frame {
  conn_id conn;
  bool outbound;  ///< it came on our outbound connection (so it is a response)
  const node_identity& peer;
  wire::frame_view frame;
  wire::byte_span raw;  ///< the whole frame, header included
  /// Inbound connections only: where responses to requests go.
  const std::shared_ptr<reply_channel>* replies;
};

class engine_sink {
public:
  virtual ~engine_sink() = default;
  /// One application frame; returning an error closes the connection as a
  /// protocol violation (the error is logged and counted).
  virtual expected<void> on_frame(const inbound_frame& f) = 0;
  /// A connection closed. Everything the sink registered for it (pending
  /// requests) must fail now with `reason`.
  virtual void on_closed(conn_id conn, const error& reason) = 0;
  virtual void on_event(const peer_event& e) = 0;
  /// A heartbeat arrived (one connection per peer incarnation reports them).
  virtual void on_heartbeat(const heartbeat_sample& s) = 0;
  /// All frames of one read were handed to on_frame (the views die now). Returning
  /// false pauses reading from the connection until engine::resume_reading.
  virtual bool on_read_done(conn_id conn) = 0;
};

/// Opaque per-address state; keep one to send repeatedly without a lookup.
class peer_handle {
public:
  virtual ~peer_handle() = default;
  virtual const node_address& address() const noexcept = 0;
};

class engine {
public:
  /// Binds the listener and starts the I/O thread. Fails with io_error naming the
  /// address if the port cannot be bound.
  static expected<std::unique_ptr<engine>> start(engine_settings settings, engine_sink& sink,
                                                 logger& log, metrics_registry& metrics);

  virtual ~engine() = default;

  /// This node's address (with the port actually bound) and incarnation.
  virtual const node_identity& identity() const noexcept = 0;

  /// The state of one peer address, created on first use.
  virtual std::shared_ptr<peer_handle> peer(const node_address& address) = 0;

  /// Queues a complete frame (message, request or packet) on the outbound
  /// connection to `p`, starting a connection if there is none. `on_accept(conn)`
  /// runs under the queue's lock right before the frame is accepted, naming the
  /// connection it will travel on; nothing is queued if it does not run. A frame
  /// for one `incarnation` (not 0) is refused while that incarnation is known to
  /// be replaced or is quarantined. Errors: oversize, overloaded, node_unreachable
  /// (backing off after a failure, replaced, quarantined), shutting_down.
  virtual expected<void> send(peer_handle& p, wire::byte_span frame,
                              function_ref<void(conn_id)> on_accept,
                              std::uint64_t incarnation = 0) = 0;

  /// Marks a peer wanted: connect now and reconnect with backoff after failures.
  virtual void connect(const node_address& address) = 0;
  /// No longer wanted: closes the outbound connection (with a goodbye).
  virtual void disconnect(const node_address& address) = 0;

  /// Reads from a connection again after on_read_done paused it; any thread.
  virtual void resume_reading(conn_id conn) = 0;

  virtual std::vector<peer_info> peers() const = 0;

  /// Refuses all traffic to and from incarnation `id` from now on: closes its
  /// connections (`lost` if it was up), refuses its handshakes and sends for it,
  /// and emits `quarantined`. Idempotent.
  virtual void quarantine(const node_identity& id, std::string reason) = 0;
  virtual bool is_quarantined(const node_identity& id) const = 0;

  /// Installs (or with nullptr removes) the frame filter.
  virtual void set_filter(std::shared_ptr<frame_filter> f) = 0;

  virtual const transport_clock& clock() const noexcept = 0;

  /// Says goodbye on every connection, waits up to `bound` for it to be written,
  /// closes everything and joins the I/O thread. Idempotent.
  virtual void stop(duration bound) = 0;
};

} // namespace troupe::remote::detail
