#include "troupe/actors/remote/handshake.hpp"

#include "troupe/actors/remote/hmac.hpp"

#include <fmt/core.h>

#include <algorithm>

namespace troupe::remote {

using wire::frame_type;

std::string_view to_string(refusal r) noexcept {
  switch (r) {
    case refusal::none: return "none";
    case refusal::malformed: return "malformed";
    case refusal::version_mismatch: return "version_mismatch";
    case refusal::cluster_mismatch: return "cluster_mismatch";
    case refusal::unauthorized: return "unauthorized";
    case refusal::self_connection: return "self_connection";
    case refusal::refused_by_peer: return "refused_by_peer";
    case refusal::unexpected_frame: return "unexpected_frame";
    case refusal::quarantined: return "quarantined";
    case refusal::address_in_use: return "address_in_use";
    case refusal::too_many_connections: return "too_many_connections";
  }
  return "unknown";
}

namespace {

constexpr std::string_view acceptor_label = "troupe/1 acceptor";
constexpr std::string_view initiator_label = "troupe/1 initiator";

std::span<const std::uint8_t> as_bytes(std::string_view s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

} // namespace

handshake::handshake(role r, handshake_settings settings,
                     std::array<std::uint8_t, wire::nonce_size> nonce)
  : role_(r),
    settings_(std::move(settings)),
    nonce_(nonce),
    state_(r == role::initiator ? state::awaiting_welcome : state::awaiting_hello) {
}

wire::hello_msg handshake::own_hello() const {
  wire::hello_msg m;
  m.incarnation = settings_.self.incarnation;
  m.max_frame = settings_.max_frame;
  m.port = settings_.self.address.port;
  m.host = settings_.self.address.host;
  m.cluster = settings_.cluster;
  m.nonce = nonce_;
  return m;
}

wire::bytes handshake::mac(std::string_view label) const {
  auto d = hmac_sha256(as_bytes(settings_.secret), {as_bytes(label), hello_body_, welcome_body_});
  return wire::bytes(d.begin(), d.end());
}

void handshake::start(wire::bytes& out) {
  auto [begin, end] = wire::put_hello(out, frame_type::hello, own_hello());
  hello_body_.assign(out.begin() + static_cast<std::ptrdiff_t>(begin),
                     out.begin() + static_cast<std::ptrdiff_t>(end));
}

handshake::state handshake::fail(refusal kind, errc code, std::string reason,
                                 wire::bytes* refuse_out) {
  kind_ = kind;
  failure_ = error{code, std::move(reason)};
  if (refuse_out != nullptr)
    wire::put_refuse(*refuse_out, static_cast<std::uint8_t>(code), failure_.message());
  state_ = state::failed;
  return state_;
}

handshake::state handshake::reject(refusal kind, errc code, std::string reason, wire::bytes& out,
                                   std::size_t keep) {
  out.resize(std::min(keep, out.size()));
  return fail(kind, code, std::move(reason), &out);
}

handshake::state handshake::on_frame(wire::frame_view f, wire::bytes& out) {
  if (state_ == state::established || state_ == state::failed)
    return state_;
  if (f.type == frame_type::refuse) {
    auto r = wire::decode_refuse(f);
    auto why = r ? fmt::format("peer refused the connection: {}", r->reason)
                 : fmt::format("peer refused the connection ({})", r.error().message());
    auto code = r && r->code != 0 ? static_cast<errc>(r->code) : errc::protocol_error;
    return fail(refusal::refused_by_peer, code, std::move(why), nullptr);
  }
  switch (state_) {
    case state::awaiting_hello:
      if (f.type == frame_type::hello)
        return on_hello(f, out);
      break;
    case state::awaiting_welcome:
      if (f.type == frame_type::welcome)
        return on_welcome(f, out);
      break;
    case state::awaiting_auth:
      if (f.type == frame_type::auth)
        return on_auth(f, out);
      break;
    default:
      break;
  }
  return fail(refusal::unexpected_frame, errc::protocol_error,
              fmt::format("unexpected {} frame (type {}) during the handshake",
                          wire::to_string(f.type), static_cast<int>(f.type)),
              &out);
}

bool handshake::accept_identity(wire::frame_view f, wire::hello_msg& m) {
  std::uint32_t magic = 0;
  std::uint16_t version = 0;
  // The callers send the refuse frame; this only records why.
  wire::bytes* refuse_out = nullptr;
  if (auto r = wire::peek_version(f.body, magic, version); !r) {
    fail(refusal::malformed, errc::protocol_error, r.error().message(), refuse_out);
    return false;
  }
  if (magic != wire::magic) {
    fail(refusal::malformed, errc::protocol_error,
         fmt::format("not a troupe peer (magic {:#010x})", magic), refuse_out);
    return false;
  }
  if (version != wire::protocol_version) {
    fail(refusal::version_mismatch, errc::protocol_error,
         fmt::format("peer speaks protocol version {}, this node speaks {}", version,
                     wire::protocol_version),
         refuse_out);
    return false;
  }
  auto decoded = wire::decode_hello(f);
  if (!decoded) {
    fail(refusal::malformed, errc::protocol_error, decoded.error().message(), refuse_out);
    return false;
  }
  m = std::move(*decoded);
  if (m.cluster != settings_.cluster) {
    fail(refusal::cluster_mismatch, errc::protocol_error,
         fmt::format("peer {}:{} belongs to cluster '{}', this node to '{}'", m.host, m.port,
                     m.cluster, settings_.cluster),
         refuse_out);
    return false;
  }
  if (m.incarnation == settings_.self.incarnation) {
    fail(refusal::self_connection, errc::protocol_error,
         "peer has this node's own incarnation (connected to itself)", refuse_out);
    return false;
  }
  if (m.max_frame < wire::min_frame_limit) {
    fail(refusal::malformed, errc::protocol_error,
         fmt::format("peer's maximum frame size {} is below {}", m.max_frame,
                     wire::min_frame_limit),
         refuse_out);
    return false;
  }
  peer_ = node_identity{node_address{m.host, m.port}, m.incarnation};
  peer_max_frame_ = m.max_frame;
  return true;
}

handshake::state handshake::on_hello(wire::frame_view f, wire::bytes& out) {
  wire::hello_msg m;
  if (!accept_identity(f, m)) {
    wire::put_refuse(out, static_cast<std::uint8_t>(failure_.code()), failure_.message());
    return state_;
  }
  hello_body_.assign(f.body.begin(), f.body.end());
  auto welcome = own_hello();
  // The mac covers the welcome body up to (not including) the mac itself, so
  // encode once without it to fix the covered bytes.
  wire::bytes scratch;
  auto [begin, end] = wire::put_hello(scratch, frame_type::welcome, welcome);
  welcome_body_.assign(scratch.begin() + static_cast<std::ptrdiff_t>(begin),
                       scratch.begin() + static_cast<std::ptrdiff_t>(end));
  if (!settings_.secret.empty())
    welcome.mac = mac(acceptor_label);
  wire::put_hello(out, frame_type::welcome, welcome);
  state_ = state::awaiting_auth;
  return state_;
}

handshake::state handshake::on_welcome(wire::frame_view f, wire::bytes& out) {
  wire::hello_msg m;
  if (!accept_identity(f, m)) {
    wire::put_refuse(out, static_cast<std::uint8_t>(failure_.code()), failure_.message());
    return state_;
  }
  auto covered = f.body.size() - 1 - m.mac.size();
  welcome_body_.assign(f.body.begin(), f.body.begin() + static_cast<std::ptrdiff_t>(covered));
  if (settings_.secret.empty()) {
    if (!m.mac.empty())
      return fail(refusal::unauthorized, errc::unauthorized,
                  fmt::format("peer {} requires authentication, but transport.secret is not set",
                              peer_.address.to_string()),
                  &out);
    wire::put_auth(out, {});
  } else {
    auto expected_mac = mac(acceptor_label);
    if (!equal_in_constant_time(m.mac, expected_mac))
      return fail(refusal::unauthorized, errc::unauthorized,
                  fmt::format("peer {} failed authentication (wrong or missing proof of the "
                              "shared secret)",
                              peer_.address.to_string()),
                  &out);
    wire::put_auth(out, mac(initiator_label));
  }
  state_ = state::established;
  return state_;
}

handshake::state handshake::on_auth(wire::frame_view f, wire::bytes& out) {
  auto proof = wire::decode_auth(f);
  if (!proof)
    return fail(refusal::malformed, errc::protocol_error, proof.error().message(), &out);
  if (!settings_.secret.empty()
      && !equal_in_constant_time(*proof, mac(initiator_label)))
    return fail(refusal::unauthorized, errc::unauthorized,
                fmt::format("peer {} failed authentication (wrong or missing proof of the shared "
                            "secret)",
                            peer_.address.to_string()),
                &out);
  state_ = state::established;
  return state_;
}

} // namespace troupe::remote
