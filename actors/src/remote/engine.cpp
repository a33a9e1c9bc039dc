#include "remote/engine.hpp"

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include <fmt/core.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <cstring>
#include <mutex>
#include <optional>
#include <random>
#include <thread>
#include <unordered_map>

#include <sys/random.h>
#include <sys/socket.h>

namespace troupe::remote::detail {

namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using clock_type = std::chrono::steady_clock;
using wire::frame_type;

/// Bytes asked from the kernel per read; a read decodes every frame it completed.
constexpr std::size_t read_chunk = 256 * 1024;
/// Write buffers larger than this are released after use instead of kept.
constexpr std::size_t keep_buffer_limit = 1 << 20;
/// Inbound connections still in their handshake; more are closed at once.
constexpr int max_pending_handshakes = 256;
/// A frame that finds its queue idle (nothing queued or being written) and comes
/// longer than this after the previous such frame is written to the socket by its
/// sender: a lone request or response then costs no hand-off to the I/O thread
/// (latency). Frames that follow each other faster are queued and the I/O thread
/// writes them in batches (throughput: one write per batch, not per frame).
constexpr auto direct_write_gap = std::chrono::microseconds{20};

void random_bytes(void* out, std::size_t n) {
  auto p = static_cast<std::uint8_t*>(out);
  while (n > 0) {
    auto got = ::getrandom(p, n, 0);
    if (got <= 0) {
      // getrandom only fails on ancient kernels; random_device is the fallback.
      std::random_device rd;
      for (; n > 0; --n)
        *p++ = static_cast<std::uint8_t>(rd());
      return;
    }
    p += got;
    n -= static_cast<std::size_t>(got);
  }
}

std::array<std::uint8_t, wire::nonce_size> random_nonce() {
  std::array<std::uint8_t, wire::nonce_size> n;
  random_bytes(n.data(), n.size());
  return n;
}

std::uint64_t random_incarnation() {
  std::uint64_t x = 0;
  while (x == 0)
    random_bytes(&x, sizeof(x));
  return x;
}

std::string ms(duration d) {
  return format_duration(std::chrono::duration_cast<std::chrono::milliseconds>(d));
}

/// How a connection ended; decides the events and whether to reconnect.
enum class close_kind {
  failure,          ///< I/O error, EOF without goodbye, timeout, protocol violation
  peer_stopping,    ///< the peer said goodbye because its node stops
  peer_disconnect,  ///< the peer said goodbye to this connection only
  local_disconnect, ///< disconnect() was called here
  local_stop,       ///< this node stops
  collateral,       ///< another connection to the same incarnation was lost
};

/// One connection's frames not yet handed to the kernel, shared with sender
/// threads. Outbound: owned by the peer (it outlives reconnects, its state is the
/// peer's connection state). Inbound: owned by the connection (responses).
struct send_queue {
  enum class st { idle, connecting, open, draining, backoff, closed };

  std::mutex mtx;
  // Everything below is guarded by mtx.
  st state = st::idle;
  wire::bytes pending;
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
  // Direct writes by senders (see direct_write_gap).
  /// The I/O thread owns the socket's write side: set when the connection is
  /// established (its last handshake frame may still be owed) and by a flush that
  /// starts a write, cleared only by a flush that finds nothing to write (or by
  /// close). Senders write directly only while it is clear, so a direct write never
  /// goes before or into the middle of what the I/O thread writes.
  bool io_writing = false;
  /// `pending` starts with the rest of a frame a sender wrote in part: the next
  /// flush writes it before any control frame (a heartbeat may be owed meanwhile).
  bool pending_rest = false;
  int fd = -1;                 ///< the socket while the connection is established
  clock_type::time_point last_enqueue{};  ///< last frame that found the queue idle
};

enum class admit_result { written, queued, queued_flush, oversize, overloaded };

class engine_impl;
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
  node_identity peer_id;
  std::string remote;  ///< "ip:port" of the socket, for logs before the handshake
  bool established = false;
  bool closed = false;
  bool close_after_write = false;
  error close_reason;
  close_kind close_as = close_kind::failure;
  bool counted_handshake = false;
  // Write side.
  bool writing = false;
  wire::bytes control;    ///< control frames for the next write (before data)
  wire::bytes w_control;  ///< being written
  wire::bytes w_data;     ///< being written
  std::size_t w_done = 0;
  std::size_t w_frames = 0;
  // Read side: unconsumed bytes are rbuf[rbeg, rend).
  wire::bytes rbuf;
  std::size_t rbeg = 0;
  std::size_t rend = 0;
  std::size_t partial = 0;  ///< total size of the incomplete frame at rbeg, if known
  wire::byte_span current_raw;  ///< the frame being handled, header included
  bool read_paused = false;     ///< the sink has enough; resume_reading() restarts
  clock_type::time_point last_heard;  ///< last time any byte arrived
  std::shared_ptr<reply_channel> replies;
};

class reply_channel_impl;

class engine_impl final : public engine {
public:
  engine_impl(engine_settings s, engine_sink& sink, logger& log, metrics_registry& m)
    : settings_(std::move(s)),
      sink_(sink),
      log_(log),
      metrics_(m),
      work_(asio::make_work_guard(io_)),
      acceptor_(io_),
      resolver_(io_),
      stop_timer_(io_),
      frames_sent_(m.counter("troupe_transport_frames_sent_total", {},
                             "Frames handed to the kernel.")),
      bytes_sent_(m.counter("troupe_transport_bytes_sent_total", {},
                            "Bytes handed to the kernel.")),
      writes_(m.counter("troupe_transport_writes_total", {},
                        "Write system calls (frames_sent / writes = frames per write).")),
      frames_received_(m.counter("troupe_transport_frames_received_total", {},
                                 "Frames decoded from peers.")),
      bytes_received_(m.counter("troupe_transport_bytes_received_total", {},
                                "Bytes read from peers.")),
      dropped_frames_(m.counter("troupe_transport_dropped_frames_total",
                                {{"reason", "connection_closed"}},
                                "Queued frames dropped because their connection closed.")),
      rejected_overloaded_(rejected_counter("overloaded")),
      rejected_unreachable_(rejected_counter("node_unreachable")),
      rejected_oversize_(rejected_counter("oversize")),
      rejected_stopping_(rejected_counter("shutting_down")) {
  }

  ~engine_impl() override { stop(std::chrono::milliseconds{500}); }

  expected<void> open() {
    boost::system::error_code ec;
    auto ip = asio::ip::make_address(settings_.host, ec);
    if (ec)
      return error{errc::invalid_config,
                   fmt::format("config key 'node.host': '{}' is not an IP address", settings_.host)};
    tcp::endpoint ep{ip, settings_.port};
    auto fail = [&](std::string_view what) {
      return error{errc::io_error, fmt::format("cannot listen on {}: {} failed: {}",
                                               node_address{settings_.host, settings_.port}
                                                 .to_string(),
                                               what, ec.message())};
    };
    if (acceptor_.open(ep.protocol(), ec); ec)
      return fail("open");
    if (acceptor_.set_option(tcp::acceptor::reuse_address(true), ec); ec)
      return fail("SO_REUSEADDR");
    if (acceptor_.bind(ep, ec); ec)
      return fail("bind");
    if (acceptor_.listen(asio::socket_base::max_listen_connections, ec); ec)
      return fail("listen");
    auto port = acceptor_.local_endpoint(ec).port();
    if (ec)
      return fail("getsockname");
    auto host = settings_.advertised_host.empty() ? settings_.host : settings_.advertised_host;
    identity_ = node_identity{node_address{host, port}, random_incarnation()};
    hs_settings_ = handshake_settings{identity_, settings_.cluster, settings_.secret,
                                      settings_.max_frame};
    accept_next();
    thread_ = std::thread{[this] { run(); }};
    log_.info("transport", "listening on {} as incarnation {:016x}", identity_.address.to_string(),
              identity_.incarnation);
    return {};
  }

  const node_identity& identity() const noexcept override { return identity_; }

  std::shared_ptr<peer_handle> peer(const node_address& address) override {
    return find_or_add_peer(address);
  }

  expected<void> send(peer_handle& h, wire::byte_span frame,
                      function_ref<void(conn_id)> on_accept) override;
  void connect(const node_address& address) override;
  void disconnect(const node_address& address) override;
  void resume_reading(conn_id id) override;
  std::vector<peer_info> peers() const override;
  void stop(duration bound) override;

  /// Sender threads: queues a response on an inbound connection's queue.
  expected<void> reply(send_queue& q, const std::weak_ptr<connection>& conn,
                       const node_identity& peer, wire::byte_span frame);

  /// Writes `frame` to the socket at once if the queue is idle and the sender is
  /// not streaming, else appends it if it fits. Precondition: q.mtx held and the
  /// queue accepts frames.
  admit_result admit_locked(send_queue& q, wire::byte_span frame);

private:
  counter_metric& rejected_counter(std::string_view reason) {
    return metrics_.counter("troupe_transport_send_rejected_total",
                            {{"reason", std::string{reason}}},
                            "Sends refused at the sender (the caller got the error).");
  }
  void count_connection_error(std::string_view reason) {
    metrics_
      .counter("troupe_transport_connection_errors_total", {{"reason", std::string{reason}}},
               "Connections refused or closed because of the named problem.")
      .inc();
  }

  void run();
  std::shared_ptr<peer_state> find_or_add_peer(const node_address& address);
  error rejected(counter_metric& c, errc code, std::string text) {
    c.inc();
    return error{code, std::move(text)};
  }

  // All below run on the I/O thread.
  void accept_next();
  void start_connect(const std::shared_ptr<peer_state>& p, conn_id id);
  void on_connected(const std::shared_ptr<connection>& c);
  void arm_handshake_deadline(const std::shared_ptr<connection>& c, std::string what);
  void arm_heartbeat(const std::shared_ptr<connection>& c);
  void on_heartbeat(connection& c);
  void start_read(const std::shared_ptr<connection>& c);
  void on_read(connection& c, std::size_t n);
  void on_frame(connection& c, wire::frame_view f);
  void on_handshake_frame(connection& c, wire::frame_view f);
  void established_outbound(connection& c);
  void established_inbound(connection& c);
  void on_established(peer_state& p, connection& c);
  void refuse(connection& c, std::string_view kind, const error& why);
  void protocol_failure(connection& c, std::string_view kind, const error& why);
  void flush(connection& c);
  void write_some(const std::shared_ptr<connection>& c);
  void on_written(connection& c, std::size_t n);
  void close(connection& c, const error& reason, close_kind kind);
  void peer_lost(peer_state& p, const connection& c, const error& reason, close_kind kind);
  void schedule_reconnect(const std::shared_ptr<peer_state>& p);
  void begin_connect(const std::shared_ptr<peer_state>& p);
  void begin_stop(duration bound);
  void publish(peer_state& p);
  void emit(peer_event::kind k, const node_identity& who, std::string reason = {},
            std::uint64_t previous = 0);

  engine_settings settings_;
  engine_sink& sink_;
  logger& log_;
  metrics_registry& metrics_;
  node_identity identity_;
  handshake_settings hs_settings_;

  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  tcp::acceptor acceptor_;
  tcp::resolver resolver_;
  asio::steady_timer stop_timer_;
  std::thread thread_;
  std::atomic<bool> stopping_{false};
  std::atomic<bool> stop_called_{false};
  std::atomic<conn_id> next_conn_{1};
  int pending_handshakes_ = 0;  // I/O thread

  mutable std::mutex peers_mtx_;
  std::unordered_map<std::string, std::shared_ptr<peer_state>> peers_;  // by "host:port"
  std::unordered_map<conn_id, std::shared_ptr<connection>> connections_;  // I/O thread

  counter_metric& frames_sent_;
  counter_metric& bytes_sent_;
  counter_metric& writes_;
  counter_metric& frames_received_;
  counter_metric& bytes_received_;
  counter_metric& dropped_frames_;
  counter_metric& rejected_overloaded_;
  counter_metric& rejected_unreachable_;
  counter_metric& rejected_oversize_;
  counter_metric& rejected_stopping_;

  friend class reply_channel_impl;
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

admit_result engine_impl::admit_locked(send_queue& q, wire::byte_span frame) {
  if (frame.size() > std::size_t{q.max_frame} + wire::length_size)
    return admit_result::oversize;
  if (q.pending.size() + q.inflight + frame.size() > q.capacity) {
    q.refused = true;
    return admit_result::overloaded;
  }
  // The clock is read only when the queue is idle, so a busy stream does not pay
  // for it per frame.
  bool idle = q.fd >= 0 && q.state == send_queue::st::open && !q.io_writing && q.pending.empty();
  bool lone = false;
  if (idle) {
    auto now = clock_type::now();
    lone = now - q.last_enqueue > direct_write_gap;
    q.last_enqueue = now;
  }
  if (lone) {
    auto n = ::send(q.fd, frame.data(), frame.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n > 0) {
      writes_.inc();
      bytes_sent_.inc(static_cast<std::uint64_t>(n));
      if (static_cast<std::size_t>(n) == frame.size()) {
        frames_sent_.inc();
        return admit_result::written;
      }
      frame = frame.subspan(static_cast<std::size_t>(n));
      q.pending_rest = true;
    }
    // A partial write, a full socket or an error: the I/O thread takes over (and
    // reports the error when it writes).
  }
  q.pending.insert(q.pending.end(), frame.begin(), frame.end());
  ++q.pending_frames;
  if (q.state == send_queue::st::open && !q.flush_posted) {
    q.flush_posted = true;
    return admit_result::queued_flush;
  }
  return admit_result::queued;
}

void engine_impl::run() {
  for (;;) {
    try {
      io_.run();
      return;
    } catch (const std::exception& ex) {
      // Handlers do not throw by contract; a bug must not take the node down.
      log_.error("transport", "I/O thread caught an exception (a bug): {}", ex.what());
    }
  }
}

std::shared_ptr<peer_state> engine_impl::find_or_add_peer(const node_address& address) {
  auto key = address.to_string();
  std::lock_guard<std::mutex> guard{peers_mtx_};
  auto& p = peers_[key];
  if (!p) {
    p = std::make_shared<peer_state>(address);
    std::lock_guard<std::mutex> qg{p->out.mtx};
    p->out.max_frame = settings_.max_frame;
    p->out.capacity = settings_.max_queue_bytes;
    if (stopping_.load())
      p->out.state = send_queue::st::closed;
  }
  return p;
}

// -- sending (any thread) ------------------------------------------------------------

expected<void> engine_impl::send(peer_handle& h, wire::byte_span frame,
                                 function_ref<void(conn_id)> on_accept) {
  auto& p = static_cast<peer_state&>(h);
  auto& q = p.out;
  bool do_connect = false;
  conn_id id = 0;
  admit_result admitted;
  {
    std::lock_guard<std::mutex> guard{q.mtx};
    using st = send_queue::st;
    if (frame.size() > std::size_t{q.max_frame} + wire::length_size)
      return rejected(rejected_oversize_, errc::oversize,
                      fmt::format("message of {} bytes to {} exceeds transport.max-frame-size "
                                  "({} bytes)",
                                  frame.size() - wire::length_size, p.addr.to_string(),
                                  q.max_frame));
    switch (q.state) {
      case st::closed:
        return rejected(rejected_stopping_, errc::shutting_down,
                        fmt::format("the transport is stopped; cannot send to {}",
                                    p.addr.to_string()));
      case st::backoff:
        return rejected(rejected_unreachable_, errc::node_unreachable,
                        fmt::format("peer {} is unreachable: {}", p.addr.to_string(),
                                    q.last_error));
      case st::draining:
        return rejected(rejected_unreachable_, errc::node_unreachable,
                        fmt::format("the connection to {} is closing", p.addr.to_string()));
      case st::idle:
        if (p.addr == identity_.address)
          return rejected(rejected_unreachable_, errc::node_unreachable,
                          fmt::format("{} is this node's own address", p.addr.to_string()));
        q.state = st::connecting;
        q.conn = next_conn_.fetch_add(1);
        do_connect = true;
        break;
      default:
        break;
    }
    id = q.conn;
    // on_accept runs only when the frame will be queued (see the contract).
    if (q.pending.size() + q.inflight + frame.size() <= q.capacity)
      on_accept(id);
    admitted = admit_locked(q, frame);
  }
  if (do_connect || admitted == admit_result::queued_flush) {
    asio::post(io_, [this, self = p.shared_from_this(), do_connect, id] {
      if (do_connect)
        start_connect(self, id);
      else if (self->outbound)
        flush(*self->outbound);
    });
  }
  if (admitted == admit_result::overloaded)
    return rejected(rejected_overloaded_, errc::overloaded,
                    fmt::format("the outbound queue to {} is full ({} bytes, "
                                "transport.max-queue-bytes); wait for the writable event",
                                p.addr.to_string(), settings_.max_queue_bytes));
  return {};
}

expected<void> engine_impl::reply(send_queue& q, const std::weak_ptr<connection>& conn,
                                  const node_identity& peer, wire::byte_span frame) {
  admit_result admitted;
  {
    std::lock_guard<std::mutex> guard{q.mtx};
    if (q.state != send_queue::st::open)
      return error{errc::node_unreachable,
                   fmt::format("the connection from {} closed; the response is dropped",
                               peer.to_string())};
    admitted = admit_locked(q, frame);
  }
  switch (admitted) {
    case admit_result::oversize:
      return error{errc::oversize,
                   fmt::format("response of {} bytes to {} exceeds transport.max-frame-size",
                               frame.size() - wire::length_size, peer.to_string())};
    case admit_result::overloaded:
      return error{errc::overloaded,
                   fmt::format("the response queue to {} is full", peer.to_string())};
    case admit_result::queued_flush:
      asio::post(io_, [this, conn] {
        if (auto c = conn.lock())
          flush(*c);
      });
      break;
    case admit_result::queued:
    case admit_result::written:
      break;
  }
  return {};
}

void engine_impl::connect(const node_address& address) {
  if (address == identity_.address)
    return;
  auto p = find_or_add_peer(address);
  p->wanted = true;
  asio::post(io_, [this, p] { begin_connect(p); });
}

void engine_impl::disconnect(const node_address& address) {
  auto p = find_or_add_peer(address);
  p->wanted = false;
  asio::post(io_, [this, p] {
    if (!p->outbound || p->outbound->closed)
      return;
    auto& c = *p->outbound;
    if (!c.established) {
      close(c, error{errc::node_unreachable, "disconnected by this node"},
            close_kind::local_disconnect);
      return;
    }
    // Frames already queued go out first, then the goodbye, then the close.
    {
      std::lock_guard<std::mutex> guard{c.q->mtx};
      c.q->state = send_queue::st::draining;
      wire::put_goodbye(c.q->pending, false, "disconnected by the peer");
      ++c.q->pending_frames;
    }
    c.close_after_write = true;
    c.close_reason = error{errc::node_unreachable, "disconnected by this node"};
    c.close_as = close_kind::local_disconnect;
    flush(c);
  });
}

std::vector<peer_info> engine_impl::peers() const {
  std::vector<peer_info> result;
  std::lock_guard<std::mutex> guard{peers_mtx_};
  for (auto& [key, p] : peers_) {
    if (p->addr == identity_.address)
      continue;  // sends to itself are delivered locally
    peer_info info;
    info.address = p->addr;
    info.wanted = p->wanted.load();
    std::lock_guard<std::mutex> qg{p->out.mtx};
    using st = send_queue::st;
    switch (p->out.state) {
      case st::connecting: info.outbound = peer_info::state::connecting; break;
      case st::open:
      case st::draining: info.outbound = peer_info::state::connected; break;
      case st::backoff: info.outbound = peer_info::state::backoff; break;
      default: info.outbound = peer_info::state::idle; break;
    }
    info.incarnation = p->out.incarnation;
    info.up = p->out.up;
    info.queued_bytes = p->out.pending.size() + p->out.inflight;
    info.queue_capacity = p->out.capacity;
    info.inbound_connections = p->out.inbound_count;
    info.last_error = p->out.last_error;
    result.push_back(std::move(info));
  }
  std::sort(result.begin(), result.end(),
            [](const peer_info& a, const peer_info& b) { return a.address < b.address; });
  return result;
}

void engine_impl::stop(duration bound) {
  if (stop_called_.exchange(true)) {
    if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id())
      thread_.join();
    return;
  }
  if (!thread_.joinable())
    return;
  asio::post(io_, [this, bound] { begin_stop(bound); });
  thread_.join();
  log_.debug("transport", "stopped");
}

void engine_impl::publish(peer_state& p) {
  std::lock_guard<std::mutex> guard{p.out.mtx};
  p.out.incarnation = p.incarnation;
  p.out.up = p.up;
  p.out.inbound_count = p.inbound.size();
}

void engine_impl::emit(peer_event::kind k, const node_identity& who, std::string reason,
                       std::uint64_t previous) {
  peer_event e;
  e.what = k;
  e.peer = who;
  e.reason = std::move(reason);
  e.previous_incarnation = previous;
  sink_.on_event(e);
}

// -- connecting (I/O thread) ----------------------------------------------------------

void engine_impl::begin_connect(const std::shared_ptr<peer_state>& p) {
  if (stopping_)
    return;
  conn_id id = 0;
  {
    std::lock_guard<std::mutex> guard{p->out.mtx};
    if (p->out.state != send_queue::st::idle)
      return;  // connecting, connected, or a backoff timer will reconnect
    p->out.state = send_queue::st::connecting;
    p->out.conn = id = next_conn_.fetch_add(1);
  }
  start_connect(p, id);
}

void engine_impl::start_connect(const std::shared_ptr<peer_state>& p, conn_id id) {
  if (stopping_)
    return;
  {
    std::lock_guard<std::mutex> guard{p->out.mtx};
    if (p->out.state != send_queue::st::connecting || p->out.conn != id)
      return;  // superseded
  }
  auto c = std::make_shared<connection>(id, true, tcp::socket{io_});
  c->owner = p;
  c->q = &p->out;
  c->remote = p->addr.to_string();
  c->hs.emplace(handshake::role::initiator, hs_settings_, random_nonce());
  p->outbound = c;
  connections_.emplace(c->id, c);
  arm_handshake_deadline(c, fmt::format("connecting to {}", p->addr.to_string()));
  auto connect_to = [this, c](const tcp::endpoint& ep) {
    c->sock.async_connect(ep, [this, c](const boost::system::error_code& ec) {
      if (c->closed)
        return;
      if (ec) {
        count_connection_error("connect_failed");
        close(*c,
              error{errc::node_unreachable,
                    fmt::format("cannot connect to {}: {}", c->remote, ec.message())},
              close_kind::failure);
        return;
      }
      on_connected(c);
    });
  };
  boost::system::error_code ec;
  auto ip = asio::ip::make_address(p->addr.host, ec);
  if (!ec) {
    connect_to(tcp::endpoint{ip, p->addr.port});
    return;
  }
  resolver_.async_resolve(
    p->addr.host, std::to_string(p->addr.port),
    [this, c, connect_to](const boost::system::error_code& rec, tcp::resolver::results_type rs) {
      if (c->closed)
        return;
      if (rec || rs.empty()) {
        count_connection_error("connect_failed");
        close(*c,
              error{errc::node_unreachable,
                    fmt::format("cannot resolve {}: {}", c->remote, rec.message())},
              close_kind::failure);
        return;
      }
      connect_to(rs.begin()->endpoint());
    });
}

void engine_impl::on_connected(const std::shared_ptr<connection>& c) {
  boost::system::error_code ec;
  c->sock.set_option(tcp::no_delay(true), ec);
  c->last_heard = clock_type::now();
  c->hs->start(c->control);
  flush(*c);
  start_read(c);
}

void engine_impl::arm_handshake_deadline(const std::shared_ptr<connection>& c, std::string what) {
  c->timer.expires_after(settings_.handshake_timeout);
  c->timer.async_wait([this, c, what = std::move(what)](const boost::system::error_code& ec) {
    if (ec || c->closed || c->established)
      return;
    count_connection_error("handshake_timeout");
    auto why = error{errc::node_unreachable,
                     fmt::format("{}: no handshake within {} (transport.handshake-timeout)",
                                 what, ms(settings_.handshake_timeout))};
    log_.warn("transport", "{}", why.message());
    close(*c, why, close_kind::failure);
  });
}

void engine_impl::accept_next() {
  acceptor_.async_accept([this](const boost::system::error_code& ec, tcp::socket s) {
    if (ec) {
      if (stopping_ || ec == asio::error::operation_aborted)
        return;
      log_.warn("transport", "accept failed: {}", ec.message());
      accept_next();
      return;
    }
    accept_next();
    if (pending_handshakes_ >= max_pending_handshakes) {
      count_connection_error("too_many_handshakes");
      log_.warn("transport", "refusing a connection: {} handshakes already pending",
                pending_handshakes_);
      return;  // `s` closes here
    }
    boost::system::error_code ignored;
    s.set_option(tcp::no_delay(true), ignored);
    auto remote = s.remote_endpoint(ignored);
    auto c = std::make_shared<connection>(next_conn_.fetch_add(1), false, std::move(s));
    c->remote = fmt::format("{}:{}", remote.address().to_string(), remote.port());
    c->own_queue = std::make_shared<send_queue>();
    c->own_queue->state = send_queue::st::connecting;
    c->own_queue->max_frame = settings_.max_frame;
    c->own_queue->capacity = settings_.max_queue_bytes;
    c->q = c->own_queue.get();
    c->hs.emplace(handshake::role::acceptor, hs_settings_, random_nonce());
    c->counted_handshake = true;
    ++pending_handshakes_;
    c->last_heard = clock_type::now();
    connections_.emplace(c->id, c);
    arm_handshake_deadline(c, fmt::format("connection from {}", c->remote));
    start_read(c);
  });
}

// -- reading (I/O thread) ---------------------------------------------------------------

void engine_impl::start_read(const std::shared_ptr<connection>& c) {
  if (c->closed)
    return;
  auto& b = c->rbuf;
  if (c->rbeg == c->rend) {
    c->rbeg = c->rend = 0;
  } else if (c->rbeg > 0) {
    std::memmove(b.data(), b.data() + c->rbeg, c->rend - c->rbeg);
    c->rend -= c->rbeg;
    c->rbeg = 0;
  }
  auto target = std::max(read_chunk, c->partial);
  if (b.size() < target)
    b.resize(target);
  else if (b.size() > 2 * target && c->rend <= target)
    wire::bytes(b.begin(), b.begin() + static_cast<std::ptrdiff_t>(target)).swap(b);
  c->sock.async_read_some(asio::buffer(b.data() + c->rend, b.size() - c->rend),
                          [this, c](const boost::system::error_code& ec, std::size_t n) {
                            if (c->closed)
                              return;
                            if (ec) {
                              auto why =
                                ec == asio::error::eof
                                  ? fmt::format("{} closed the connection", c->remote)
                                  : fmt::format("reading from {} failed: {}", c->remote,
                                                ec.message());
                              close(*c, error{errc::node_unreachable, why}, close_kind::failure);
                              return;
                            }
                            on_read(*c, n);
                            if (!c->read_paused)
                              start_read(c);
                          });
}

void engine_impl::resume_reading(conn_id id) {
  asio::post(io_, [this, id] {
    auto i = connections_.find(id);
    if (i == connections_.end() || !i->second->read_paused || i->second->closed)
      return;
    i->second->read_paused = false;
    start_read(i->second);
  });
}

void engine_impl::on_read(connection& c, std::size_t n) {
  c.rend += n;
  c.last_heard = clock_type::now();
  bytes_received_.inc(n);
  std::uint64_t frames = 0;
  // A closing connection (refused, or saying goodbye) reads no further frames.
  while (!c.closed && !c.close_after_write) {
    wire::frame_view f;
    std::size_t consumed = 0;
    error err;
    auto limit = c.established ? settings_.max_frame : wire::max_handshake_frame;
    auto st = wire::scan_frame({c.rbuf.data() + c.rbeg, c.rend - c.rbeg}, limit, f, consumed, err);
    if (st == wire::scan_status::error) {
      protocol_failure(c, err.code() == errc::oversize ? "oversize" : "malformed", err);
      break;
    }
    if (st == wire::scan_status::need_more) {
      c.partial = consumed;
      break;
    }
    c.partial = 0;
    c.current_raw = {c.rbuf.data() + c.rbeg, consumed};
    c.rbeg += consumed;
    ++frames;
    on_frame(c, f);
  }
  frames_received_.inc(frames);
  if (c.established && !c.closed && !sink_.on_read_done(c.id))
    c.read_paused = true;  // the sink resumes it (resume_reading)
}

void engine_impl::on_frame(connection& c, wire::frame_view f) {
  if (!c.established) {
    on_handshake_frame(c, f);
    return;
  }
  switch (f.type) {
    case frame_type::heartbeat:
      return;  // its arrival (last_heard) is the point
    case frame_type::goodbye: {
      auto bye = wire::decode_goodbye(f);
      if (!bye) {
        protocol_failure(c, "malformed", bye.error());
        return;
      }
      close(c,
            error{errc::node_unreachable,
                  fmt::format("{} closed the connection: {}", c.peer_id.to_string(), bye->reason)},
            bye->node_stopping ? close_kind::peer_stopping : close_kind::peer_disconnect);
      return;
    }
    case frame_type::message:
    case frame_type::request:
    case frame_type::response: {
      // Requests and one-way messages travel on the sender's outbound connection,
      // responses come back on it: anything else is a confused or hostile peer.
      if (c.outbound != (f.type == frame_type::response))
        break;
      auto r = sink_.on_frame(inbound_frame{c.id, c.outbound, c.peer_id, f, c.current_raw,
                                            c.outbound ? nullptr : &c.replies});
      if (!r)
        protocol_failure(c, "malformed", r.error());
      return;
    }
    default:
      break;
  }
  protocol_failure(c, "unexpected_frame",
                   error{errc::protocol_error,
                         fmt::format("unexpected {} frame (type {}) on an established {} "
                                     "connection",
                                     wire::to_string(f.type), static_cast<int>(f.type),
                                     c.outbound ? "outbound" : "inbound")});
}

void engine_impl::on_handshake_frame(connection& c, wire::frame_view f) {
  auto st = c.hs->on_frame(f, c.control);
  if (st == handshake::state::failed) {
    refuse(c, to_string(c.hs->failure_kind()), c.hs->failure());
    return;
  }
  if (st == handshake::state::established) {
    c.peer_id = c.hs->peer();
    if (c.outbound)
      established_outbound(c);
    else
      established_inbound(c);
  }
  flush(c);
}

void engine_impl::refuse(connection& c, std::string_view kind, const error& why) {
  count_connection_error(kind);
  auto text = fmt::format("handshake {} {} failed: {}", c.outbound ? "with" : "from", c.remote,
                          why.message());
  log_.warn("transport", "{}", text);
  auto reason = error{c.outbound ? errc::node_unreachable : why.code(), text};
  if (c.control.empty()) {
    close(c, reason, close_kind::failure);
    return;
  }
  // Tell the peer why (the refuse frame is in `control`), then close.
  c.close_after_write = true;
  c.close_reason = reason;
  c.close_as = close_kind::failure;
  flush(c);
}

void engine_impl::protocol_failure(connection& c, std::string_view kind, const error& why) {
  count_connection_error(kind);
  auto who = c.established ? c.peer_id.to_string() : c.remote;
  log_.warn("transport", "closing the connection {} {}: {}", c.outbound ? "to" : "from", who,
            why.message());
  close(c, error{errc::node_unreachable, fmt::format("protocol error from {}: {}", who,
                                                     why.message())},
        close_kind::failure);
}

void engine_impl::established_outbound(connection& c) {
  auto& p = *c.owner;
  {
    std::lock_guard<std::mutex> guard{p.out.mtx};
    p.out.state = send_queue::st::open;
    p.out.fd = c.sock.native_handle();
    p.out.max_frame = std::min(settings_.max_frame, c.hs->peer_max_frame());
    p.out.last_error.clear();
    // The queue filled while connecting; flush() below takes it. Until then the
    // auth frame is owed (in `control`): a frame sent from an `up` callback must
    // not be written directly ahead of it.
    p.out.flush_posted = true;
    p.out.io_writing = true;
  }
  p.attempts = 0;
  c.established = true;
  if (c.peer_id.address != p.addr)
    log_.info("transport", "peer at {} calls itself {}", p.addr.to_string(),
              c.peer_id.address.to_string());
  on_established(p, c);
  arm_heartbeat(c.shared_from_this());
}

void engine_impl::established_inbound(connection& c) {
  auto p = find_or_add_peer(c.peer_id.address);
  c.owner = p;
  {
    std::lock_guard<std::mutex> guard{c.own_queue->mtx};
    c.own_queue->state = send_queue::st::open;
    c.own_queue->fd = c.sock.native_handle();
    c.own_queue->max_frame = std::min(settings_.max_frame, c.hs->peer_max_frame());
    c.own_queue->io_writing = true;  // until flush() below, as for outbound
  }
  c.replies = std::make_shared<reply_channel_impl>(*this, c.own_queue, c.weak_from_this(),
                                                   c.peer_id);
  c.established = true;
  if (c.counted_handshake) {
    c.counted_handshake = false;
    --pending_handshakes_;
  }
  p->inbound.push_back(c.shared_from_this());
  on_established(*p, c);
  arm_heartbeat(c.shared_from_this());
}

void engine_impl::on_established(peer_state& p, connection& c) {
  metrics_
    .counter("troupe_transport_connections_total",
             {{"direction", c.outbound ? "outbound" : "inbound"}},
             "Connections that completed the handshake.")
    .inc();
  if (p.incarnation != 0 && p.incarnation != c.peer_id.incarnation) {
    auto previous = p.incarnation;
    if (p.up) {
      // The old incarnation is gone (its process was replaced): everything still
      // connected to it is stale.
      node_identity old{p.addr, previous};
      error why{errc::node_unreachable,
                fmt::format("{} was replaced by incarnation {:016x}", old.to_string(),
                            c.peer_id.incarnation)};
      p.up = false;
      log_.info("transport", "peer {} lost: {}", old.to_string(), why.message());
      emit(peer_event::kind::lost, old, why.message());
      auto stale = p.inbound;
      if (p.outbound)
        stale.push_back(p.outbound);
      for (auto& other : stale)
        if (other.get() != &c && other->established)
          close(*other, why, close_kind::collateral);
    }
    p.incarnation = c.peer_id.incarnation;
    log_.info("transport", "new incarnation at {}: {:016x} (was {:016x})", p.addr.to_string(),
              p.incarnation, previous);
    emit(peer_event::kind::new_incarnation, node_identity{p.addr, p.incarnation}, {}, previous);
  }
  p.incarnation = c.peer_id.incarnation;
  if (!p.up) {
    p.up = true;
    log_.info("transport", "peer {} is up", node_identity{p.addr, p.incarnation}.to_string());
    emit(peer_event::kind::up, node_identity{p.addr, p.incarnation});
  }
  publish(p);
}

// -- heartbeats (I/O thread) -------------------------------------------------------------

void engine_impl::arm_heartbeat(const std::shared_ptr<connection>& c) {
  if (settings_.heartbeat_interval <= duration{0})
    return;
  c->timer.expires_after(settings_.heartbeat_interval);
  c->timer.async_wait([this, c](const boost::system::error_code& ec) {
    if (ec || c->closed)
      return;
    on_heartbeat(*c);
    arm_heartbeat(c);
  });
}

void engine_impl::on_heartbeat(connection& c) {
  // Liveness is what arrives from the peer: both sides send heartbeats on every
  // connection, independently of their queues, so a live peer is heard even while
  // our own writes to it are backed up (and a stopped one is not, even while the
  // kernel still accepts our bytes).
  if (c.read_paused)
    c.last_heard = clock_type::now();  // not reading by choice: nothing to judge
  auto silent = clock_type::now() - c.last_heard;
  if (settings_.failure_timeout > duration{0} && silent > settings_.failure_timeout) {
    count_connection_error("heartbeat_timeout");
    auto why = fmt::format("no traffic from {} for {} (transport.failure-timeout)",
                           c.peer_id.to_string(),
                           ms(std::chrono::duration_cast<duration>(silent)));
    log_.warn("transport", "{}", why);
    close(c, error{errc::node_unreachable, why}, close_kind::failure);
    return;
  }
  wire::put_empty(c.control, frame_type::heartbeat);
  flush(c);
}

// -- writing (I/O thread) -----------------------------------------------------------------

void engine_impl::flush(connection& c) {
  if (c.writing || c.closed)
    return;
  bool data_first = false;
  {
    std::lock_guard<std::mutex> guard{c.q->mtx};
    using st = send_queue::st;
    auto st_now = c.q->state;
    if (c.established && (st_now == st::open || st_now == st::draining) && !c.q->pending.empty()) {
      c.w_data.swap(c.q->pending);
      c.q->inflight = c.w_data.size();
      c.w_frames = std::exchange(c.q->pending_frames, 0);
      data_first = std::exchange(c.q->pending_rest, false);
    }
    if (c.w_data.empty() && c.control.empty()) {
      c.q->flush_posted = false;
      c.q->io_writing = false;  // senders may write directly again
      if (c.close_after_write) {
        // Nothing left to say: close now (outside the lock, below).
      } else {
        return;
      }
    } else {
      // While a write is in flight its completion looks at the queue again.
      c.q->flush_posted = true;
      c.q->io_writing = true;
    }
  }
  if (c.w_data.empty() && c.control.empty()) {
    close(c, c.close_reason, c.close_as);
    return;
  }
  if (data_first) {
    // The socket ends in the middle of a frame: control frames go after its rest.
    c.w_data.insert(c.w_data.end(), c.control.begin(), c.control.end());
    c.control.clear();
  }
  c.w_control.swap(c.control);
  c.w_done = 0;
  c.writing = true;
  write_some(c.shared_from_this());
}

void engine_impl::write_some(const std::shared_ptr<connection>& c) {
  std::array<asio::const_buffer, 2> bufs;
  auto cs = c->w_control.size();
  if (c->w_done < cs) {
    bufs[0] = asio::buffer(c->w_control.data() + c->w_done, cs - c->w_done);
    bufs[1] = asio::buffer(c->w_data);
  } else {
    auto off = c->w_done - cs;
    bufs[0] = asio::buffer(c->w_data.data() + off, c->w_data.size() - off);
    bufs[1] = asio::const_buffer{};
  }
  c->sock.async_write_some(bufs, [this, c](const boost::system::error_code& ec, std::size_t n) {
    if (c->closed)
      return;
    if (ec) {
      close(*c,
            error{errc::node_unreachable,
                  fmt::format("writing to {} failed: {}",
                              c->established ? c->peer_id.to_string() : c->remote, ec.message())},
            close_kind::failure);
      return;
    }
    on_written(*c, n);
  });
}

void engine_impl::on_written(connection& c, std::size_t n) {
  writes_.inc();
  c.w_done += n;
  bytes_sent_.inc(n);
  if (c.w_done < c.w_control.size() + c.w_data.size()) {
    write_some(c.shared_from_this());
    return;
  }
  frames_sent_.inc(c.w_frames);
  c.w_frames = 0;
  c.writing = false;
  c.w_control.clear();
  if (c.w_data.capacity() > keep_buffer_limit)
    wire::bytes{}.swap(c.w_data);
  else
    c.w_data.clear();
  bool writable = false;
  {
    std::lock_guard<std::mutex> guard{c.q->mtx};
    c.q->inflight = 0;
    // io_writing stays set: flush() below clears it if nothing is left, so no
    // sender writes directly before a control frame queued meanwhile.
    if (c.q->refused && c.q->pending.size() <= c.q->capacity / 2) {
      c.q->refused = false;
      writable = true;
    }
  }
  if (writable && c.outbound && c.established)
    emit(peer_event::kind::writable, c.peer_id);
  flush(c);
}

// -- closing (I/O thread) -----------------------------------------------------------------

void engine_impl::close(connection& c, const error& reason, close_kind kind) {
  if (c.closed)
    return;
  c.closed = true;
  auto self = c.shared_from_this();  // keeps `c` alive through the bookkeeping below
  std::size_t dropped = 0;
  {
    std::lock_guard<std::mutex> guard{c.q->mtx};
    using st = send_queue::st;
    // Senders write to the socket directly under this lock: after it, none will.
    c.q->fd = -1;
    c.q->io_writing = false;
    c.q->pending_rest = false;
    dropped = c.q->pending_frames;
    c.q->pending.clear();
    c.q->pending_frames = 0;
    c.q->inflight = 0;
    c.q->flush_posted = false;
    c.q->refused = false;
    if (!c.outbound || stopping_)
      c.q->state = st::closed;
    else
      c.q->state = kind == close_kind::local_disconnect ? st::idle : st::backoff;
    if (c.outbound) {
      c.q->conn = 0;
      c.q->last_error = reason.message();
    }
  }
  boost::system::error_code ignored;
  c.sock.close(ignored);
  c.timer.cancel();
  if (c.counted_handshake) {
    c.counted_handshake = false;
    --pending_handshakes_;
  }
  dropped_frames_.inc(dropped);
  connections_.erase(c.id);
  sink_.on_closed(c.id, reason);
  if (auto p = c.owner) {
    if (c.outbound) {
      if (p->outbound.get() == &c)
        p->outbound.reset();
    } else {
      std::erase(p->inbound, self);
    }
    if (c.established)
      peer_lost(*p, c, reason, kind);
    publish(*p);
    if (c.outbound && !stopping_ && kind != close_kind::local_disconnect)
      schedule_reconnect(p);
  }
  if (stopping_ && connections_.empty())
    io_.stop();
}

void engine_impl::peer_lost(peer_state& p, const connection& c, const error& reason,
                            close_kind kind) {
  if (!p.up || p.incarnation != c.peer_id.incarnation || kind == close_kind::collateral)
    return;
  bool orderly = kind == close_kind::peer_disconnect || kind == close_kind::local_disconnect;
  if (orderly) {
    // Only this connection ended; the peer is still up while another one is.
    auto alive = std::any_of(p.inbound.begin(), p.inbound.end(),
                             [](auto& x) { return x->established; })
                 || (p.outbound && p.outbound->established);
    if (alive)
      return;
  }
  p.up = false;
  if (kind != close_kind::local_stop) {
    log_.info("transport", "peer {} lost: {}", c.peer_id.to_string(), reason.message());
    emit(peer_event::kind::lost, c.peer_id, reason.message());
  }
  if (orderly)
    return;
  // A failure of one connection means the incarnation is gone or unreachable:
  // close the others to it too, so their pending requests fail now.
  auto others = p.inbound;
  if (p.outbound)
    others.push_back(p.outbound);
  for (auto& other : others)
    if (other->established && other->peer_id.incarnation == c.peer_id.incarnation)
      close(*other, reason, close_kind::collateral);
}

void engine_impl::schedule_reconnect(const std::shared_ptr<peer_state>& p) {
  // Exponential backoff with +-20% jitter, capped at backoff_max.
  auto attempt = std::min(p->attempts++, 30);
  auto base = std::chrono::duration<double, std::nano>(settings_.backoff_min).count()
              * std::pow(2.0, attempt);
  base = std::min(base, std::chrono::duration<double, std::nano>(settings_.backoff_max).count());
  std::uint32_t r = 0;
  random_bytes(&r, sizeof(r));
  auto jitter = 0.8 + 0.4 * (r / 4294967296.0);
  auto delay = duration{static_cast<std::int64_t>(base * jitter)};
  if (!p->backoff_timer)
    p->backoff_timer.emplace(io_);
  p->backoff_timer->expires_after(delay);
  p->backoff_timer->async_wait([this, p](const boost::system::error_code& ec) {
    if (ec || stopping_)
      return;
    {
      std::lock_guard<std::mutex> guard{p->out.mtx};
      if (p->out.state == send_queue::st::backoff)
        p->out.state = send_queue::st::idle;
    }
    if (p->wanted)
      begin_connect(p);
  });
}

void engine_impl::begin_stop(duration bound) {
  stopping_ = true;
  boost::system::error_code ignored;
  acceptor_.close(ignored);
  resolver_.cancel();
  {
    std::lock_guard<std::mutex> guard{peers_mtx_};
    for (auto& [key, p] : peers_) {
      if (p->backoff_timer)
        p->backoff_timer->cancel();
      std::lock_guard<std::mutex> qg{p->out.mtx};
      if (p->out.state != send_queue::st::open)
        p->out.state = send_queue::st::closed;
    }
  }
  std::vector<std::shared_ptr<connection>> all;
  for (auto& [id, c] : connections_)
    all.push_back(c);
  error why{errc::shutting_down, "this node is shutting down"};
  for (auto& c : all) {
    if (!c->established) {
      close(*c, why, close_kind::local_stop);
      continue;
    }
    // Queued frames go out, then the goodbye, then the socket closes.
    {
      std::lock_guard<std::mutex> guard{c->q->mtx};
      c->q->state = send_queue::st::draining;
      wire::put_goodbye(c->q->pending, true, "node shutting down");
      ++c->q->pending_frames;
    }
    c->close_after_write = true;
    c->close_reason = why;
    c->close_as = close_kind::local_stop;
    flush(*c);
  }
  if (connections_.empty()) {
    io_.stop();
    return;
  }
  stop_timer_.expires_after(bound);
  stop_timer_.async_wait([this, why](const boost::system::error_code& ec) {
    if (ec)
      return;
    std::vector<std::shared_ptr<connection>> rest;
    for (auto& [id, c] : connections_)
      rest.push_back(c);
    for (auto& c : rest)
      close(*c, why, close_kind::local_stop);
    io_.stop();
  });
}

} // namespace

expected<std::unique_ptr<engine>> engine::start(engine_settings settings, engine_sink& sink,
                                                logger& log, metrics_registry& metrics) {
  auto e = std::make_unique<engine_impl>(std::move(settings), sink, log, metrics);
  if (auto r = e->open(); !r)
    return std::move(r).error();
  return std::unique_ptr<engine>{std::move(e)};
}

} // namespace troupe::remote::detail
