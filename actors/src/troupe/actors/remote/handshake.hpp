// The transport's connection handshake as a state machine over frames, free of
// sockets, CAF and Asio (the engine drives it; the fuzzer and tests drive it
// directly).
//
//   initiator                                acceptor
//   hello   {version, cluster, address, incarnation, max frame, nonce_i} ->
//        <- welcome {same fields of the acceptor, nonce_a, mac_a}
//   auth    {mac_i} ->
//
// The acceptor refuses (a `refuse` frame with an error code and a reason, then
// close) a peer with another magic, protocol version or cluster name, a peer that
// claims the acceptor's own incarnation, and, when a shared secret is configured, a
// peer whose mac_i is wrong or missing. The initiator likewise refuses a welcome it
// cannot accept. Macs prove knowledge of the secret without sending it:
//
//   mac_a = HMAC-SHA256(secret, "troupe/1 acceptor"  || hello body || welcome body*)
//   mac_i = HMAC-SHA256(secret, "troupe/1 initiator" || hello body || welcome body*)
//
// where welcome body* is the welcome body without its mac. Both nonces are inside
// the covered bytes, so a recorded handshake cannot be replayed, and the identities
// are bound to the proof. The acceptor delivers no application frame before the
// auth frame verified.
//
// Thread-safety: one handshake object per connection, used by one thread.
#pragma once

#include "troupe/actors/remote/address.hpp"
#include "troupe/actors/remote/wire.hpp"

#include <array>
#include <string>

namespace troupe::remote {

struct handshake_settings {
  node_identity self;
  std::string cluster;
  std::string secret;  ///< empty: no authentication
  std::uint32_t max_frame = 4u << 20;
};

/// Why a handshake failed; also the `reason` label of troupe_transport_refused_total.
enum class refusal {
  none,
  malformed,         ///< not a troupe peer, or a frame that does not parse
  version_mismatch,  ///< another protocol version
  cluster_mismatch,  ///< another cluster name
  unauthorized,      ///< wrong or missing proof of the shared secret
  self_connection,   ///< the peer is this very node
  refused_by_peer,   ///< the peer sent a refuse frame
  unexpected_frame,  ///< a frame type that is not allowed in this state
  // Decided by the engine about a peer the handshake itself would accept:
  quarantined,           ///< the peer's incarnation is quarantined here
  address_in_use,        ///< an unauthenticated peer claims the address of a live one
  too_many_connections,  ///< transport.max-connections(-per-address) reached
};

std::string_view to_string(refusal r) noexcept;

class handshake {
public:
  enum class role { initiator, acceptor };
  enum class state { awaiting_hello, awaiting_welcome, awaiting_auth, established, failed };

  handshake(role r, handshake_settings settings, std::array<std::uint8_t, wire::nonce_size> nonce);

  /// Initiator only: appends the hello frame to `out`.
  void start(wire::bytes& out);

  /// Feeds one frame that arrived before the connection was established. Appends
  /// what to send to `out` (welcome, auth, or a refuse frame to send before
  /// closing). Returns the new state.
  state on_frame(wire::frame_view f, wire::bytes& out);

  /// Fails the handshake for a reason decided outside it (the peer is
  /// quarantined, too many connections, ...): discards what `out` held for the
  /// peer from `keep` on and appends a refuse frame instead. Returns failed.
  state reject(refusal kind, errc code, std::string reason, wire::bytes& out, std::size_t keep);

  state current() const noexcept { return state_; }
  /// The peer's identity and frame limit; valid once established.
  const node_identity& peer() const noexcept { return peer_; }
  std::uint32_t peer_max_frame() const noexcept { return peer_max_frame_; }
  /// Why the handshake failed (errc + a reason naming the values involved).
  const error& failure() const noexcept { return failure_; }
  refusal failure_kind() const noexcept { return kind_; }

private:
  state on_hello(wire::frame_view f, wire::bytes& out);
  state on_welcome(wire::frame_view f, wire::bytes& out);
  state on_auth(wire::frame_view f, wire::bytes& out);
  /// Checks what every hello and welcome must satisfy; sets the failure if not.
  bool accept_identity(wire::frame_view f, wire::hello_msg& m);
  state fail(refusal kind, errc code, std::string reason, wire::bytes* refuse_out);
  wire::hello_msg own_hello() const;
  wire::bytes mac(std::string_view label) const;

  role role_;
  handshake_settings settings_;
  std::array<std::uint8_t, wire::nonce_size> nonce_;
  state state_;
  wire::bytes hello_body_;    ///< the hello body as sent/received (mac transcript)
  wire::bytes welcome_body_;  ///< the welcome body without its mac
  node_identity peer_;
  std::uint32_t peer_max_frame_ = 0;
  error failure_;
  refusal kind_ = refusal::none;
};

} // namespace troupe::remote
