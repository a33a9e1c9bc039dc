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
  std::vector<std::pair<std::size_t, const std::vector<shard_id>*>> donors;
  for (auto& [region, shards] : regions)
    if (shards.size() > optimum)
      donors.emplace_back(shards.size(), &shards);
  std::stable_sort(donors.begin(), donors.end(),
                   [](auto& a, auto& b) { return a.first > b.first; });
  std::vector<shard_id> moves;
  for (auto& [count, shards] : donors) {
    auto surplus = count - optimum;
    auto sorted = *shards;
    std::sort(sorted.begin(), sorted.end());
    for (std::size_t k = 0; k < surplus && moves.size() < limit; ++k)
      moves.push_back(sorted[sorted.size() - 1 - k]);
  }
  return moves;
}

} // namespace troupe::sharding
