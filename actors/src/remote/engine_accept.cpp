// Connecting to peers, accepting connections, and admission: the caps on pending
// handshakes and established connections, and eviction of the oldest pending
// handshake when new peers need room.
#include "remote/engine_impl.hpp"

#include <array>

namespace troupe::remote::detail {

namespace {

std::array<std::uint8_t, wire::nonce_size> random_nonce() {
  std::array<std::uint8_t, wire::nonce_size> n;
  random_bytes(n.data(), n.size());
  return n;
}

/// accept() failed for lack of descriptors or memory: retrying at once would spin.
bool out_of_resources(const boost::system::error_code& ec) {
  return ec == asio::error::no_descriptors
         || ec == boost::system::errc::too_many_files_open_in_system
         || ec == asio::error::no_buffer_space || ec == asio::error::no_memory;
}

} // namespace

// -- connecting (I/O thread) ----------------------------------------------------------------

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
  c->peer_id = node_identity{p->addr, 0};
  c->hs.emplace(handshake::role::initiator, hs_settings_, random_nonce());
  p->outbound = c;
  connections_.emplace(c->id, c);
  arm_handshake_deadline(c, fmt::format("connecting to {}", p->addr.to_string()));
  auto connect_to = [this, c](const tcp::endpoint& ep) {
    c->sock.async_connect(ep, [this, c](const boost::system::error_code& ec) {
      if (c->closed)
        return;
      if (ec) {
        connect_failed(*c, fmt::format("cannot connect to {}: {}", c->remote, ec.message()));
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
        connect_failed(*c, fmt::format("cannot resolve {}: {}", c->remote, rec.message()));
        return;
      }
      connect_to(rs.begin()->endpoint());
    });
}

void engine_impl::connect_failed(connection& c, std::string why) {
  count_connection_error("connect_failed");
  close(c, error{errc::node_unreachable, std::move(why)}, close_kind::failure);
}

void engine_impl::on_connected(const std::shared_ptr<connection>& c) {
  boost::system::error_code ec;
  c->sock.set_option(tcp::no_delay(true), ec);
  c->last_heard = clock_->now();
  if (settings_.tls) {
    // TLS first; the troupe handshake starts inside it (on_tls_ready).
    c->tls = std::make_unique<tls_session>(*settings_.tls, true);
    if (c->tls->handshake(c->raw_out) == tls_session::step::failed) {
      tls_failed(*c);
      return;
    }
  } else {
    c->hs->start(c->control);
  }
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
    warn("handshake_timeout", why.message());
    close(*c, why, close_kind::failure);
  });
}

// -- accepting (I/O thread) -----------------------------------------------------------------

void engine_impl::accept_next() {
  acceptor_.async_accept([this](const boost::system::error_code& ec, tcp::socket s) {
    if (ec) {
      if (stopping_ || ec == asio::error::operation_aborted)
        return;
      count_connection_error("accept_failed");
      warn("accept_failed", fmt::format("accepting a connection failed: {}", ec.message()));
      if (!out_of_resources(ec)) {
        accept_next();
        return;
      }
      // A pending handshake holds a descriptor: make room, and wait a moment
      // instead of spinning on a failing accept().
      evict_pending({});
      accept_timer_.expires_after(accept_retry);
      accept_timer_.async_wait([this](const boost::system::error_code& e) {
        if (!e && !stopping_)
          accept_next();
      });
      return;
    }
    accept_next();
    on_accepted(std::move(s));
  });
}

void engine_impl::on_accepted(tcp::socket s) {
  boost::system::error_code ec;
  auto remote = s.remote_endpoint(ec);
  if (ec)
    return;  // already reset by the peer; `s` closes here
  auto ip = remote.address().to_string();
  // Room for one more pending handshake, from this source and in total: the
  // oldest pending one (silent ones first) goes. Silent sockets therefore cannot
  // lock new peers out; they only ever delay each other.
  if (auto i = sources_.find(ip);
      i != sources_.end() && i->second.pending >= settings_.max_pending_per_address)
    evict_pending(ip);
  if (pending_handshakes_ >= settings_.max_pending)
    evict_pending({});
  s.set_option(tcp::no_delay(true), ec);
  auto c = std::make_shared<connection>(next_conn_.fetch_add(1), false, std::move(s));
  c->remote = fmt::format("{}:{}", ip, remote.port());
  c->source_ip = std::move(ip);
  c->accepted_at = clock_->now();
  c->own_queue = std::make_shared<send_queue>();
  c->own_queue->state = send_queue::st::connecting;
  c->own_queue->max_frame = settings_.max_frame;
  c->own_queue->capacity = settings_.max_queue_bytes;
  c->q = c->own_queue.get();
  c->hs.emplace(handshake::role::acceptor, hs_settings_, random_nonce());
  if (settings_.tls)
    c->tls = std::make_unique<tls_session>(*settings_.tls, false);
  c->counted_pending = true;
  ++pending_handshakes_;
  ++sources_[c->source_ip].pending;
  update_gauges();
  c->last_heard = c->accepted_at;
  connections_.emplace(c->id, c);
  arm_handshake_deadline(c, fmt::format("connection from {}", c->remote));
  start_read(c);
}

bool engine_impl::evict_pending(const std::string& source_ip) {
  connection* victim = nullptr;
  for (auto& [id, c] : connections_) {
    if (!c->counted_pending || c->closed || (!source_ip.empty() && c->source_ip != source_ip))
      continue;
    if (victim == nullptr
        || std::pair{c->heard_frame, c->accepted_at}
             < std::pair{victim->heard_frame, victim->accepted_at})
      victim = c.get();
  }
  if (victim == nullptr)
    return false;
  count_connection_error("handshake_evicted");
  auto text =
    source_ip.empty()
      ? fmt::format("closing the pending handshake from {} to make room: {} handshakes are "
                    "pending (transport.max-pending-handshakes)",
                    victim->remote, pending_handshakes_)
      : fmt::format("closing the pending handshake from {} to make room: {} handshakes from {} "
                    "are pending (transport.max-pending-handshakes-per-address)",
                    victim->remote, sources_[source_ip].pending, source_ip);
  warn("handshake_evicted", text);
  close(*victim, error{errc::overloaded, text}, close_kind::failure);
  return true;
}

void engine_impl::uncount(connection& c) {
  if (!c.counted_pending && !c.counted_established)
    return;
  auto i = sources_.find(c.source_ip);
  if (std::exchange(c.counted_pending, false)) {
    --pending_handshakes_;
    if (i != sources_.end())
      --i->second.pending;
  }
  if (std::exchange(c.counted_established, false)) {
    --inbound_established_;
    if (i != sources_.end())
      --i->second.established;
  }
  if (i != sources_.end() && i->second.pending == 0 && i->second.established == 0)
    sources_.erase(i);
  update_gauges();
}

} // namespace troupe::remote::detail
