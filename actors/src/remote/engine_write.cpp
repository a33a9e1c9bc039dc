// Sending: senders' frames into the bounded queues (or straight to the socket), the
// I/O thread's batched writes, TLS sealing, and the frames a filter delays.
#include "remote/engine_impl.hpp"

#include <array>

#include <sys/socket.h>

namespace troupe::remote::detail {

namespace {

/// Clears a buffer, releasing it if a burst made it large.
void reset(wire::bytes& b) {
  if (b.capacity() > keep_buffer_limit)
    wire::bytes{}.swap(b);
  else
    b.clear();
}

} // namespace

// -- sending (any thread) ------------------------------------------------------------------

engine_impl::direct engine_impl::write_directly(send_queue& q, wire::byte_span frame) {
  auto out = frame;
  if (q.tls != nullptr) {
    // Sealed under the session's lock; the records leave in sealing order because
    // only one writer (this sender, under q.mtx, while the I/O thread is idle)
    // touches the socket now.
    auto& sealed = thread_buffer<thread_slot::sealed>();
    if (!q.tls->encrypt(frame, sealed))
      return direct::none;  // the I/O thread meets the same error and closes
    out = sealed;
  }
  auto n = ::send(q.fd, out.data(), out.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
  auto sent = n > 0 ? static_cast<std::size_t>(n) : 0;
  if (sent > 0) {
    writes_.inc();
    bytes_sent_.inc(sent);
  }
  if (sent == out.size()) {
    frames_sent_.inc();
    direct_writes_.inc();
    return direct::all;
  }
  if (sent == 0 && q.tls == nullptr)
    return direct::none;  // a full socket or an error: the I/O thread takes over
  // A partial write (or sealed records the socket did not take): the rest goes
  // first when the I/O thread writes next (and reports an error if there is one).
  q.wire_rest.assign(out.begin() + static_cast<std::ptrdiff_t>(sent), out.end());
  frames_sent_.inc();
  direct_writes_.inc();
  return direct::part;
}

admit_result engine_impl::admit_locked(send_queue& q, wire::byte_span frame) {
  if (frame.size() > std::size_t{q.max_frame} + wire::length_size)
    return admit_result::oversize;
  if (!q.fits(frame.size())) {
    q.refused = true;
    return admit_result::overloaded;
  }
  // The clock is read only when the queue is idle, so a busy stream does not pay
  // for it per frame. With a filter installed every frame goes through the I/O
  // thread, where the filter sees it.
  bool idle = q.fd >= 0 && q.state == send_queue::st::open && !q.io_writing && !q.held
              && q.pending.empty() && q.wire_rest.empty()
              && !filtering_.load(std::memory_order_relaxed);
  if (idle) {
    auto now = clock_->now();
    bool lone = now - q.last_enqueue > direct_write_gap;
    q.last_enqueue = now;
    if (lone) {
      switch (write_directly(q, frame)) {
        case direct::all: return admit_result::written;
        case direct::part:
          q.flush_posted = true;
          return admit_result::queued_flush;
        case direct::none: break;
      }
    }
  }
  q.pending.insert(q.pending.end(), frame.begin(), frame.end());
  ++q.pending_frames;
  if (q.state == send_queue::st::open && !q.flush_posted) {
    q.flush_posted = true;
    return admit_result::queued_flush;
  }
  return admit_result::queued;
}

expected<void> engine_impl::send(peer_handle& h, wire::byte_span frame,
                                 function_ref<void(conn_id)> on_accept,
                                 std::uint64_t incarnation) {
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
    if (incarnation != 0) {
      node_identity target{p.addr, incarnation};
      if (q.quarantines(incarnation))
        return rejected(rejected_unreachable_, errc::node_unreachable,
                        fmt::format("{} is quarantined", target.to_string()));
      if (q.incarnation != 0 && q.incarnation != incarnation)
        return rejected(rejected_unreachable_, errc::node_unreachable,
                        fmt::format("{} is gone: {} runs incarnation {:016x} now",
                                    target.to_string(), p.addr.to_string(), q.incarnation));
    }
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
    if (q.fits(frame.size()))
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

// -- writing (I/O thread) ------------------------------------------------------------------

void engine_impl::flush(connection& c) {
  while (!c.writing && !c.closed) {
    bool anything = false;
    {
      std::lock_guard<std::mutex> guard{c.q->mtx};
      auto& q = *c.q;
      using st = send_queue::st;
      if (c.established && (q.state == st::open || q.state == st::draining)) {
        c.w_rest.swap(q.wire_rest);  // the rest of a sender's frame goes first
        if (!q.pending.empty()) {
          c.w_data.swap(q.pending);
          c.w_frames = std::exchange(q.pending_frames, 0);
        }
        q.inflight = c.w_rest.size() + c.w_data.size();
      }
      // Frames travel inside TLS, once it is up.
      bool control_ready = !c.tls || c.tls_ready;
      anything = !c.w_rest.empty() || !c.w_data.empty() || (control_ready && !c.control.empty())
                 || !c.raw_out.empty() || !c.released.empty();
      // While a write is in flight its completion looks at the queue again, and
      // senders do not write directly; nothing to write hands the socket back.
      q.flush_posted = anything;
      q.io_writing = anything;
    }
    if (!anything) {
      if (c.close_after_write)
        close(c, c.close_reason, c.close_as);
      return;
    }
    if (!c.raw_out.empty()) {
      // TLS handshake bytes: before everything (a sender's rest cannot exist yet).
      c.raw_out.insert(c.raw_out.end(), c.w_rest.begin(), c.w_rest.end());
      c.w_rest.swap(c.raw_out);
      c.raw_out.clear();
    }
    if (!c.tls || c.tls_ready)
      c.w_control.swap(c.control);
    auto f = current_filter();
    if (f || !c.out_delayed.empty() || !c.released.empty())
      filter_outgoing(c, f.get());
    if (c.tls && (!c.w_control.empty() || !c.w_data.empty())) {
      auto sealed = c.tls->encrypt(c.w_control, c.w_cipher);
      if (sealed)
        sealed = c.tls->encrypt(c.w_data, c.w_cipher);
      c.w_control.clear();
      c.w_data.clear();
      if (!sealed) {
        protocol_failure(c, "tls", sealed.error());
        return;
      }
    }
    if (!c.w_rest.empty() || !c.w_control.empty() || !c.w_data.empty() || !c.w_cipher.empty()) {
      c.w_done = 0;
      c.writing = true;
      write_some(c.shared_from_this());
      return;
    }
    // The filter dropped or delayed all of it: look again (senders may have
    // queued meanwhile), or hand the socket back.
    std::lock_guard<std::mutex> guard{c.q->mtx};
    c.q->inflight = 0;
  }
}

void engine_impl::write_some(const std::shared_ptr<connection>& c) {
  std::array<asio::const_buffer, 4> bufs;
  std::size_t k = 0;
  auto skip = c->w_done;
  auto add = [&](const wire::bytes& b) {
    if (skip >= b.size()) {
      skip -= b.size();
      return;
    }
    bufs[k++] = asio::buffer(b.data() + skip, b.size() - skip);
    skip = 0;
  };
  // With TLS the frames are in w_cipher (w_control and w_data are empty), else
  // w_cipher is empty.
  add(c->w_rest);
  add(c->w_cipher);
  add(c->w_control);
  add(c->w_data);
  c->sock.async_write_some(bufs, [this, c](const boost::system::error_code& ec, std::size_t n) {
    if (c->closed)
      return;
    if (ec) {
      close(*c,
            error{errc::node_unreachable,
                  fmt::format("writing to {} failed: {}", c->who(), ec.message())},
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
  auto total = c.w_rest.size() + c.w_control.size() + c.w_data.size() + c.w_cipher.size();
  if (c.w_done < total) {
    write_some(c.shared_from_this());
    return;
  }
  frames_sent_.inc(c.w_frames);
  c.w_frames = 0;
  c.writing = false;
  c.w_rest.clear();
  c.w_control.clear();
  reset(c.w_data);
  reset(c.w_cipher);
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

// -- the filter (I/O thread) ---------------------------------------------------------------

void engine_impl::filter_outgoing(connection& c, frame_filter* f) {
  auto now = clock_->now();
  wire::bytes out;
  out.swap(c.released);  // delayed frames whose time came: first, and filtered already
  auto handle = [&](wire::byte_span frame) {
    auto v = judge(f, frame_direction::outgoing, c, frame);
    if (v.what != filter_verdict::action::drop && !hold(c.out_delayed, v, now, frame))
      out.insert(out.end(), frame.begin(), frame.end());
  };
  wire::for_each_frame(c.w_control, handle);
  wire::for_each_frame(c.w_data, handle);
  c.w_control.clear();
  c.w_data.swap(out);
  if (!c.out_delayed.empty()) {
    {
      std::lock_guard<std::mutex> guard{c.q->mtx};
      c.q->held = true;
    }
    arm_delay_timer(c.shared_from_this());
  }
}

filter_verdict engine_impl::judge(frame_filter* f, frame_direction d, const connection& c,
                                  wire::byte_span frame) {
  if (f == nullptr)
    return filter_verdict::pass();  // frames wait behind delayed ones still held
  auto v = f->check(frame_info{d, c.peer_id, c.outbound, wire::type_of(frame), frame});
  if (v.what == filter_verdict::action::drop)
    filter_dropped_.inc();
  return v;
}

bool engine_impl::hold(std::deque<delayed_frame>& held, const filter_verdict& v, time_point now,
                       wire::byte_span frame) {
  bool delayed = v.what == filter_verdict::action::delay;
  if (!delayed && held.empty())
    return false;
  // Everything behind a delayed frame waits for it: the order stays TCP's.
  if (delayed)
    filter_delayed_.inc();
  auto due = now + (delayed ? v.delay : duration{0});
  if (!held.empty())
    due = std::max(due, held.back().due);
  held.push_back({due, wire::bytes(frame.begin(), frame.end())});
  return true;
}

void engine_impl::arm_delay_timer(const std::shared_ptr<connection>& c) {
  if (c->closed)
    return;
  std::optional<time_point> next;
  if (!c->out_delayed.empty())
    next = c->out_delayed.front().due;
  if (!c->in_delayed.empty())
    next = next ? std::min(*next, c->in_delayed.front().due) : c->in_delayed.front().due;
  if (!next)
    return;
  if (!c->delay_timer)
    c->delay_timer.emplace(io_);
  c->delay_timer->expires_after(std::max<duration>(*next - clock_->now(), duration{0}));
  c->delay_timer->async_wait([this, c](const boost::system::error_code& ec) {
    if (!ec && !c->closed)
      release_delayed(c);
  });
}

void engine_impl::release_delayed(const std::shared_ptr<connection>& c) {
  auto now = clock_->now();
  while (!c->out_delayed.empty() && c->out_delayed.front().due <= now) {
    auto& frame = c->out_delayed.front().frame;
    c->released.insert(c->released.end(), frame.begin(), frame.end());
    c->out_delayed.pop_front();
  }
  if (c->out_delayed.empty()) {
    std::lock_guard<std::mutex> guard{c->q->mtx};
    c->q->held = false;
  }
  std::vector<wire::bytes> arrived;
  while (!c->in_delayed.empty() && c->in_delayed.front().due <= now) {
    arrived.push_back(std::move(c->in_delayed.front().frame));
    c->in_delayed.pop_front();
  }
  for (auto& frame : arrived) {
    if (c->closed || c->close_after_write)
      return;
    c->last_heard = now;
    on_frame(*c, frame);
  }
  if (c->closed)
    return;
  // The frames handed to the sink live until here (see engine_sink::on_read_done).
  if (!arrived.empty() && c->established && !sink_.on_read_done(c->id))
    c->read_paused = true;
  if (!c->released.empty())
    flush(*c);
  arm_delay_timer(c);
}

} // namespace troupe::remote::detail
