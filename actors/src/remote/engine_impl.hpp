// The engine's internals, shared by its translation units: engine.cpp (lifecycle,
// peers, closing, quarantine), engine_accept.cpp (connecting, accepting,
// admission), engine_read.cpp (reading, frames, handshakes, heartbeats),
// engine_write.cpp (sending, writing, the filter's delays). See engine.hpp for the
// contract.
//
// Threads: everything in `connection` and the engine's maps marked "I/O thread" is
// touched by the I/O thread only; a send_queue is shared with sender threads under
// its mutex.
#pragma once

#include "remote/engine.hpp"
#include "remote/log_limiter.hpp"
#include "remote/tls.hpp"

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include <fmt/core.h>

#include <algorithm>
#include <atomic>
#include <deque>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>

namespace troupe::remote::detail {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using time_point = transport_clock::time_point;
using wire::frame_type;

/// Bytes asked from the kernel per read at most; a connection starts with
/// `first_read_chunk` and doubles its chunk whenever a read fills it.
inline constexpr std::size_t read_chunk = 256 * 1024;
inline constexpr std::size_t first_read_chunk = 4 * 1024;
/// Write buffers larger than this are released after use instead of kept.
inline constexpr std::size_t keep_buffer_limit = 1 << 20;
/// A frame that finds its queue idle (nothing queued or being written) and comes
/// longer than this after the previous such frame is written to the socket by its
/// sender: a lone request or response then costs no hand-off to the I/O thread
/// (latency). Frames that follow each other faster are queued and the I/O thread
/// writes them in batches (throughput: one write per batch, not per frame). It must
/// stay well below a round trip between event-based actors on two nodes (~15 µs on
/// loopback), or ping-pong traffic goes through the I/O thread and pays a hand-off.
inline constexpr auto direct_write_gap = std::chrono::microseconds{5};
/// Warnings a peer can cause: at most this many per kind per window.
inline constexpr std::uint32_t warn_burst = 5;
inline constexpr auto warn_window = std::chrono::seconds{10};
/// After accept() failed for lack of resources (file descriptors), wait this long.
inline constexpr auto accept_retry = std::chrono::milliseconds{50};

/// How a connection ended; decides the events and whether to reconnect.
enum class close_kind {
  failure,          ///< I/O error, EOF without goodbye, timeout, protocol violation
  peer_stopping,    ///< the peer said goodbye because its node stops
  peer_disconnect,  ///< the peer said goodbye to this connection only
  local_disconnect, ///< disconnect() was called here
  local_stop,       ///< this node stops
  collateral,       ///< another connection to the same incarnation was lost
};

enum class admit_result { written, queued, queued_flush, oversize, overloaded };

/// One connection's frames not yet handed to the kernel, shared with sender
/// threads. Outbound: owned by the peer (it outlives reconnects, its state is the
/// peer's connection state). Inbound: owned by the connection (responses).
struct send_queue {
  enum class st { idle, connecting, open, draining, backoff, closed };

  std::mutex mtx;
  // Everything below is guarded by mtx.
  st state = st::idle;
  wire::bytes pending;         ///< whole frames, in plaintext
  std::size_t pending_frames = 0;
  std::size_t inflight = 0;    ///< bytes taken by the writer, not yet written
  bool flush_posted = false;   ///< the I/O thread will look at `pending` unprompted
  bool refused = false;        ///< a send was refused for lack of space
  conn_id conn = 0;            ///< the connection this queue feeds (outbound)
  std::uint32_t max_frame = 0; ///< largest frame (type + body) the peer accepts
  std::size_t capacity = 0;
  std::string last_error;
  // What peers() reports, published by the I/O thread.
  std::uint64_t incarnation = 0;
  bool up = false;
  std::size_t inbound_count = 0;
  /// Outbound queues: incarnations of this address that are quarantined.
  std::vector<std::uint64_t> quarantined;
  // Direct writes by senders (see direct_write_gap).
  /// The I/O thread owns the socket's write side: set when the connection is
  /// established (its last handshake frame may still be owed) and by a flush that
  /// starts a write, cleared only by a flush that finds nothing to write (or by
  /// close). Senders write directly only while it is clear, so a direct write never
  /// goes before or into the middle of what the I/O thread writes.
  bool io_writing = false;
  /// The I/O thread holds frames of this connection that a filter delayed:
  /// senders queue behind them.
  bool held = false;
  /// The unwritten rest of a frame a sender wrote in part, exactly as it goes on
  /// the wire (TLS records with TLS): the next flush writes it before anything else.
  wire::bytes wire_rest;
  int fd = -1;                 ///< the socket while the connection is established
  tls_session* tls = nullptr;  ///< its TLS session, if any, while fd is set
  time_point last_enqueue{};   ///< last frame that found the queue idle

  /// Room for `n` more bytes within the capacity.
  bool fits(std::size_t n) const { return pending.size() + inflight + wire_rest.size() + n <= capacity; }
  bool quarantines(std::uint64_t incarnation) const {
    return std::find(quarantined.begin(), quarantined.end(), incarnation) != quarantined.end();
  }
};

struct connection;

struct peer_state final : peer_handle, std::enable_shared_from_this<peer_state> {
  explicit peer_state(node_address a) : addr(std::move(a)) {}
  const node_address& address() const noexcept override { return addr; }

  node_address addr;
  send_queue out;
  std::atomic<bool> wanted{false};
  // I/O thread only:
  std::shared_ptr<connection> outbound;
  std::vector<std::shared_ptr<connection>> inbound;  ///< established ones
  std::uint64_t incarnation = 0;
  bool up = false;
  int attempts = 0;
  std::optional<asio::steady_timer> backoff_timer;
};

/// A frame a filter delayed, with the time it may go (or be read).
struct delayed_frame {
  time_point due;
  wire::bytes frame;
};

struct connection : std::enable_shared_from_this<connection> {
  connection(conn_id i, bool out, tcp::socket s)
    : id(i), outbound(out), sock(std::move(s)), timer(sock.get_executor()) {
  }

  conn_id id;
  bool outbound;
  tcp::socket sock;
  asio::steady_timer timer;  ///< handshake deadline, then heartbeats
  std::shared_ptr<peer_state> owner;
  std::shared_ptr<send_queue> own_queue;  ///< inbound: responses
  send_queue* q = nullptr;                ///< the queue this connection drains
  std::optional<handshake> hs;
  std::unique_ptr<tls_session> tls;
  bool tls_ready = false;       ///< the TLS handshake completed
  /// The peer as far as known: outbound from the start (incarnation 0 until the
  /// handshake), inbound once its hello was read.
  node_identity peer_id;
  std::string remote;     ///< "ip:port" of the socket, for logs before the handshake
  std::string source_ip;  ///< inbound: the remote IP address (admission caps)
  time_point accepted_at{};
  bool heard_frame = false;  ///< a complete frame arrived (eviction prefers silent ones)
  bool established = false;
  bool closed = false;
  bool close_after_write = false;
  error close_reason;
  close_kind close_as = close_kind::failure;
  bool counted_pending = false;      ///< inbound, counted in the pending handshakes
  bool counted_established = false;  ///< inbound, counted in the established connections
  // Write side.
  bool writing = false;
  wire::bytes raw_out;    ///< TLS handshake bytes for the next write (before anything)
  wire::bytes control;    ///< control frames for the next write (before data)
  wire::bytes released;   ///< frames a filter delayed whose time came (before control)
  wire::bytes w_rest;     ///< being written: raw bytes (TLS handshake, a sender's rest)
  wire::bytes w_control;  ///< being written (plaintext frames)
  wire::bytes w_data;     ///< being written (plaintext frames)
  wire::bytes w_cipher;   ///< being written with TLS: w_control + w_data sealed
  std::size_t w_done = 0;
  std::size_t w_frames = 0;
  // Read side: unconsumed plaintext is rbuf[rbeg, rend); TLS reads land in cbuf.
  wire::bytes rbuf;
  std::size_t rbeg = 0;
  std::size_t rend = 0;
  wire::bytes cbuf;
  std::size_t chunk = first_read_chunk;  ///< bytes offered to the next read
  wire::byte_span current_raw;  ///< the frame being handled, header included
  bool read_paused = false;     ///< the sink has enough; resume_reading() restarts
  time_point last_heard{};      ///< liveness: last time anything (that passed a filter) arrived
  std::shared_ptr<reply_channel> replies;
  // Frames a filter delayed, in order; later frames of the direction wait behind.
  std::deque<delayed_frame> out_delayed;
  std::deque<delayed_frame> in_delayed;
  std::optional<asio::steady_timer> delay_timer;

  /// Who the filter and the logs name: the identity if known, else the socket.
  std::string who() const { return established ? peer_id.to_string() : remote; }
};

class reply_channel_impl;

class engine_impl final : public engine {
public:
  engine_impl(engine_settings s, engine_sink& sink, logger& log, metrics_registry& m);
  ~engine_impl() override { stop(std::chrono::milliseconds{500}); }

  expected<void> open();

  const node_identity& identity() const noexcept override { return identity_; }
  std::shared_ptr<peer_handle> peer(const node_address& address) override {
    return find_or_add_peer(address);
  }
  expected<void> send(peer_handle& h, wire::byte_span frame, function_ref<void(conn_id)> on_accept,
                      std::uint64_t incarnation) override;
  void connect(const node_address& address) override;
  void disconnect(const node_address& address) override;
  void resume_reading(conn_id id) override;
  std::vector<peer_info> peers() const override;
  void quarantine(const node_identity& id, std::string reason) override;
  bool is_quarantined(const node_identity& id) const override;
  void set_filter(std::shared_ptr<frame_filter> f) override;
  const transport_clock& clock() const noexcept override { return *clock_; }
  void stop(duration bound) override;

  /// Sender threads: queues a response on an inbound connection's queue.
  expected<void> reply(send_queue& q, const std::weak_ptr<connection>& conn,
                       const node_identity& peer, wire::byte_span frame);

private:
  friend class reply_channel_impl;

  counter_metric& rejected_counter(std::string_view reason);
  void count_connection_error(std::string_view reason);
  /// A warning a peer can cause: rate-limited per `kind` (log_limiter).
  void warn(std::string_view kind, const std::string& text);
  error rejected(counter_metric& c, errc code, std::string text) {
    c.inc();
    return error{code, std::move(text)};
  }
  void run();
  /// The I/O thread's loop (see engine.cpp): returns when io_ runs out of work.
  void run_handlers();
  std::shared_ptr<peer_state> find_or_add_peer(const node_address& address);
  std::shared_ptr<peer_state> find_peer(const node_address& address) const;
  /// The installed filter, or nullptr (cheap while none is installed).
  std::shared_ptr<frame_filter> current_filter() const;

  // -- writing (engine_write.cpp) --
  /// Writes `frame` to the socket at once if the queue is idle and the sender is
  /// not streaming, else appends it if it fits. Precondition: q.mtx held and the
  /// queue accepts frames.
  admit_result admit_locked(send_queue& q, wire::byte_span frame);
  enum class direct { all, part, none };
  direct write_directly(send_queue& q, wire::byte_span frame);
  void flush(connection& c);
  /// Passes the frames taken for writing through the filter (I/O thread).
  void filter_outgoing(connection& c, frame_filter* f);
  void write_some(const std::shared_ptr<connection>& c);
  void on_written(connection& c, std::size_t n);
  void arm_delay_timer(const std::shared_ptr<connection>& c);
  /// The filter's verdict on `frame` (pass without a filter); counts drops.
  filter_verdict judge(frame_filter* f, frame_direction d, const connection& c,
                       wire::byte_span frame);
  /// Puts `frame` into `held` if the verdict delays it or frames wait there
  /// already (order is kept); true if it did.
  bool hold(std::deque<delayed_frame>& held, const filter_verdict& v, time_point now,
            wire::byte_span frame);
  void release_delayed(const std::shared_ptr<connection>& c);

  // -- reading (engine_read.cpp) --
  void start_read(const std::shared_ptr<connection>& c);
  void on_read(connection& c, std::size_t n);
  /// TLS: feeds what arrived in cbuf, advances the TLS handshake, decrypts into
  /// rbuf. False if the connection closed.
  bool on_tls_read(connection& c, std::size_t n);
  void on_tls_ready(connection& c);
  /// The TLS handshake failed: logs why, sends the alert, closes.
  void tls_failed(connection& c);
  /// One complete frame that arrived (raw: header included), through the filter.
  void on_arrived(connection& c, wire::byte_span raw, frame_filter* f, time_point now);
  void on_frame(connection& c, wire::byte_span raw);
  void on_handshake_frame(connection& c, wire::frame_view f);
  /// Engine-level admission of a peer the handshake accepted; the refusal if not.
  std::optional<std::pair<refusal, error>> admit_peer(connection& c);
  void established_outbound(connection& c);
  void established_inbound(connection& c);
  void on_established(peer_state& p, connection& c);
  void refuse(connection& c, std::string_view kind, const error& why);
  /// Closes `c` once what it owes the peer (a refuse frame, a TLS alert) is
  /// written, or now if it owes nothing.
  void close_after_writing(connection& c, const error& reason);
  void protocol_failure(connection& c, std::string_view kind, const error& why);
  void arm_heartbeat(const std::shared_ptr<connection>& c);
  /// `late`: how long after it was due the check runs (real time).
  void on_heartbeat(connection& c, std::chrono::steady_clock::duration late);
  bool samples_heartbeats(const connection& c) const;

  // -- connecting and accepting (engine_accept.cpp) --
  void accept_next();
  void on_accepted(tcp::socket s);
  /// Closes the oldest pending inbound handshake (silent ones first), from
  /// `source_ip` if not empty. False if there is none.
  bool evict_pending(const std::string& source_ip);
  void start_connect(const std::shared_ptr<peer_state>& p, conn_id id);
  void on_connected(const std::shared_ptr<connection>& c);
  void connect_failed(connection& c, std::string why);
  void arm_handshake_deadline(const std::shared_ptr<connection>& c, std::string what);
  void begin_connect(const std::shared_ptr<peer_state>& p);
  void schedule_reconnect(const std::shared_ptr<peer_state>& p);
  void uncount(connection& c);

  // -- closing and peers (engine.cpp) --
  void close(connection& c, const error& reason, close_kind kind);
  void peer_lost(peer_state& p, const connection& c, const error& reason, close_kind kind);
  void forget_if_unused(std::shared_ptr<peer_state> p);
  void begin_stop(duration bound);
  void publish(peer_state& p);
  void emit(peer_event::kind k, const node_identity& who, std::string reason = {},
            std::uint64_t previous = 0);
  void update_gauges();

  engine_settings settings_;
  engine_sink& sink_;
  logger& log_;
  metrics_registry& metrics_;
  std::shared_ptr<const transport_clock> clock_;
  node_identity identity_;
  handshake_settings hs_settings_;
  bool authenticated_ = false;  ///< a secret or TLS proves who peers are

  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  tcp::acceptor acceptor_;
  tcp::resolver resolver_;
  asio::steady_timer stop_timer_;
  asio::steady_timer accept_timer_;
  std::thread thread_;
  std::atomic<bool> stopping_{false};
  std::atomic<bool> stop_called_{false};
  std::atomic<conn_id> next_conn_{1};

  std::atomic<bool> filtering_{false};
  std::atomic<std::shared_ptr<frame_filter>> filter_;

  mutable std::mutex peers_mtx_;
  std::unordered_map<std::string, std::shared_ptr<peer_state>> peers_;  // by "host:port"
  // I/O thread:
  std::unordered_map<conn_id, std::shared_ptr<connection>> connections_;
  struct source_counts {
    std::size_t pending = 0;
    std::size_t established = 0;
  };
  std::unordered_map<std::string, source_counts> sources_;  ///< inbound, by source IP
  std::size_t pending_handshakes_ = 0;
  std::size_t inbound_established_ = 0;
  log_limiter warnings_{warn_burst, warn_window};

  counter_metric& frames_sent_;
  counter_metric& bytes_sent_;
  counter_metric& writes_;
  counter_metric& direct_writes_;
  counter_metric& frames_received_;
  counter_metric& bytes_received_;
  counter_metric& dropped_frames_;
  counter_metric& filter_dropped_;
  counter_metric& filter_delayed_;
  counter_metric& rejected_overloaded_;
  counter_metric& rejected_unreachable_;
  counter_metric& rejected_oversize_;
  counter_metric& rejected_stopping_;
  gauge_metric& pending_gauge_;
  gauge_metric& inbound_gauge_;
};

class reply_channel_impl final : public reply_channel {
public:
  reply_channel_impl(engine_impl& e, std::shared_ptr<send_queue> q, std::weak_ptr<connection> c,
                     node_identity peer)
    : engine_(e), queue_(std::move(q)), conn_(std::move(c)), peer_(std::move(peer)) {
  }
  expected<void> send(wire::byte_span frame) override {
    return engine_.reply(*queue_, conn_, peer_, frame);
  }
  const node_identity& peer() const noexcept override { return peer_; }

private:
  engine_impl& engine_;
  std::shared_ptr<send_queue> queue_;
  std::weak_ptr<connection> conn_;
  node_identity peer_;
};

std::string ms(duration d);
/// OS randomness (nonces, incarnations, jitter).
void random_bytes(void* out, std::size_t n);

} // namespace troupe::remote::detail
