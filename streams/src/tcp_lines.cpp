// tcp_lines: a Boost.Asio server whose connections are read only while their
// buffers have room; the stream's island cuts the lines out of those buffers.
//
// Threads and data (line_sources.hpp states the contract):
//   - the I/O thread (one per running source, `io_`) owns the acceptor and the
//     sockets (`sockets_`, `scratch_`, `accepting_`, `next_id_`). It accepts
//     while fewer than max_connections are open, waits until a socket is
//     readable, and then reads without blocking at most the room its
//     connection's buffer and the server's total have, into the connection's
//     line_buffer. A connection without room is marked paused and not read (nor
//     waited on) until the island made room and posted resume_paused().
//   - the island (tcp_lines_stage::pull -> take) cuts lines out of the buffers,
//     connection by connection in turn, frees their bytes, and posts
//     resume_paused() to the I/O thread when a paused connection may go on.
//   - everything both touch (connections' buffers, the ready list, counters,
//     flags) is under `mtx_`; tcp_line_server reads the counters and calls stop()
//     from any thread.
// Why the total bound needs max_connections * (max_line_length + 2): a
// connection without a complete line holds at most max_line_length + 1 bytes
// (one more proves its line oversize), so while no line is complete the buffers
// hold less than the total and some connection can still read; the stream never
// waits for bytes the server refuses to read.
#include "troupe/streams/line_sources.hpp"

#include "line_buffer.hpp"
#include "troupe/streams/detail/lifeline.hpp"
#include "troupe/streams/sources.hpp"

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>

#include <algorithm>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

namespace troupe::streams::detail {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {

std::string to_text(const tcp::endpoint& ep) {
  auto a = ep.address();
  auto host = a.is_v6() ? "[" + a.to_string() + "]" : a.to_string();
  return host + ":" + std::to_string(ep.port());
}

/// The largest read from one socket at a time (the I/O thread's scratch buffer).
constexpr std::size_t max_read = 64 * 1024;

} // namespace

class tcp_line_hub {
public:
  explicit tcp_line_hub(tcp_lines_options o) : opts_(o) {
    scratch_.resize(std::min(opts_.connection_buffer, max_read));
  }

  tcp_line_hub(const tcp_line_hub&) = delete;
  tcp_line_hub& operator=(const tcp_line_hub&) = delete;

  // -- set-up (the creating thread, before any other thread sees the hub) --------

  error listen(const std::string& address, std::uint16_t port) {
    endpoint_ = address + ":" + std::to_string(port);
    boost::system::error_code ec;
    auto ip = asio::ip::make_address(address, ec);
    if (ec)
      return error{errc::invalid_argument,
                   "tcp_lines " + endpoint_ + ": '" + address + "' is not a numeric IP address"};
    tcp::endpoint ep{ip, port};
    endpoint_ = to_text(ep);
    if (auto e = check_options())
      return e;
    auto failed = [&](const char* what) {
      return error{errc::io_error, "tcp_lines " + endpoint_ + ": " + what + ": " + ec.message()};
    };
    acceptor_.open(ep.protocol(), ec);
    if (ec)
      return failed("cannot open a socket");
    acceptor_.set_option(tcp::acceptor::reuse_address(true), ec);
    acceptor_.bind(ep, ec);
    if (ec)
      return failed("cannot bind");
    acceptor_.listen(asio::socket_base::max_listen_connections, ec);
    if (ec)
      return failed("cannot listen");
    port_ = acceptor_.local_endpoint(ec).port();
    endpoint_ = to_text(tcp::endpoint{ip, port_});
    return {};
  }

  std::uint16_t port() const noexcept { return port_; }
  const std::string& endpoint() const noexcept { return endpoint_; }

  // -- the stage's life (the island) -------------------------------------------------

  /// The first materialization claims the hub; later ones are refused.
  bool claim() {
    std::lock_guard<std::mutex> lock{mtx_};
    return !std::exchange(materialized_, true);
  }

  /// Installs the island's wake-up and queues the first accept; false when the
  /// server was stopped before the stream started (then no I/O thread runs).
  bool attach(std::function<void()> wake) {
    std::lock_guard<std::mutex> lock{mtx_};
    if (stopped_)
      return false;
    wake_ = std::move(wake);
    started_ = true;
    asio::post(io_, [this] { start_accept(); });
    return true;
  }

  void detach() {
    std::lock_guard<std::mutex> lock{mtx_};
    wake_ = nullptr;
  }

  /// The I/O thread's body; returns once close_all() ran.
  void run_io() { io_.run(); }

  /// Stops accepting and reading and closes the listener and the connections;
  /// `drop`: the bytes received are dropped too (the stream was cancelled), else
  /// the stream still gets the lines received in full. Any thread.
  void stop(bool drop) {
    bool posted = false;
    bool here = false;
    std::function<void()> wake;
    {
      std::lock_guard<std::mutex> lock{mtx_};
      if (drop) {
        conns_.clear();
        ready_.clear();
        buffered_ = 0;
        paused_count_ = 0;
      }
      if (!stopped_) {
        stopped_ = true;
        posted = started_;
        here = !started_;
        wake = notify_locked();
      }
    }
    if (posted)
      asio::post(io_, [this] {
        close_all();
        io_.stop();
      });
    if (here) {  // no I/O thread runs, and none will (attach sees stopped_)
      boost::system::error_code ignored;
      acceptor_.close(ignored);
    }
    if (wake)
      wake();
  }

  /// Cuts at most `max` lines into `out`, connection by connection in turn.
  pull_status take(std::vector<tcp_line>& out, std::size_t max, error& failure) {
    std::vector<std::uint64_t> to_close;
    bool resume = false;
    std::size_t emitted = 0;
    {
      std::lock_guard<std::mutex> lock{mtx_};
      if (failure_) {
        failure = failure_;
        return pull_status::failed;
      }
      std::size_t freed = 0;
      std::string line;
      while (emitted < max && !ready_.empty()) {
        auto id = ready_.front();
        ready_.pop_front();
        auto it = conns_.find(id);
        if (it == conns_.end())
          continue;
        auto& c = it->second;
        c.listed = false;
        std::size_t used = 0;
        auto r = c.buf.next(line, used);
        if (r == line_buffer::result::oversize) {
          if (opts_.on_oversize == oversize_line::fail) {
            failure_ = oversize_error(id, c);
            failure = failure_;
            return pull_status::failed;
          }
          ++stats_.closed_oversize;
          to_close.push_back(id);
          freed += erase(it);
          continue;
        }
        if (r == line_buffer::result::need_more) {
          if (!c.ended)
            continue;  // listed before its bytes were taken: nothing to do now
          if (c.clean && !c.buf.empty()) {  // the last line, without a newline
            auto n = c.buf.take_rest(line);
            buffered_ -= n;
            freed += n;
            out.push_back(tcp_line{std::move(line), id, ++c.lines});
            ++emitted;
          }
          freed += erase(it);
          continue;
        }
        buffered_ -= used;
        freed += used;
        out.push_back(tcp_line{std::move(line), id, ++c.lines});
        ++emitted;
        if (c.ended || c.buf.has_line())
          list(id, c);
      }
      stats_.lines += emitted;
      if (freed > 0 && paused_count_ > 0 && !resume_posted_ && !stopped_)
        resume = resume_posted_ = true;
      if (emitted == 0) {
        if (stopped_)
          return pull_status::done;
        waiting_ = true;
      }
    }
    if (resume)
      asio::post(io_, [this] { resume_paused(); });
    if (!to_close.empty())
      asio::post(io_, [this, ids = std::move(to_close)] {
        for (auto id : ids)
          drop_socket(id);
      });
    return emitted > 0 ? pull_status::ready : pull_status::pending;
  }

  tcp_line_stats stats() const {
    std::lock_guard<std::mutex> lock{mtx_};
    auto s = stats_;
    s.buffered_bytes = buffered_;
    return s;
  }

private:
  struct connection {
    line_buffer buf;
    std::string peer;
    std::uint64_t lines = 0;  ///< lines emitted
    bool listed = false;      ///< in ready_
    bool paused = false;      ///< not read until resume_paused() finds room
    bool ended = false;       ///< the socket is closed: emit what is left, then erase
    bool clean = false;       ///< ended by the client's close (not a reset)
  };
  using conn_map = std::map<std::uint64_t, connection>;

  error check_options() const {
    auto bad = [&](const std::string& what) {
      return error{errc::invalid_argument, "tcp_lines " + endpoint_ + ": " + what};
    };
    const auto line = opts_.max_line_length + 2;
    if (opts_.max_connections == 0)
      return bad("max_connections must be at least 1");
    if (opts_.connection_buffer < line)
      return bad("connection_buffer (" + std::to_string(opts_.connection_buffer)
                 + ") must be at least max_line_length + 2 (" + std::to_string(line) + ")");
    if (opts_.max_buffered_bytes / line < opts_.max_connections)
      return bad("max_buffered_bytes (" + std::to_string(opts_.max_buffered_bytes)
                 + ") must be at least max_connections * (max_line_length + 2) ("
                 + std::to_string(opts_.max_connections) + " * " + std::to_string(line) + ")");
    return {};
  }

  error oversize_error(std::uint64_t id, const connection& c) const {
    return error{errc::oversize, "tcp_lines " + endpoint_ + ": connection " + std::to_string(id) + " from "
                                   + c.peer + ": line " + std::to_string(c.lines + 1)
                                   + " is longer than max_line_length ("
                                   + std::to_string(opts_.max_line_length) + " bytes)"};
  }

  // -- shared state helpers (mtx_ held) ---------------------------------------------

  /// The island's wake-up if it waits for news (it pulls again once woken).
  std::function<void()> notify_locked() {
    if (!waiting_ || !wake_)
      return {};
    waiting_ = false;
    return wake_;
  }

  void list(std::uint64_t id, connection& c) {
    c.listed = true;
    ready_.push_back(id);
  }

  /// Erases a connection's state; returns the bytes it freed.
  std::size_t erase(conn_map::iterator it) {
    auto n = it->second.buf.size();
    buffered_ -= n;
    if (it->second.paused)
      --paused_count_;
    conns_.erase(it);
    return n;
  }

  std::size_t room(const connection& c) const {
    return std::min({opts_.connection_buffer - c.buf.size(), opts_.max_buffered_bytes - buffered_,
                     scratch_.size()});
  }

  // -- the I/O thread ------------------------------------------------------------------

  void start_accept() {
    {
      std::lock_guard<std::mutex> lock{mtx_};
      if (stopped_ || failure_)
        return;
    }
    if (accepting_ || sockets_.size() >= opts_.max_connections)
      return;  // drop_socket() accepts again when a connection closes
    accepting_ = true;
    acceptor_.async_accept([this](const boost::system::error_code& ec, tcp::socket s) {
      accepting_ = false;
      on_accept(ec, std::move(s));
    });
  }

  void on_accept(const boost::system::error_code& ec, tcp::socket s) {
    if (ec == asio::error::operation_aborted)
      return;
    if (ec == asio::error::connection_aborted) {  // the client left before we accepted
      start_accept();
      return;
    }
    if (ec) {
      fail(error{errc::io_error, "tcp_lines " + endpoint_ + ": accept failed: " + ec.message()});
      return;
    }
    boost::system::error_code ignored;
    s.non_blocking(true, ignored);
    auto peer = to_text(s.remote_endpoint(ignored));
    auto id = ++next_id_;
    {
      std::lock_guard<std::mutex> lock{mtx_};
      if (stopped_)
        return;  // s closes here
      conns_.emplace(id, connection{line_buffer{opts_.max_line_length}, std::move(peer)});
      ++stats_.accepted;
      stats_.open = sockets_.size() + 1;
    }
    sockets_.emplace(id, std::make_unique<tcp::socket>(std::move(s)));
    wait_readable(id);
    start_accept();
  }

  void wait_readable(std::uint64_t id) {
    auto it = sockets_.find(id);
    if (it == sockets_.end())
      return;
    it->second->async_wait(tcp::socket::wait_read,
                           [this, id](const boost::system::error_code& ec) { on_readable(id, ec); });
  }

  void on_readable(std::uint64_t id, const boost::system::error_code& ec) {
    auto it = sockets_.find(id);
    if (it == sockets_.end() || ec == asio::error::operation_aborted)
      return;
    if (ec) {
      end_connection(id, false);
      return;
    }
    std::size_t n = 0;
    {
      std::lock_guard<std::mutex> lock{mtx_};
      auto c = conns_.find(id);
      if (stopped_ || c == conns_.end())
        return;  // stopping, or the island dropped it (its socket closes next)
      n = room(c->second);
      if (n == 0) {
        c->second.paused = true;
        ++paused_count_;
        ++stats_.paused_reads;
        return;
      }
    }
    // Only this thread adds bytes: the room can only have grown meanwhile.
    boost::system::error_code rec;
    n = it->second->read_some(asio::buffer(scratch_.data(), n), rec);
    if (rec == asio::error::would_block || rec == asio::error::try_again) {
      wait_readable(id);
      return;
    }
    if (rec) {
      end_connection(id, rec == asio::error::eof);
      return;
    }
    if (!received(id, n))
      return;
    wait_readable(id);
  }

  /// Appends n bytes of scratch_ to the connection; false when it is gone.
  bool received(std::uint64_t id, std::size_t n) {
    std::function<void()> wake;
    {
      std::lock_guard<std::mutex> lock{mtx_};
      auto it = conns_.find(id);
      if (stopped_ || it == conns_.end())
        return false;
      auto& c = it->second;
      c.buf.append(scratch_.data(), n);
      buffered_ += n;
      stats_.received_bytes += n;
      stats_.max_buffered_bytes = std::max(stats_.max_buffered_bytes, buffered_);
      stats_.max_connection_buffered = std::max(stats_.max_connection_buffered, c.buf.size());
      if (!c.listed && c.buf.has_line()) {
        list(id, c);
        wake = notify_locked();
      }
    }
    if (wake)
      wake();
    return true;
  }

  /// The client closed (clean) or reset the connection.
  void end_connection(std::uint64_t id, bool clean) {
    drop_socket(id);
    std::function<void()> wake;
    {
      std::lock_guard<std::mutex> lock{mtx_};
      auto it = conns_.find(id);
      if (it == conns_.end())
        return;
      auto& c = it->second;
      c.ended = true;
      c.clean = clean;
      if (c.buf.empty()) {
        erase(it);
        return;
      }
      if (!c.listed)
        list(id, c);
      wake = notify_locked();
    }
    if (wake)
      wake();
  }

  void drop_socket(std::uint64_t id) {
    auto it = sockets_.find(id);
    if (it == sockets_.end())
      return;
    boost::system::error_code ignored;
    it->second->close(ignored);
    sockets_.erase(it);
    {
      std::lock_guard<std::mutex> lock{mtx_};
      stats_.open = sockets_.size();
    }
    start_accept();
  }

  void resume_paused() {
    std::vector<std::uint64_t> ids;
    {
      std::lock_guard<std::mutex> lock{mtx_};
      resume_posted_ = false;
      if (stopped_)
        return;
      for (auto& [id, c] : conns_)
        if (c.paused && room(c) > 0) {
          c.paused = false;
          --paused_count_;
          ids.push_back(id);
        }
    }
    for (auto id : ids)
      wait_readable(id);
  }

  void fail(error e) {
    std::function<void()> wake;
    {
      std::lock_guard<std::mutex> lock{mtx_};
      if (!failure_)
        failure_ = std::move(e);
      wake = notify_locked();
    }
    if (wake)
      wake();
  }

  void close_all() {
    boost::system::error_code ignored;
    acceptor_.close(ignored);
    for (auto& [id, s] : sockets_)
      s->close(ignored);
    sockets_.clear();
    std::lock_guard<std::mutex> lock{mtx_};
    stats_.open = 0;
  }

  // Immutable once listen() returned.
  const tcp_lines_options opts_;
  std::string endpoint_;
  std::uint16_t port_ = 0;

  // The I/O thread's (and the creating thread's before the I/O thread starts).
  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_{io_.get_executor()};
  tcp::acceptor acceptor_{io_};
  std::unordered_map<std::uint64_t, std::unique_ptr<tcp::socket>> sockets_;
  std::vector<char> scratch_;
  bool accepting_ = false;
  std::uint64_t next_id_ = 0;

  // Shared, under mtx_.
  mutable std::mutex mtx_;
  conn_map conns_;
  std::deque<std::uint64_t> ready_;  ///< connections with a line (or an end) to emit
  std::size_t buffered_ = 0;
  std::size_t paused_count_ = 0;
  bool resume_posted_ = false;
  bool waiting_ = false;  ///< the island found nothing and waits for wake_
  std::function<void()> wake_;
  bool materialized_ = false;
  bool started_ = false;  ///< an I/O thread runs (or is about to)
  bool stopped_ = false;  ///< stop(): no more accepts or reads
  error failure_;
  tcp_line_stats stats_;
};

namespace {

class tcp_lines_stage final : public outlet<tcp_line> {
public:
  tcp_lines_stage(island_context& ctx, std::shared_ptr<tcp_line_hub> hub)
    : ctx_(ctx), name_(ctx.stage_name("tcp_lines")), hub_(std::move(hub)) {
    auto post = ctx.poster();
    auto wake = [post, guard = life_.token(), &ctx] {
      post([guard, &ctx] {
        if (guard.lock())
          ctx.wake();
      });
    };
    if (hub_->attach(std::move(wake)))
      thread_ = std::thread{[hub = hub_.get()] { hub->run_io(); }};
  }
  ~tcp_lines_stage() override {
    hub_->stop(true);
    hub_->detach();
    if (thread_.joinable())
      thread_.join();
  }

  pull_status pull(std::vector<tcp_line>& out, std::size_t max) override {
    error e;
    auto st = hub_->take(out, max, e);
    if (st != pull_status::failed)
      return st;
    hub_->stop(true);
    return fail_with(stage_error(ctx_, name_, e));
  }
  void cancel() override { hub_->stop(true); }

private:
  island_context& ctx_;
  std::string name_;
  std::shared_ptr<tcp_line_hub> hub_;
  lifeline life_;
  std::thread thread_;
};

} // namespace

} // namespace troupe::streams::detail

namespace troupe::streams {

std::uint16_t tcp_line_server::port() const noexcept {
  return hub_->port();
}

const std::string& tcp_line_server::endpoint() const noexcept {
  return hub_->endpoint();
}

void tcp_line_server::stop() const {
  hub_->stop(false);
}

tcp_line_stats tcp_line_server::stats() const {
  return hub_->stats();
}

expected<std::pair<source<tcp_line>, tcp_line_server>>
tcp_lines(const std::string& address, std::uint16_t port, tcp_lines_options opts) {
  auto hub = std::make_shared<detail::tcp_line_hub>(opts);
  if (auto e = hub->listen(address, port))
    return e;
  source<tcp_line> src{[hub](detail::island_context& ctx) -> detail::outlet_ptr<tcp_line> {
    if (!hub->claim())
      return failed<tcp_line>(error{errc::invalid_argument,
                                    "tcp_lines " + hub->endpoint()
                                      + ": this server already fed a stream; a tcp_lines source runs once"})
        .build(ctx);
    return std::make_unique<detail::tcp_lines_stage>(ctx, hub);
  }};
  return std::pair{std::move(src), tcp_line_server{hub}};
}

} // namespace troupe::streams
