// What the transport tells its subscribers about peers (failure signals and
// backpressure credit), and what it reports about them on request.
//
// Events for one peer address arrive in the order they happened: `up` and `lost`
// alternate; `new_incarnation` comes right before the `up` of the new incarnation
// (after a `lost` of the old one if that was still up); `quarantined` follows
// transport::quarantine (after the `lost` of that incarnation if it was up). See
// docs/transport.md, "Failure signals".
//
// Thread-safety: value types.
#pragma once

#include "troupe/actors/remote/address.hpp"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace troupe::remote {

struct peer_event {
  enum class kind {
    up,               ///< the first connection to this incarnation was established
    lost,             ///< the peer is no longer connected (reason says why)
    new_incarnation,  ///< a different incarnation appeared at a known address
    writable,         ///< the outbound queue drained below half after a refused send
    quarantined,      ///< transport::quarantine(peer): its traffic is refused from now on
  };
  kind what = kind::up;
  node_identity peer;
  std::uint64_t previous_incarnation = 0;  ///< new_incarnation only
  std::string reason;                       ///< lost and quarantined only
};

std::string_view to_string(peer_event::kind k) noexcept;

/// A snapshot of the transport's view of one peer address.
struct peer_info {
  enum class state {
    idle,        ///< no outbound connection; the next send starts one
    connecting,  ///< connecting or handshaking; sends are queued
    connected,   ///< outbound connection established
    backoff,     ///< the last attempt failed; sends fail fast until the next attempt
  };
  node_address address;
  std::uint64_t incarnation = 0;  ///< last known, 0 if never connected
  state outbound = state::idle;
  bool up = false;                ///< at least one established connection (either way)
  bool wanted = false;            ///< connect() was called: reconnect with backoff
  std::size_t queued_bytes = 0;   ///< outbound bytes not yet handed to the kernel
  std::size_t queue_capacity = 0;
  std::size_t inbound_connections = 0;
  std::string last_error;         ///< why the last outbound connection failed
};

std::string_view to_string(peer_info::state s) noexcept;

/// A heartbeat that arrived from a peer (transport::subscribe_heartbeats): the
/// samples of a failure detector. Per peer incarnation they come from one
/// connection: our outbound one while it is established, else an inbound one.
struct heartbeat_sample {
  node_identity peer;
  std::chrono::steady_clock::time_point arrival;  ///< the transport's clock
};

/// Bytes a peer sent to a channel of this node (transport::send_packet), outside
/// CAF: the membership protocol's messages. `manifest` and `version` name the
/// payload's type as the codec does.
struct packet {
  node_identity from;  ///< the sender's identity (as its handshake stated it)
  std::string channel;
  std::string manifest;
  std::uint32_t version = 1;
  std::vector<std::uint8_t> payload;
};

} // namespace troupe::remote
