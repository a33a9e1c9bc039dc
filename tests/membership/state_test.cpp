// The membership state's building blocks: statuses, vector clocks, reachability,
// gossip merge, convergence, leader and oldest.
#include "membership_test_support.hpp"

#include "troupe/membership/member.hpp"
#include "troupe/membership/reachability.hpp"
#include "troupe/membership/vector_clock.hpp"

#include <doctest/doctest.h>

using namespace troupe::membership;
using namespace troupe::membership::test;
using ms = member_status;

TEST_CASE("member status: only the allowed transitions, and nothing leaves removed") {
  CHECK(is_allowed_transition(ms::joining, ms::up));
  CHECK(is_allowed_transition(ms::up, ms::leaving));
  CHECK(is_allowed_transition(ms::exiting, ms::down));
  CHECK_FALSE(is_allowed_transition(ms::up, ms::joining));
  CHECK_FALSE(is_allowed_transition(ms::down, ms::up));
  CHECK_FALSE(is_allowed_transition(ms::leaving, ms::up));
  for (int s = 0; s <= static_cast<int>(ms::removed); ++s)
    CHECK_FALSE(is_allowed_transition(ms::removed, static_cast<ms>(s)));
  // An observer may skip states between two gossips, never go back.
  CHECK(can_move(ms::joining, ms::exiting));
  CHECK(can_move(ms::up, ms::removed));
  CHECK(can_move(ms::down, ms::down));
  CHECK_FALSE(can_move(ms::down, ms::exiting));
  CHECK_FALSE(can_move(ms::exiting, ms::leaving));
  CHECK(member_status_from_string("weakly-up") == ms::weakly_up);
  CHECK_FALSE(member_status_from_string("sleeping"));
}

TEST_CASE("vector clock: descent, concurrency and merge") {
  vector_clock a;
  a.increment(node_id(1));
  auto b = a;
  b.increment(node_id(2));
  CHECK(a.compare(b) == vector_clock::ordering::before);
  CHECK(b.compare(a) == vector_clock::ordering::after);
  CHECK(a.compare(a) == vector_clock::ordering::same);
  auto c = a;
  c.increment(node_id(3));
  CHECK(b.compare(c) == vector_clock::ordering::concurrent);
  auto m = b.merge(c);
  CHECK(m.compare(b) == vector_clock::ordering::after);
  CHECK(m.compare(c) == vector_clock::ordering::after);
  CHECK(m == c.merge(b));
  m.prune(node_id(3));
  CHECK(m.at(node_id(3)) == 0);
  CHECK(m.at(node_id(1)) == 1);
}

TEST_CASE("reachability: one observer spreads unreachability, all must lift it") {
  reachability r;
  CHECK(r.mark_unreachable(node_id(1), node_id(3)));
  CHECK_FALSE(r.mark_unreachable(node_id(1), node_id(3)));
  CHECK(r.mark_unreachable(node_id(2), node_id(3)));
  CHECK_FALSE(r.is_reachable(node_id(3)));
  CHECK(r.mark_reachable(node_id(1), node_id(3)));
  CHECK_FALSE(r.is_reachable(node_id(3)));  // node 2 still cannot reach it
  CHECK(r.mark_reachable(node_id(2), node_id(3)));
  CHECK(r.is_reachable(node_id(3)));
}

TEST_CASE("reachability: merge keeps each observer's newer row, in either order") {
  reachability older;
  older.mark_unreachable(node_id(1), node_id(3));
  auto newer = older;
  newer.mark_reachable(node_id(1), node_id(3));  // version 2
  reachability other;
  other.mark_unreachable(node_id(2), node_id(4));
  auto ab = reachability::merge(reachability::merge(older, newer), other);
  auto ba = reachability::merge(other, reachability::merge(newer, older));
  CHECK(ab == ba);
  CHECK(ab.is_reachable(node_id(3)));
  CHECK_FALSE(ab.is_reachable(node_id(4)));
}

TEST_CASE("gossip merge: the later status wins, tombstones win, and order does not matter") {
  auto base = state_of({up(0), up(1), with_status(2, ms::joining)});
  auto a = base;
  a.find(node_id(1))->status = ms::leaving;
  a.changed_by(node_id(0));
  auto b = base;
  b.find(node_id(2))->status = ms::up;
  b.find(node_id(2))->up_number = 4;
  b.remove(node_id(1), std::chrono::seconds{5});
  b.changed_by(node_id(2));
  auto ab = gossip::merge(a, b);
  auto ba = gossip::merge(b, a);
  CHECK(ab == ba);
  CHECK(ab.find(node_id(1)) == nullptr);  // removed beats leaving
  CHECK(ab.is_tombstoned(node_id(1)));
  CHECK(ab.find(node_id(2))->status == ms::up);
  CHECK(ab.find(node_id(2))->up_number == 4);
  CHECK(ab.version.at(node_id(1)) == 0);  // a removed node's clock entry is pruned
  CHECK(ab.seen.empty());
}

TEST_CASE("gossip: convergence needs every up member's view, and unreachable ones down") {
  auto g = state_of({up(0), up(1), up(2), with_status(3, ms::joining)});
  g.seen = {node_id(0), node_id(1), node_id(2)};  // the joining member need not have seen it
  CHECK(g.converged());
  g.seen = {node_id(0), node_id(1)};
  CHECK_FALSE(g.converged());
  g.mark_seen(node_id(2));
  g.overview.mark_unreachable(node_id(0), node_id(2));
  CHECK_FALSE(g.converged());
  g.find(node_id(2))->status = ms::down;
  CHECK(g.converged());
  // A down observer's observations do not count.
  g.overview.mark_unreachable(node_id(2), node_id(1));
  CHECK(g.converged());
}

TEST_CASE("gossip: while no member is up, convergence needs every joining member's view") {
  // Two joiners of a forming cluster: the one that has not seen the state with
  // the other must not let that state converge, or each could lead its own view.
  auto g = state_of({with_status(0, ms::joining), with_status(1, ms::joining),
                     with_status(2, ms::weakly_up)});
  g.seen = {node_id(0), node_id(2)};
  CHECK_FALSE(g.converged());
  g.mark_seen(node_id(1));
  CHECK(g.converged());
  // Once one member is up, joining ones no longer hold convergence back.
  g.find(node_id(0))->status = ms::up;
  g.seen = {node_id(0)};
  CHECK(g.converged());
}

TEST_CASE("gossip: the leader is the first reachable up member by address, and the oldest has the "
          "smallest up number") {
  auto g = state_of({up(0, 3), up(1, 1), up(2, 2), with_status(3, ms::joining)});
  CHECK(g.leader(node_id(2)) == node_id(0));
  CHECK(g.oldest()->node == node_id(1));
  g.overview.mark_unreachable(node_id(2), node_id(0));
  CHECK(g.leader(node_id(2)) == node_id(1));
  CHECK(g.leader(node_id(0)) == node_id(0));  // a node always counts itself reachable
  auto only_joining = state_of({with_status(4, ms::joining), with_status(3, ms::joining)});
  CHECK(only_joining.leader(node_id(4)) == node_id(3));
  g.find(node_id(1))->roles = {"backend"};
  CHECK(g.oldest("backend")->node == node_id(1));
  CHECK(g.oldest("frontend") == nullptr);
}
