// The least-shard strategy: new shards go to the region with the fewest, and
// rebalance rounds, bounded per round, always end in an even spread (no region
// below optimum - 1), whatever the starting spread.
#include "troupe/sharding/allocation_strategy.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <random>

using troupe::sharding::least_shard_strategy;
using troupe::sharding::shard_id;
using troupe::sharding::shard_map;

namespace {

troupe::remote::node_identity region(std::uint16_t i) {
  return {{"127.0.0.1", static_cast<std::uint16_t>(7000 + i)}, 1};
}

/// Regions holding `counts[i]` shards each, numbered from 0.
shard_map spread(const std::vector<std::size_t>& counts) {
  shard_map m;
  shard_id next = 0;
  for (std::size_t i = 0; i < counts.size(); ++i) {
    auto& shards = m[region(static_cast<std::uint16_t>(i))];
    for (std::size_t k = 0; k < counts[i]; ++k)
      shards.push_back(next++);
  }
  return m;
}

bool even(const shard_map& m) {
  std::size_t total = 0, fewest = SIZE_MAX;
  for (auto& [r, shards] : m) {
    total += shards.size();
    fewest = std::min(fewest, shards.size());
  }
  auto optimum = (total + m.size() - 1) / m.size();
  return fewest + 1 >= optimum;
}

/// One round as the coordinator runs it: the moved shards are released and
/// allocated again, each to the region the strategy picks.
std::size_t round(least_shard_strategy& s, shard_map& m) {
  auto moves = s.rebalance(m);
  for (auto shard : moves)
    for (auto& [r, shards] : m)
      std::erase(shards, shard);
  for (auto shard : moves)
    m[s.allocate(shard, region(0), m)].push_back(shard);
  return moves.size();
}

} // namespace

TEST_CASE("least-shard strategy: a new shard goes to the region with the fewest") {
  least_shard_strategy s;
  auto m = spread({3, 1, 2});
  CHECK(s.allocate(99, region(0), m) == region(1));
}

TEST_CASE("least-shard strategy: nothing moves when no region is below optimum - 1") {
  least_shard_strategy s;
  CHECK(s.rebalance(spread({10, 10, 9})).empty());
  CHECK(s.rebalance(spread({10, 9, 9})).empty());
  CHECK(s.rebalance(spread({5})).empty());
  CHECK(s.rebalance(spread({0, 0})).empty());
}

TEST_CASE("least-shard strategy: a region two below the rounded-up optimum gets a shard "
          "although no region is above it") {
  // 28 shards over 3 regions: optimum 10, nobody above it, one region at 8.
  least_shard_strategy s;
  auto m = spread({10, 10, 8});
  auto moves = s.rebalance(m);
  REQUIRE(moves.size() == 1);
  CHECK(moves[0] < 20);  // from one of the regions at the optimum
  round(s, m);
  CHECK(even(m));
}

TEST_CASE("least-shard strategy: rounds move at most the limit and always end even") {
  std::mt19937 rng{42};
  for (int trial = 0; trial < 500; ++trial) {
    std::uniform_int_distribution<std::size_t> regions_d{2, 6}, count_d{0, 40};
    std::vector<std::size_t> counts(regions_d(rng));
    for (auto& c : counts)
      c = count_d(rng);
    INFO("trial " << trial);
    least_shard_strategy s{3, 0.1};
    auto m = spread(counts);
    std::size_t total = 0;
    for (auto c : counts)
      total += c;
    int rounds = 0;
    while (auto moved = round(s, m)) {
      CHECK(moved <= std::max<std::size_t>(1, std::min<std::size_t>(3, total / 10)));
      REQUIRE(++rounds < 200);
    }
    CHECK(even(m));
  }
}
