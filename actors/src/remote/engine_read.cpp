// Reading: buffers that grow as bytes arrive, TLS records, frames through the
// filter, the handshake and what the engine decides about a peer it accepts,
// established connections, and heartbeats.
#include "remote/engine_impl.hpp"

#include <cstring>

namespace troupe::remote::detail {

// -- reading (I/O thread) ------------------------------------------------------------------

void engine_impl::start_read(const std::shared_ptr<connection>& c) {
  if (c->closed)
    return;
  auto& b = c->rbuf;
  if (c->rbeg == c->rend) {
    c->rbeg = c->rend = 0;
    if (b.size() > 2 * read_chunk)
      wire::bytes{}.swap(b);  // what a large frame needed
  } else if (c->rbeg > 0) {
    std::memmove(b.data(), b.data() + c->rbeg, c->rend - c->rbeg);
    c->rend -= c->rbeg;
    c->rbeg = 0;
  }
  // Room for the next read is the connection's chunk, which doubles whenever a
  // read fills it (up to read_chunk): a buffer grows with what arrives, never to
  // what a frame header merely declares, and an idle connection stays small.
  auto& target = c->tls ? c->cbuf : b;
  auto at = c->tls ? 0 : c->rend;
  if (target.size() < at + c->chunk)
    target.resize(at + c->chunk);
  auto room = target.size() - at;
  c->sock.async_read_some(asio::buffer(target.data() + at, room),
                          [this, c, room](const boost::system::error_code& ec, std::size_t n) {
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
                            if (n == room && c->chunk < read_chunk)
                              c->chunk *= 2;
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
  bytes_received_.inc(n);
  auto f = current_filter();
  auto now = clock_->now();
  if (!f)
    c.last_heard = now;  // without a filter any byte is liveness, else frames that pass
  if (c.tls) {
    if (!on_tls_read(c, n))
      return;
  } else {
    if (!c.established && c.rend == 0 && n >= 2 && c.rbuf[0] == 0x16 && c.rbuf[1] == 0x03) {
      protocol_failure(c, "tls_mismatch",
                       error{errc::protocol_error, "the peer opened with a TLS handshake, but "
                                                   "transport.tls.enabled is false on this node"});
      return;
    }
    c.rend += n;
  }
  std::uint64_t frames = 0;
  // A closing connection (refused, or saying goodbye) reads no further frames.
  while (!c.closed && !c.close_after_write) {
    wire::frame_view fv;
    std::size_t consumed = 0;
    error err;
    auto limit = c.established ? settings_.max_frame : wire::max_handshake_frame;
    auto st =
      wire::scan_frame({c.rbuf.data() + c.rbeg, c.rend - c.rbeg}, limit, fv, consumed, err);
    if (st == wire::scan_status::error) {
      protocol_failure(c, err.code() == errc::oversize ? "oversize" : "malformed", err);
      break;
    }
    if (st == wire::scan_status::need_more)
      break;
    wire::byte_span raw{c.rbuf.data() + c.rbeg, consumed};
    c.rbeg += consumed;
    ++frames;
    on_arrived(c, raw, f.get(), now);
  }
  frames_received_.inc(frames);
  if (c.established && !c.closed && !sink_.on_read_done(c.id))
    c.read_paused = true;  // the sink resumes it (resume_reading)
}

bool engine_impl::on_tls_read(connection& c, std::size_t n) {
  c.tls->feed({c.cbuf.data(), n});
  if (!c.tls_ready) {
    auto st = c.tls->handshake(c.raw_out);
    if (st == tls_session::step::failed) {
      tls_failed(c);
      return false;
    }
    if (st == tls_session::step::more) {
      flush(c);
      return true;
    }
    on_tls_ready(c);
    if (c.closed)
      return false;
  }
  // Plaintext is never more than the ciphertext buffered: room grows with what
  // arrived.
  auto room = c.tls->buffered();
  if (room == 0)
    return true;
  if (c.rbuf.size() < c.rend + room)
    c.rbuf.resize(c.rend + room);
  auto got = c.tls->read(c.rbuf.data() + c.rend, room);
  if (!got) {
    protocol_failure(c, "tls", got.error());
    return false;
  }
  c.rend += *got;
  return true;
}

void engine_impl::on_tls_ready(connection& c) {
  c.tls_ready = true;
  log_.debug("transport", "TLS with {} is up; its certificate: {}", c.remote,
             c.tls->peer_subject());
  if (c.outbound)
    c.hs->start(c.control);
  flush(c);
}

void engine_impl::tls_failed(connection& c) {
  count_connection_error("tls_handshake_failed");
  auto text = fmt::format("TLS handshake {} {} failed: {}", c.outbound ? "with" : "from",
                          c.remote, c.tls->failure().message());
  warn("tls_handshake_failed", text);
  // The alert (in raw_out) tells the peer why.
  close_after_writing(c, error{c.outbound ? errc::node_unreachable : errc::unauthorized, text});
}

void engine_impl::on_arrived(connection& c, wire::byte_span raw, frame_filter* f,
                             time_point now) {
  if (f == nullptr && c.in_delayed.empty()) {
    on_frame(c, raw);
    return;
  }
  auto v = judge(f, frame_direction::incoming, c, raw);
  if (v.what == filter_verdict::action::drop)
    return;
  if (hold(c.in_delayed, v, now, raw)) {
    arm_delay_timer(c.shared_from_this());
    return;
  }
  c.last_heard = now;
  on_frame(c, raw);
}

void engine_impl::on_frame(connection& c, wire::byte_span raw) {
  wire::frame_view f{wire::type_of(raw), raw.subspan(wire::header_size)};
  c.current_raw = raw;
  c.heard_frame = true;
  if (!c.established) {
    on_handshake_frame(c, f);
    return;
  }
  switch (f.type) {
    case frame_type::heartbeat:
      // Its arrival (last_heard) is the point; one connection per peer feeds the
      // subscribers' failure detectors.
      if (samples_heartbeats(c))
        sink_.on_heartbeat(heartbeat_sample{c.peer_id, clock_->now()});
      return;
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
    case frame_type::refuse: {
      // The peer's side of the handshake ended after ours (it re-checks at the
      // auth frame: quarantined, address in use, too many connections).
      auto r = wire::decode_refuse(f);
      count_connection_error("refused_by_peer");
      auto text = fmt::format("{} refused the connection: {}", c.peer_id.to_string(),
                              r ? r->reason : r.error().message());
      warn("refused_by_peer", text);
      close(c, error{errc::node_unreachable, text}, close_kind::failure);
      return;
    }
    default: {
      // Requests, one-way messages and packets travel on the sender's outbound
      // connection, responses come back on it: anything else is a confused or
      // hostile peer.
      bool response = f.type == frame_type::response;
      bool app = response || wire::is_message(f.type) || f.type == frame_type::packet;
      if (!app || c.outbound != response)
        break;
      auto r = sink_.on_frame(inbound_frame{c.id, c.outbound, c.peer_id, f, raw,
                                            c.outbound ? nullptr : &c.replies});
      if (!r)
        protocol_failure(c, "malformed", r.error());
      return;
    }
  }
  protocol_failure(c, "unexpected_frame",
                   error{errc::protocol_error,
                         fmt::format("unexpected {} frame (type {}) on an established {} "
                                     "connection",
                                     wire::to_string(f.type), static_cast<int>(f.type),
                                     c.outbound ? "outbound" : "inbound")});
}

// -- handshakes (I/O thread) ----------------------------------------------------------------

void engine_impl::on_handshake_frame(connection& c, wire::frame_view f) {
  auto keep = c.control.size();
  auto st = c.hs->on_frame(f, c.control);
  // The handshake accepted who the peer says it is (acceptor: its hello; both:
  // the end): the engine decides whether this node takes it.
  bool decided = st == handshake::state::established
                 || (!c.outbound && st == handshake::state::awaiting_auth);
  if (decided) {
    c.peer_id = c.hs->peer();
    if (auto no = admit_peer(c))
      st = c.hs->reject(no->first, no->second.code(), no->second.message(), c.control, keep);
  }
  if (st == handshake::state::failed) {
    refuse(c, to_string(c.hs->failure_kind()), c.hs->failure());
    return;
  }
  if (st == handshake::state::established) {
    if (c.outbound)
      established_outbound(c);
    else
      established_inbound(c);
  }
  flush(c);
}

std::optional<std::pair<refusal, error>> engine_impl::admit_peer(connection& c) {
  auto& id = c.peer_id;
  auto p = c.outbound ? c.owner : find_peer(id.address);
  if (p) {
    std::lock_guard<std::mutex> guard{p->out.mtx};
    if (p->out.quarantines(id.incarnation))
      return std::pair{refusal::quarantined,
                       error{errc::unauthorized,
                             fmt::format("{} is quarantined by {}", id.to_string(),
                                         identity_.to_string())}};
  }
  if (c.outbound)
    return std::nullopt;  // this node dialed the address: whoever answers holds it
  if (inbound_established_ >= settings_.max_connections)
    return std::pair{refusal::too_many_connections,
                     error{errc::overloaded,
                           fmt::format("{} refuses {}: {} connections are established "
                                       "(transport.max-connections)",
                                       identity_.address.to_string(), id.to_string(),
                                       inbound_established_)}};
  auto from = sources_.find(c.source_ip);
  if (from != sources_.end() && from->second.established >= settings_.max_connections_per_address)
    return std::pair{refusal::too_many_connections,
                     error{errc::overloaded,
                           fmt::format("{} refuses {}: {} connections from {} are established "
                                       "(transport.max-connections-per-address)",
                                       identity_.address.to_string(), id.to_string(),
                                       from->second.established, c.source_ip)}};
  // Without a secret or TLS anyone can claim any identity: a hello must not take
  // a live peer's address away from it.
  if (!authenticated_ && p && p->up && p->incarnation != id.incarnation)
    return std::pair{refusal::address_in_use,
                     error{errc::unauthorized,
                           fmt::format("{} is held by its live incarnation {:016x}; without "
                                       "transport.secret or TLS a new incarnation {:016x} cannot "
                                       "replace it before it is lost",
                                       id.address.to_string(), p->incarnation, id.incarnation)}};
  return std::nullopt;
}

void engine_impl::refuse(connection& c, std::string_view kind, const error& why) {
  count_connection_error(kind);
  auto text = fmt::format("handshake {} {} failed: {}", c.outbound ? "with" : "from", c.remote,
                          why.message());
  warn(kind, text);
  // The refuse frame (in `control`) tells the peer why.
  close_after_writing(c, error{c.outbound ? errc::node_unreachable : why.code(), text});
}

void engine_impl::close_after_writing(connection& c, const error& reason) {
  if (c.control.empty() && c.raw_out.empty()) {
    close(c, reason, close_kind::failure);
    return;
  }
  c.close_after_write = true;
  c.close_reason = reason;
  c.close_as = close_kind::failure;
  flush(c);
}

void engine_impl::protocol_failure(connection& c, std::string_view kind, const error& why) {
  count_connection_error(kind);
  auto who = c.established ? c.peer_id.to_string() : c.remote;
  warn(kind, fmt::format("closing the connection {} {}: {}", c.outbound ? "to" : "from", who,
                         why.message()));
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
    p.out.tls = c.tls.get();
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
    c.own_queue->tls = c.tls.get();
    c.own_queue->max_frame = std::min(settings_.max_frame, c.hs->peer_max_frame());
    c.own_queue->io_writing = true;  // until flush() below, as for outbound
  }
  c.replies = std::make_shared<reply_channel_impl>(*this, c.own_queue, c.weak_from_this(),
                                                   c.peer_id);
  c.established = true;
  if (std::exchange(c.counted_pending, false)) {
    --pending_handshakes_;
    --sources_[c.source_ip].pending;
  }
  c.counted_established = true;
  ++inbound_established_;
  ++sources_[c.source_ip].established;
  update_gauges();
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
      // connected to it is stale. (Unauthenticated inbound peers never get here
      // while it is up: admit_peer refused them.)
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

// -- heartbeats (I/O thread) ----------------------------------------------------------------

void engine_impl::arm_heartbeat(const std::shared_ptr<connection>& c) {
  if (settings_.heartbeat_interval <= duration{0})
    return;
  c->timer.expires_after(settings_.heartbeat_interval);
  c->timer.async_wait([this, c](const boost::system::error_code& ec) {
    if (ec || c->closed)
      return;
    on_heartbeat(*c, std::chrono::steady_clock::now() - c->timer.expiry());
    arm_heartbeat(c);
  });
}

void engine_impl::on_heartbeat(connection& c, std::chrono::steady_clock::duration late) {
  // Liveness is what arrives from the peer: both sides send heartbeats on every
  // connection, independently of their queues, so a live peer is heard even while
  // our own writes to it are backed up (and a stopped one is not, even while the
  // kernel still accepts our bytes).
  auto now = clock_->now();
  if (c.read_paused)
    c.last_heard = now;  // not reading by choice: nothing to judge
  // A check that runs more than an interval late means this process did not run
  // (stopped with SIGSTOP, swapped out, its VM paused): what the peer sent
  // meanwhile is unread in the socket, and the silence was ours. The time we were
  // away does not count, so the reads come first and a woken node does not drop
  // every connection (and the messages in them) at once.
  if (late > settings_.heartbeat_interval)
    c.last_heard = std::min(now, c.last_heard + std::chrono::duration_cast<duration>(late));
  auto silent = now - c.last_heard;
  if (settings_.failure_timeout > duration{0} && silent > settings_.failure_timeout) {
    count_connection_error("heartbeat_timeout");
    auto why = fmt::format("no traffic from {} for {} (transport.failure-timeout)",
                           c.peer_id.to_string(),
                           ms(std::chrono::duration_cast<duration>(silent)));
    warn("heartbeat_timeout", why);
    close(c, error{errc::node_unreachable, why}, close_kind::failure);
    return;
  }
  wire::put_empty(c.control, frame_type::heartbeat);
  flush(c);
}

bool engine_impl::samples_heartbeats(const connection& c) const {
  if (c.outbound)
    return true;
  auto& p = c.owner;
  if (!p)
    return false;
  auto same = [&](const std::shared_ptr<connection>& x) {
    return x && x->established && x->peer_id.incarnation == c.peer_id.incarnation;
  };
  if (same(p->outbound))
    return false;  // our outbound connection reports them
  for (auto& x : p->inbound)
    if (same(x))
      return x.get() == &c;
  return false;
}

} // namespace troupe::remote::detail
