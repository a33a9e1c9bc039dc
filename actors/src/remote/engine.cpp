// The engine's lifecycle, its peers, quarantine, and how connections end.
#include "remote/engine_impl.hpp"
#include "troupe/actors/detail/scheduler_hints.hpp"

#include <algorithm>
#include <cmath>
#include <random>

#include <sched.h>
#include <sys/random.h>

namespace troupe::remote::detail {

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

namespace {

std::uint64_t random_incarnation() {
  std::uint64_t x = 0;
  while (x == 0)
    random_bytes(&x, sizeof(x));
  return x;
}

} // namespace

std::string ms(duration d) {
  return format_duration(std::chrono::duration_cast<std::chrono::milliseconds>(d));
}

engine_impl::engine_impl(engine_settings s, engine_sink& sink, logger& log, metrics_registry& m)
  : settings_(std::move(s)),
    sink_(sink),
    log_(log),
    metrics_(m),
    clock_(settings_.clock ? settings_.clock : steady_transport_clock()),
    work_(asio::make_work_guard(io_)),
    acceptor_(io_),
    resolver_(io_),
    stop_timer_(io_),
    accept_timer_(io_),
    frames_sent_(m.counter("troupe_transport_frames_sent_total", {},
                           "Frames handed to the kernel.")),
    bytes_sent_(m.counter("troupe_transport_bytes_sent_total", {},
                          "Bytes handed to the kernel.")),
    writes_(m.counter("troupe_transport_writes_total", {},
                      "Write system calls (frames_sent / writes = frames per write).")),
    direct_writes_(m.counter("troupe_transport_direct_writes_total", {},
                             "Frames a sender wrote to the socket itself (a lone frame on an "
                             "idle connection).")),
    frames_received_(m.counter("troupe_transport_frames_received_total", {},
                               "Frames decoded from peers.")),
    bytes_received_(m.counter("troupe_transport_bytes_received_total", {},
                              "Bytes read from peers.")),
    dropped_frames_(m.counter("troupe_transport_dropped_frames_total",
                              {{"reason", "connection_closed"}},
                              "Queued frames dropped because their connection closed.")),
    filter_dropped_(m.counter("troupe_transport_filtered_frames_total", {{"action", "drop"}},
                              "Frames a frame filter (fault injection) dropped or delayed.")),
    filter_delayed_(m.counter("troupe_transport_filtered_frames_total", {{"action", "delay"}},
                              "Frames a frame filter (fault injection) dropped or delayed.")),
    rejected_overloaded_(rejected_counter("overloaded")),
    rejected_unreachable_(rejected_counter("node_unreachable")),
    rejected_oversize_(rejected_counter("oversize")),
    rejected_stopping_(rejected_counter("shutting_down")),
    pending_gauge_(m.gauge("troupe_transport_pending_handshakes", {},
                           "Inbound connections still in their handshake "
                           "(transport.max-pending-handshakes).")),
    inbound_gauge_(m.gauge("troupe_transport_inbound_connections", {},
                           "Established inbound connections (transport.max-connections).")) {
  authenticated_ = !settings_.secret.empty() || settings_.tls != nullptr;
  if (settings_.filter)
    set_filter(settings_.filter);
}

counter_metric& engine_impl::rejected_counter(std::string_view reason) {
  return metrics_.counter("troupe_transport_send_rejected_total",
                          {{"reason", std::string{reason}}},
                          "Sends refused at the sender (the caller got the error).");
}

void engine_impl::count_connection_error(std::string_view reason) {
  metrics_
    .counter("troupe_transport_connection_errors_total", {{"reason", std::string{reason}}},
             "Connections refused or closed because of the named problem.")
    .inc();
}

void engine_impl::warn(std::string_view kind, const std::string& text) {
  std::uint64_t suppressed = 0;
  if (!warnings_.allow(kind, clock_->now(), suppressed))
    return;
  if (suppressed == 0)
    log_.warn("transport", "{}", text);
  else
    log_.warn("transport", "{} ({} more like it suppressed; at most {} per {} are logged)", text,
              suppressed, warn_burst, ms(warnings_.window()));
}

expected<void> engine_impl::open() {
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
  log_.info("transport", "listening on {} as incarnation {:016x}{}", identity_.address.to_string(),
            identity_.incarnation, settings_.tls ? " (TLS)" : "");
  return {};
}

void engine_impl::run() {
  for (;;) {
    try {
      run_handlers();
      return;
    } catch (const std::exception& ex) {
      // Handlers do not throw by contract; a bug must not take the node down.
      log_.error("transport", "I/O thread caught an exception (a bug): {}", ex.what());
    }
  }
}

/// After handling I/O, the thread keeps polling for more (without blocking) while
/// a scheduler worker spins for work, for up to io_spin_time: an actor that just
/// sent a request (or answered one) spins for the next message, and the frame that
/// brings it (a reply from another process comes back within a few tens of
/// microseconds) is then read and handed over without waking either thread, each
/// wake-up costing several microseconds of the round trip on a VM. Without a
/// spinning worker the answer goes to a sleeping thread (a blocking requester, a
/// detached actor, a sleeping worker) that a spinning I/O thread would only keep
/// from a core, so the thread blocks in epoll at once, as an idle transport does.
/// It yields the core between polls.
constexpr auto io_spin_time = std::chrono::microseconds{30};

void engine_impl::run_handlers() {
  using clock = std::chrono::steady_clock;
  while (io_.run_one() > 0) {
    auto deadline = clock::now() + io_spin_time;
    while (!io_.stopped()) {
      if (io_.poll() > 0) {
        deadline = clock::now() + io_spin_time;
        continue;
      }
      if (troupe::detail::spinning_workers().load(std::memory_order_relaxed) == 0
          || clock::now() >= deadline)
        break;
      sched_yield();
    }
  }
}

// -- peers ---------------------------------------------------------------------------------

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

std::shared_ptr<peer_state> engine_impl::find_peer(const node_address& address) const {
  std::lock_guard<std::mutex> guard{peers_mtx_};
  auto i = peers_.find(address.to_string());
  return i == peers_.end() ? nullptr : i->second;
}

void engine_impl::forget_if_unused(std::shared_ptr<peer_state> p) {
  // A peer only ever seen on inbound connections and referenced by nobody else is
  // forgotten once it has none: hellos claiming ever new addresses must not grow
  // the table without bound.
  if (p->outbound || !p->inbound.empty() || p->wanted)
    return;
  std::lock_guard<std::mutex> guard{peers_mtx_};
  auto i = peers_.find(p->addr.to_string());
  // The table's reference and ours: no handle, proxy or timer holds it.
  if (i == peers_.end() || i->second != p || p.use_count() > 2)
    return;
  std::lock_guard<std::mutex> qg{p->out.mtx};
  if (p->out.state != send_queue::st::idle || !p->out.quarantined.empty())
    return;
  peers_.erase(i);
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
    info.queued_bytes = p->out.pending.size() + p->out.inflight + p->out.wire_rest.size();
    info.queue_capacity = p->out.capacity;
    info.inbound_connections = p->out.inbound_count;
    info.last_error = p->out.last_error;
    result.push_back(std::move(info));
  }
  std::sort(result.begin(), result.end(),
            [](const peer_info& a, const peer_info& b) { return a.address < b.address; });
  return result;
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

void engine_impl::update_gauges() {
  pending_gauge_.set(static_cast<double>(pending_handshakes_));
  inbound_gauge_.set(static_cast<double>(inbound_established_));
}

// -- quarantine and filter -------------------------------------------------------------------

void engine_impl::quarantine(const node_identity& id, std::string reason) {
  if (id.incarnation == 0 || id == identity_)
    return;
  auto p = find_or_add_peer(id.address);
  {
    std::lock_guard<std::mutex> guard{p->out.mtx};
    if (p->out.quarantines(id.incarnation))
      return;
    p->out.quarantined.push_back(id.incarnation);
  }
  asio::post(io_, [this, p, id, reason = std::move(reason)] {
    error why{errc::node_unreachable,
              fmt::format("{} is quarantined: {}", id.to_string(), reason)};
    log_.info("transport", "{}", why.message());
    std::vector<std::shared_ptr<connection>> doomed;
    for (auto& [cid, c] : connections_)
      if (c->peer_id == id)
        doomed.push_back(c);
    for (auto& c : doomed)
      close(*c, why, close_kind::failure);
    emit(peer_event::kind::quarantined, id, reason);
  });
}

bool engine_impl::is_quarantined(const node_identity& id) const {
  auto p = find_peer(id.address);
  if (!p)
    return false;
  std::lock_guard<std::mutex> guard{p->out.mtx};
  return p->out.quarantines(id.incarnation);
}

void engine_impl::set_filter(std::shared_ptr<frame_filter> f) {
  filtering_.store(f != nullptr, std::memory_order_release);
  filter_.store(std::move(f), std::memory_order_release);
}

std::shared_ptr<frame_filter> engine_impl::current_filter() const {
  if (!filtering_.load(std::memory_order_acquire))
    return nullptr;
  return filter_.load(std::memory_order_acquire);
}

// -- closing (I/O thread) -------------------------------------------------------------------

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
    c.q->tls = nullptr;
    c.q->io_writing = false;
    c.q->held = false;
    c.q->wire_rest.clear();
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
  if (c.delay_timer)
    c.delay_timer->cancel();
  c.in_delayed.clear();
  c.out_delayed.clear();
  uncount(c);
  dropped_frames_.inc(dropped);
  connections_.erase(c.id);
  sink_.on_closed(c.id, reason);
  if (auto p = std::exchange(c.owner, nullptr)) {
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
    else if (!c.outbound)
      forget_if_unused(std::move(p));
  }
  if (stopping_ && connections_.empty())
    io_.stop();
}

void engine_impl::peer_lost(peer_state& p, const connection& c, const error& reason,
                            close_kind kind) {
  if (!p.up || p.incarnation != c.peer_id.incarnation || kind == close_kind::collateral)
    return;
  bool orderly = kind == close_kind::peer_disconnect || kind == close_kind::local_disconnect;
  // Without authentication an inbound connection proves nothing about the
  // incarnation it claims: its end is the end of that connection only, so a
  // stranger claiming a live peer's identity cannot take the peer down with it.
  bool alone = orderly || (!authenticated_ && !c.outbound);
  if (alone) {
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
  if (alone)
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

// -- stopping ------------------------------------------------------------------------------

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

void engine_impl::begin_stop(duration bound) {
  stopping_ = true;
  boost::system::error_code ignored;
  acceptor_.close(ignored);
  accept_timer_.cancel();
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

expected<std::unique_ptr<engine>> engine::start(engine_settings settings, engine_sink& sink,
                                                logger& log, metrics_registry& metrics) {
  auto e = std::make_unique<engine_impl>(std::move(settings), sink, log, metrics);
  if (auto r = e->open(); !r)
    return std::move(r).error();
  return std::unique_ptr<engine>{std::move(e)};
}

} // namespace troupe::remote::detail
