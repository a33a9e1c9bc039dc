// Where the coordinator puts a shard, and which shards a rebalance round moves.
//
// least_shard_strategy (the default) allocates a new shard to the region with the
// fewest shards, and rebalances toward an even spread in bounded rounds while the
// fewest-loaded region holds less than optimum - 1 (optimum = ceil(shards /
// regions)): regions above the optimum give up their surplus, most loaded first;
// when none is above it (10, 10, 8 with 28 shards), each region at the optimum
// gives up one, as many as the others lack. At most `absolute_limit` and
// `relative_limit` x total shards per round. This is Akka's newer algorithm with
// its two phases (P4: no storms, no over-rebalancing when a new node gets no
// traffic yet); a round that moves nothing means the spread is as even as the
// strategy makes it.
//
// Strategies are pure: the coordinator calls them with its current view.
// Thread-safety: none needed (called by one coordinator).
#pragma once

#include "troupe/actors/remote/address.hpp"
#include "troupe/sharding/shard_id.hpp"

#include <cstddef>
#include <map>
#include <memory>
#include <optional>
#include <vector>

namespace troupe::sharding {

/// Each eligible region with the shards it hosts now.
using shard_map = std::map<remote::node_identity, std::vector<shard_id>>;

class allocation_strategy {
public:
  virtual ~allocation_strategy() = default;
  /// The region for a new shard among `regions` (non-empty); `requester` asked.
  virtual remote::node_identity allocate(shard_id shard, const remote::node_identity& requester,
                                         const shard_map& regions) = 0;
  /// The shards to move in one rebalance round (may be empty).
  virtual std::vector<shard_id> rebalance(const shard_map& regions) = 0;
};

class least_shard_strategy final : public allocation_strategy {
public:
  explicit least_shard_strategy(std::size_t absolute_limit = 20, double relative_limit = 0.1)
    : absolute_limit_(absolute_limit), relative_limit_(relative_limit) {}

  remote::node_identity allocate(shard_id shard, const remote::node_identity& requester,
                                 const shard_map& regions) override;
  std::vector<shard_id> rebalance(const shard_map& regions) override;

private:
  std::size_t absolute_limit_;
  double relative_limit_;
};

} // namespace troupe::sharding
