// The split-brain resolver's decisions, strategy by strategy.
#include "membership_test_support.hpp"

#include "troupe/membership/split_brain_resolver.hpp"

#include <doctest/doctest.h>

using namespace troupe::membership;
using namespace troupe::membership::test;
using ms = member_status;

namespace {

/// Five up members; `self`'s side cannot reach the nodes in `away`.
gossip partitioned(std::initializer_list<int> away, int self, int n = 5) {
  gossip g;
  for (int i = 0; i < n; ++i)
    g.put(up(i));
  for (int a : away)
    g.overview.mark_unreachable(node_id(self), node_id(a));
  return g;
}

std::vector<node_identity> nodes(std::initializer_list<int> xs) {
  std::vector<node_identity> r;
  for (int x : xs)
    r.push_back(node_id(x));
  return r;
}

} // namespace

TEST_CASE("split brain: keep-majority keeps the bigger side, both sides agree") {
  split_brain_settings s;
  CHECK(decide_downing(s, partitioned({3, 4}, 0), node_id(0)).downed == nodes({3, 4}));
  CHECK(decide_downing(s, partitioned({0, 1, 2}, 3), node_id(3)).downed == nodes({3, 4}));
  // A tie: the side holding the lowest address stays, on both sides.
  CHECK(decide_downing(s, partitioned({2, 3}, 0, 4), node_id(0)).downed == nodes({2, 3}));
  CHECK(decide_downing(s, partitioned({0, 1}, 2, 4), node_id(2)).downed == nodes({2, 3}));
  CHECK(decide_downing(s, partitioned({}, 0), node_id(0)).downed.empty());
}

TEST_CASE("split brain: a member downed by an operator during a partition still counts on the "
          "other side") {
  split_brain_settings s;
  // Node 2 alone; it downed node 0 by hand, but node 0 runs on the other side.
  auto g = partitioned({0, 1}, 2, 3);
  g.find(node_id(0))->status = ms::down;
  CHECK(decide_downing(s, g, node_id(2)).downed == nodes({2}));
}

TEST_CASE("split brain: joining members on the other side count, on this side they do not") {
  split_brain_settings s;
  // Nodes 3 and 4 were joining when the partition hit; the leader on their side
  // may already have moved them up, so node 0's side (0, 1, 2 up) cannot be sure
  // of a majority over 3, 4, 5, 6.
  auto g = partitioned({3, 4, 5, 6}, 0, 7);
  g.find(node_id(3))->status = ms::joining;
  g.find(node_id(4))->status = ms::joining;
  CHECK(decide_downing(s, g, node_id(0)).downed == nodes({0, 1, 2}));
  // Nor can the other side, which knows only 5 and 6 for sure: both sides go
  // rather than both stay.
  auto h = partitioned({0, 1, 2}, 6, 7);
  h.find(node_id(3))->status = ms::joining;
  h.find(node_id(4))->status = ms::joining;
  CHECK(decide_downing(s, h, node_id(6)).downed == nodes({3, 4, 5, 6}));
}

TEST_CASE("split brain: static-quorum, keep-oldest and down-all") {
  split_brain_settings s;
  s.strategy = downing_strategy::static_quorum;
  s.quorum_size = 3;
  CHECK(decide_downing(s, partitioned({3, 4}, 0), node_id(0)).downed == nodes({3, 4}));
  CHECK(decide_downing(s, partitioned({0, 1, 2}, 3), node_id(3)).downed == nodes({3, 4}));
  s.strategy = downing_strategy::keep_oldest;
  // up numbers are i + 1: node 0 is the oldest.
  CHECK(decide_downing(s, partitioned({3, 4}, 0), node_id(0)).downed == nodes({3, 4}));
  CHECK(decide_downing(s, partitioned({0, 1, 2}, 3), node_id(3)).downed == nodes({3, 4}));
  // The oldest alone on its side goes (down-if-alone).
  CHECK(decide_downing(s, partitioned({1, 2, 3, 4}, 0), node_id(0)).downed == nodes({0}));
  CHECK(decide_downing(s, partitioned({0}, 1), node_id(1)).downed == nodes({0}));
  s.down_if_alone = false;
  CHECK(decide_downing(s, partitioned({0}, 1), node_id(1)).downed == nodes({1, 2, 3, 4}));
  s.strategy = downing_strategy::down_all;
  CHECK(decide_downing(s, partitioned({4}, 0), node_id(0)).downed == nodes({0, 1, 2, 3, 4}));
  s.strategy = downing_strategy::off;
  CHECK(decide_downing(s, partitioned({4}, 0), node_id(0)).downed.empty());
}

TEST_CASE("split brain: indirectly connected members are downed, the fully connected rest "
          "stays") {
  split_brain_settings s;
  auto g = partitioned({}, 0);
  g.overview.mark_unreachable(node_id(3), node_id(4));  // a flaky link between 3 and 4
  g.overview.mark_unreachable(node_id(4), node_id(3));
  auto d = decide_downing(s, g, node_id(0));
  CHECK(d.downed == nodes({3, 4}));
  // Observations of a crashed, already downed member do not make its observer
  // indirectly connected.
  auto h = partitioned({}, 0);
  h.find(node_id(4))->status = ms::down;
  h.overview.mark_unreachable(node_id(3), node_id(4));
  h.overview.mark_unreachable(node_id(0), node_id(3));
  CHECK(decide_downing(s, h, node_id(0)).downed == nodes({3}));
}

TEST_CASE("split brain: when indirect connections would down most members, down all") {
  split_brain_settings s;
  auto g = partitioned({}, 0);
  for (auto [a, b] : {std::pair{1, 2}, std::pair{3, 4}, std::pair{2, 1}, std::pair{4, 3}})
    g.overview.mark_unreachable(node_id(a), node_id(b));
  CHECK(decide_downing(s, g, node_id(0)).downed == nodes({0, 1, 2, 3, 4}));
  s.down_all_when_indirectly_connected = 0;
  CHECK(decide_downing(s, g, node_id(0)).downed == nodes({1, 2, 3, 4}));
}
