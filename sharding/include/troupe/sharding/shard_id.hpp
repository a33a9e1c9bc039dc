// Which shard an entity belongs to: a stable hash of its id modulo the number of
// shards of its type. Stable means the same on every node, build and platform
// (64-bit FNV-1a; never std::hash, which may differ between builds), so every node
// routes an id to the same shard.
#pragma once

#include <cstdint>
#include <string_view>

namespace troupe::sharding {

using shard_id = std::uint32_t;

constexpr std::uint64_t stable_hash(std::string_view text) noexcept {
  std::uint64_t h = 0xcbf29ce484222325ULL;
  for (char c : text) {
    h ^= static_cast<unsigned char>(c);
    h *= 0x100000001b3ULL;
  }
  return h;
}

/// The shard of `entity_id`; `number_of_shards` must be > 0.
constexpr shard_id shard_of(std::string_view entity_id, std::uint32_t number_of_shards) noexcept {
  return static_cast<shard_id>(stable_hash(entity_id) % number_of_shards);
}

} // namespace troupe::sharding
