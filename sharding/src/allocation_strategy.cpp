#include "troupe/sharding/allocation_strategy.hpp"

#include <algorithm>
#include <cmath>

namespace troupe::sharding {

remote::node_identity least_shard_strategy::allocate(shard_id, const remote::node_identity&,
                                                     const shard_map& regions) {
  auto best = regions.begin();
  for (auto i = regions.begin(); i != regions.end(); ++i)
    if (i->second.size() < best->second.size())
      best = i;  // ties: the first in identity order, the same on every coordinator
  return best->first;
}

std::vector<shard_id> least_shard_strategy::rebalance(const shard_map& regions) {
  std::size_t total = 0;
  for (auto& [region, shards] : regions)
    total += shards.size();
  if (regions.size() < 2 || total == 0)
    return {};
  auto optimum = (total + regions.size() - 1) / regions.size();
  auto fewest = std::min_element(regions.begin(), regions.end(), [](auto& a, auto& b) {
                  return a.second.size() < b.second.size();
                })->second.size();
  // Nothing to gain unless some region could take a shard without going above
  // the optimum that a donor would stay at.
  if (fewest + 1 >= optimum)
    return {};
  auto limit = std::min(absolute_limit_,
                        std::max<std::size_t>(1, static_cast<std::size_t>(
                                                   std::floor(relative_limit_ * total))));
  // Phase 1: regions above the optimum give up their surplus, most loaded first.
  // Phase 2 (only when phase 1 finds nothing): the optimum is rounded up, so a
  // region can sit two or more below it while nobody is above it (10, 10, 8 with
  // 28 shards); then each region at the optimum gives up one shard, as many as
  // the regions below optimum - 1 lack.
  auto pick = [&](std::size_t allowed, std::size_t budget) {
    std::vector<std::pair<std::size_t, const std::vector<shard_id>*>> donors;
    for (auto& [region, shards] : regions)
      if (shards.size() > allowed)
        donors.emplace_back(shards.size(), &shards);
    std::stable_sort(donors.begin(), donors.end(),
                     [](auto& a, auto& b) { return a.first > b.first; });
    std::vector<shard_id> moves;
    for (auto& [count, shards] : donors) {
      auto sorted = *shards;
      std::sort(sorted.begin(), sorted.end());
      auto surplus = std::min(count - allowed, budget);
      for (std::size_t k = 0; k < surplus && moves.size() < limit; ++k)
        moves.push_back(sorted[sorted.size() - 1 - k]);
    }
    return moves;
  };
  auto moves = pick(optimum, limit);
  if (!moves.empty())
    return moves;
  std::size_t lacking = 0;
  for (auto& [region, shards] : regions)
    if (shards.size() + 1 < optimum)
      lacking += optimum - 1 - shards.size();
  moves = pick(optimum - 1, 1);
  if (moves.size() > lacking)
    moves.resize(lacking);
  return moves;
}

} // namespace troupe::sharding
