// Membership scenarios in the simulator, one fault at a time: what a user of the
// cluster relies on, checked in virtual time.
#include "troupe/membership/sim/membership_simulation.hpp"

#include <doctest/doctest.h>
#include <fmt/format.h>

#include <algorithm>

using namespace std::chrono_literals;
using namespace troupe::membership;
using namespace troupe::membership::sim;

namespace {

simulation_options quiet(std::size_t n, std::uint64_t seed = 1) {
  simulation_options o;
  o.nodes = n;
  o.seed_nodes = n / 2 + 1;
  o.seed = seed;
  o.faults = link_faults{0.0, 0.0, 1ms, 5ms};
  o.restart_stopped_after.reset();
  o.trace_lines = 100000;
  return o;
}

/// The virtual time until every running node's state satisfies `pred`.
bool settle(membership_simulation& sim, const std::function<bool()>& pred, duration within) {
  return sim.run_until(pred, sim.now() + within);
}

bool up_everywhere(const membership_simulation& sim, std::size_t expected) {
  return sim.all_converged_up() && [&] {
    std::size_t running = 0;
    for (node_index i = 0; i < sim.size(); ++i)
      running += sim.running(i);
    return running == expected;
  }();
}

/// Whether every running node has removed (or never had) incarnation `gone`.
bool removed_everywhere(const membership_simulation& sim, const node_identity& gone) {
  for (node_index i = 0; i < sim.size(); ++i)
    if (sim.running(i) && sim.at(i).core->state().find(gone))
      return false;
  return true;
}

/// The failover budget of docs/membership.md: detection (the heartbeat interval,
/// the acceptable pause and phi's margin of about 5.3 deviations), stable-after,
/// one leader-actions interval, two ticks (when detection and decision are
/// checked), and log2(N) + 4 fast gossip rounds for the observation to reach the
/// leader and the down and removal to be acknowledged.
duration failover_budget(const membership_settings& s, std::size_t n) {
  auto rounds = static_cast<long>(std::ceil(std::log2(static_cast<double>(n)))) + 4;
  auto tick = membership_core{node_identity{}, s, 0}.tick_interval();
  return s.heartbeat_interval + s.detector.acceptable_pause + 53 * s.detector.min_std_deviation / 10
         + s.split_brain.stable_after + s.leader_actions_interval + 2 * tick
         + rounds * (s.gossip_interval / 3);
}

} // namespace

TEST_CASE("membership: nodes join through the seed nodes and all become up with one leader") {
  for (std::size_t n : {1u, 3u, 10u, 25u}) {
    membership_simulation sim{quiet(n)};
    sim.start_all();
    REQUIRE_MESSAGE(settle(sim, [&] { return up_everywhere(sim, n); }, 20s),
                    sim.describe() << sim.recent_trace());
    auto leader = sim.at(0).core->leader();
    for (node_index i = 0; i < n; ++i)
      CHECK(sim.at(i).core->leader() == leader);
    CHECK(sim.violations().empty());
  }
}

TEST_CASE("membership: a node that starts later joins, and a non-first seed never bootstraps "
          "alone") {
  membership_simulation sim{quiet(4)};
  sim.start(1);  // a seed, not the first
  sim.start(3);
  sim.run_for(10s);
  CHECK(sim.at(1).core->current_phase() == membership_core::phase::joining);
  sim.start(0);
  sim.start(2);
  CHECK(settle(sim, [&] { return up_everywhere(sim, 4); }, 20s));
}

TEST_CASE("membership: a crashed node is downed and removed everywhere within the failover "
          "budget") {
  for (std::size_t n : {3u, 10u, 25u, 100u}) {
    auto o = quiet(n, n);
    o.lost_signal_on_crash = 0;  // a silent death (power off), the slowest case
    membership_simulation sim{o};
    sim.start_all();
    REQUIRE(settle(sim, [&] { return up_everywhere(sim, n); }, 30s));
    sim.run_for(5s);  // heartbeat history
    auto victim = n - 1;
    auto gone = sim.at(victim).core->self();
    auto crashed_at = sim.now();
    sim.crash(victim);
    REQUIRE(settle(sim, [&] { return removed_everywhere(sim, gone); }, 30s));
    auto took = sim.now() - crashed_at;
    auto budget = failover_budget(sim.options().settings, n);
    MESSAGE(fmt::format("{} nodes: removed everywhere {:.2f}s after the crash (budget {:.2f}s)", n,
                        std::chrono::duration<double>(took).count(),
                        std::chrono::duration<double>(budget).count()));
    CHECK(took <= budget);
    CHECK(budget <= 10s);
    CHECK(sim.violations().empty());
  }
}

TEST_CASE("membership: a pause shorter than stable-after downs nobody") {
  membership_simulation sim{quiet(5)};
  sim.start_all();
  REQUIRE(settle(sim, [&] { return up_everywhere(sim, 5); }, 20s));
  sim.run_for(5s);
  auto paused = sim.at(2).core->self();
  sim.pause(2, 4500ms);  // unreachable after ~3.5 s, back before 3.5 + 3 s
  bool seen_unreachable = false;
  sim.run_until(
    [&] {
      seen_unreachable |= !sim.at(0).core->state().is_reachable(sim.at(0).core->self(), paused);
      return false;
    },
    sim.now() + 4500ms);
  CHECK(seen_unreachable);
  CHECK(settle(sim, [&] { return up_everywhere(sim, 5); }, 10s));
  CHECK(sim.at(2).core->self() == paused);  // the same incarnation, never downed
  CHECK(sim.violations().empty());
}

TEST_CASE("membership: keep-majority keeps the majority side and the minority downs itself") {
  membership_simulation sim{quiet(5)};
  sim.start_all();
  REQUIRE(settle(sim, [&] { return up_everywhere(sim, 5); }, 20s));
  sim.partition({0, 1, 2}, {3, 4});
  CHECK(settle(sim, [&] { return !sim.running(3) && !sim.running(4); }, 15s));
  CHECK(sim.at(3).stop_reason == "self_downed");
  CHECK(settle(sim, [&] { return up_everywhere(sim, 3); }, 10s));
  CHECK(sim.violations().empty());
  // The orchestrator restarts them once the network heals; they rejoin.
  sim.heal();
  sim.start(3);
  sim.start(4);
  CHECK(settle(sim, [&] { return up_everywhere(sim, 5); }, 20s));
}

TEST_CASE("membership: a graceful leave moves through leaving and exiting to removed") {
  membership_simulation sim{quiet(4)};
  std::vector<cluster_event::kind> seen_by_0;
  sim.on_effects = [&](node_index i, const effects& fx) {
    if (i == 0)
      for (auto& e : fx.events)
        if (e.subject.node.address == sim.at(2).address)
          seen_by_0.push_back(e.what);
  };
  sim.start_all();
  REQUIRE(settle(sim, [&] { return up_everywhere(sim, 4); }, 20s));
  seen_by_0.clear();
  sim.leave(2);
  CHECK(settle(sim, [&] { return !sim.running(2); }, 10s));
  CHECK(sim.at(2).stop_reason == "self_removed");
  CHECK(settle(sim, [&] { return up_everywhere(sim, 3); }, 10s));
  using k = cluster_event::kind;
  CHECK(seen_by_0 == std::vector<k>{k::member_left, k::member_exited, k::member_removed});
}

TEST_CASE("membership: a restarted node's new incarnation replaces the old one") {
  membership_simulation sim{quiet(3)};
  sim.start_all();
  REQUIRE(settle(sim, [&] { return up_everywhere(sim, 3); }, 20s));
  auto old = sim.at(2).core->self();
  sim.crash(2);
  sim.start(2);  // at once: the old incarnation is not even unreachable yet
  auto fresh = sim.at(2).core->self();
  CHECK(fresh != old);
  CHECK(settle(sim, [&] { return up_everywhere(sim, 3); }, 20s));
  CHECK(removed_everywhere(sim, old));
  CHECK(sim.violations().empty());
}

TEST_CASE("membership: an incompatible node is refused with a reason on both sides") {
  auto o = quiet(3);
  // Node 2 runs another number of shards: the compatibility hook refuses it.
  o.configure_node = [](node_index i, membership_settings& s) {
    s.require_equal("sharding.accounts.shards", i == 2 ? "100" : "1000");
  };
  membership_simulation sim{o};
  std::vector<std::string> reasons;
  sim.on_effects = [&](node_index i, const effects& fx) {
    for (auto& e : fx.events)
      if (e.what == cluster_event::kind::join_refused)
        reasons.push_back(fmt::format("{}: {}", i, e.reason));
  };
  sim.start(0);
  sim.start(1);
  REQUIRE(settle(sim, [&] { return up_everywhere(sim, 2); }, 20s));
  sim.start(2);
  CHECK(settle(sim, [&] { return !sim.running(2); }, 10s));
  CHECK(sim.at(2).stop_reason == "join_refused");
  REQUIRE(reasons.size() == 2);
  CHECK(reasons[0].find("'sharding.accounts.shards' is '1000' in the cluster but '100' on the "
                        "joining node")
        != std::string::npos);
  CHECK(reasons[1].find("2: refused by 127.0.0.1:700") == 0);
  CHECK(up_everywhere(sim, 2));
}

TEST_CASE("membership: an operator's down of a reachable node stops it") {
  membership_simulation sim{quiet(3)};
  sim.start_all();
  REQUIRE(settle(sim, [&] { return up_everywhere(sim, 3); }, 20s));
  sim.down(0, 2);
  CHECK(settle(sim, [&] { return !sim.running(2); }, 5s));
  CHECK(sim.at(2).stop_reason == "self_downed");
  CHECK(settle(sim, [&] { return up_everywhere(sim, 2); }, 15s));
}
