// The messages membership cores exchange (and the shell carries over the
// transport). Every message travels in an envelope naming the sending and the
// receiving incarnation; a message for another incarnation than the receiver is
// dropped, so nothing meant for a dead process reaches its replacement.
//
// Thread-safety: value types; gossip states are shared immutable snapshots.
#pragma once

#include "troupe/actors/expected.hpp"
#include "troupe/membership/gossip.hpp"

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <variant>
#include <vector>

namespace troupe::membership {

/// To a seed node: is there a cluster I can join? Members send it too
/// (`from_member`) to seed addresses where their cluster has no live member: a
/// joining seed then joins through them instead of bootstrapping, and a seed that
/// belongs to another cluster answers, which reveals two clusters sharing one seed
/// list (docs/membership.md, "Seed nodes").
struct init_join {
  std::string cluster_name;
  bool from_member = false;
};
/// From a member: yes, join through me. `seed_rank`: the index of the first seed
/// address where a live member of my cluster runs.
struct init_join_ack {
  std::uint64_t seed_rank = 0;
};
/// From a node that is not a member (yet).
struct init_join_nack {};

struct join_request {
  std::string cluster_name;
  std::vector<std::string> roles;
  std::string app_version;
  std::vector<std::pair<std::string, std::string>> compatibility;
};
/// The joiner was added: the state it now belongs to.
struct welcome {
  std::shared_ptr<const gossip> state;
};
struct join_refused {
  std::string reason;
};
struct gossip_state {
  std::shared_ptr<const gossip> state;
};
/// A digest: the sender's version and seen set, sent instead of the state when the
/// receiver is believed to have it already.
struct gossip_status {
  vector_clock version;
  std::vector<node_identity> seen;
};
struct heartbeat {
  std::uint64_t sequence = 0;
};
struct heartbeat_response {
  std::uint64_t sequence = 0;
};

using protocol_message = std::variant<init_join, init_join_ack, init_join_nack, join_request,
                                      welcome, join_refused, gossip_state, gossip_status,
                                      heartbeat, heartbeat_response>;

struct envelope {
  node_identity from;
  /// The receiving incarnation; incarnation 0 means "whoever listens at the address"
  /// (only init_join, sent to seed addresses, uses it).
  node_identity to;
  protocol_message message;
};

/// The message's name for logs and metrics, e.g. "gossip_state".
std::string_view message_name(const protocol_message& m) noexcept;

/// CBOR bytes of an envelope for the transport, and back. Decoding fails with
/// decode_failed naming what was wrong; it never throws.
std::vector<std::uint8_t> encode(const envelope& e);
expected<envelope> decode_envelope(const std::uint8_t* data, std::size_t size);

} // namespace troupe::membership
