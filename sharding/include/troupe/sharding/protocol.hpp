// The messages between shard regions and the shard coordinator of one entity
// type. Every message travels in an envelope naming the sending and receiving
// incarnation (as membership's do), so nothing meant for a dead process reaches
// its replacement.
//
// Thread-safety: value types.
#pragma once

#include "troupe/actors/expected.hpp"
#include "troupe/actors/remote/address.hpp"
#include "troupe/sharding/shard_id.hpp"

#include <cstdint>
#include <string>
#include <variant>
#include <vector>

namespace troupe::sharding {

using remote::node_address;
using remote::node_identity;

// -- region -> coordinator --
/// A region (re)introduces itself, with the shards it hosts (proxy-only regions
/// host none). Sent when the coordinator moves or starts, and periodically: the
/// coordinator corrects a region that hosts what it should not.
struct register_region {
  bool proxy_only = false;
  std::vector<std::pair<shard_id, std::uint64_t>> hosted;
};
struct get_shard_home {
  shard_id shard = 0;
};
struct begin_hand_off_ack {
  shard_id shard = 0;
};
/// The owner stopped every entity of the shard (they persisted what they acked).
struct shard_stopped {
  shard_id shard = 0;
  std::uint64_t epoch = 0;
};
/// The region's node leaves: hand every shard it hosts to other regions.
struct graceful_shutdown {};

// -- coordinator -> region --
struct region_registered {};
/// A coordinator (re)started: register again.
struct coordinator_hello {};
/// Shard `shard` lives at `region` under `epoch` (the region hosts it if it is you).
struct shard_home {
  shard_id shard = 0;
  node_identity region;
  std::uint64_t epoch = 0;
};
/// Stop routing to the shard's home and hold its messages; acknowledge.
struct begin_hand_off {
  shard_id shard = 0;
};
/// To the owner: stop the shard's entities, then answer shard_stopped.
struct hand_off {
  shard_id shard = 0;
  std::uint64_t epoch = 0;
};
/// The hand-off was rolled back: route to the old home again.
struct hand_off_cancelled {
  shard_id shard = 0;
};

using sharding_message =
  std::variant<register_region, get_shard_home, begin_hand_off_ack, shard_stopped,
               graceful_shutdown, region_registered, coordinator_hello, shard_home,
               begin_hand_off, hand_off, hand_off_cancelled>;

struct sharding_envelope {
  node_identity from;
  node_identity to;
  sharding_message message;
};

std::string_view message_name(const sharding_message& m) noexcept;

/// CBOR bytes of an envelope, and back (decode_failed naming the problem).
std::vector<std::uint8_t> encode(const sharding_envelope& e);
expected<sharding_envelope> decode_sharding_envelope(const std::uint8_t* data, std::size_t size);

} // namespace troupe::sharding
