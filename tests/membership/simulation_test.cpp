// Deterministic simulation of membership: thousands of seeded fault schedules,
// invariants after every step, convergence after the last fault.
//
// Replay one schedule: SIM_SEED=<seed> build/tests/bin/troupe-tests-membership
//   --test-case='*random fault schedules*'   (prints its trace on failure)
// More schedules: SIM_SCHEDULES=<n> (from SIM_FIRST_SEED=<seed>, default 1).
#include "troupe/membership/sim/membership_simulation.hpp"
#include "troupe/membership/sim/random_faults.hpp"

#include "support/sanitizer_build.hpp"

#include <doctest/doctest.h>
#include <fmt/format.h>

#include <chrono>
#include <cstdlib>
#include <optional>
#include <string>

using namespace std::chrono_literals;
using namespace troupe::membership;
using namespace troupe::membership::sim;

namespace {

std::optional<std::uint64_t> env_number(const char* name) {
  if (auto v = std::getenv(name); v && *v)
    return std::strtoull(v, nullptr, 10);
  return std::nullopt;
}

/// Mostly small clusters, sometimes up to 25 nodes.
std::size_t cluster_size(deterministic_rng& rng) {
  auto r = rng.below(100);
  if (r < 60)
    return 3 + rng.below(3);   // 3..5
  if (r < 90)
    return 6 + rng.below(5);   // 6..10
  return 11 + rng.below(15);   // 11..25
}

struct outcome {
  bool converged = false;
  std::vector<std::string> violations;
  std::uint64_t hash = 0;
  std::string report;
  double converged_after = 0;  ///< virtual seconds after the last fault healed
};

/// The bound the test states for convergence after the last fault heals: a
/// restarted node's join (seed timeout, one retry), a crashed incarnation's
/// detection and the resolver's stable-after (twice: a second decision may follow
/// the first), and twenty gossip rounds for dissemination. With the defaults: 30 s.
duration convergence_bound(const membership_settings& s) {
  return s.seed_node_timeout + s.retry_unsuccessful_join_after + s.heartbeat_interval
         + s.detector.acceptable_pause + 2 * s.split_brain.stable_after
         + *s.split_brain.down_all_when_unstable + 20 * s.gossip_interval;
}

outcome run_schedule(std::uint64_t seed) {
  deterministic_rng rng{seed};
  simulation_options o;
  o.nodes = cluster_size(rng);
  // More than half the nodes are seeds, so every majority side holds one and a
  // restarted node finds the surviving cluster (docs/membership.md, "Seed nodes").
  o.seed_nodes = o.nodes / 2 + 1;
  o.seed = rng.next();
  o.trace_lines = env_number("SIM_TRACE_LINES").value_or(400);
  o.trace_messages = env_number("SIM_TRACE_MESSAGES").value_or(0) != 0;
  membership_simulation sim{o};
  auto plan = schedule_random_faults(sim, rng, fault_options{});
  sim.run_until(plan.all_healed);
  auto bound = convergence_bound(sim.options().settings);
  outcome r;
  r.converged = sim.run_until([&] { return sim.all_converged_up(); }, plan.all_healed + bound);
  r.converged_after = std::chrono::duration<double>(sim.now() - plan.all_healed).count();
  r.violations = sim.violations();
  r.hash = sim.trace_hash();
  if (!r.converged || !r.violations.empty()) {
    r.report = fmt::format("seed {} ({} nodes), faults:\n", seed, o.nodes);
    for (auto& f : plan.faults)
      r.report += "  " + f + "\n";
    for (auto& v : r.violations)
      r.report += "VIOLATION " + v + "\n";
    r.report += sim.describe() + "last trace lines:\n" + sim.recent_trace();
  }
  return r;
}

} // namespace

TEST_CASE("membership simulation: random fault schedules keep every invariant and converge") {
  auto only = env_number("SIM_SEED");
  // 2,000 schedules in Release; a sanitizer build (6-9x slower per schedule under
  // ASan) runs the first 400 of them, for memory errors and races, not for more
  // coverage.
  auto count = only ? 1
                    : env_number("SIM_SCHEDULES")
                        .value_or(troupe::test::sanitizer_build ? 400 : 2000);
  auto first = only ? *only : env_number("SIM_FIRST_SEED").value_or(1);
  std::size_t failures = 0;
  double worst = 0;
  for (std::uint64_t seed = first; seed < first + count; ++seed) {
    auto r = run_schedule(seed);
    worst = std::max(worst, r.converged ? r.converged_after : 0.0);
    if (!r.converged || !r.violations.empty()) {
      ++failures;
      if (failures <= 3)
        FAIL_CHECK(fmt::format("schedule failed (replay with SIM_SEED={}):\n{}", seed, r.report));
    }
  }
  MESSAGE(fmt::format("{} seeded schedules, {} failed; slowest convergence {:.1f}s after the "
                      "last fault (bound {:.0f}s)",
                      count, failures, worst,
                      std::chrono::duration<double>(convergence_bound(membership_settings{}))
                        .count()));
  CHECK(failures == 0);
}

TEST_CASE("membership simulation: the same seed gives the same trace") {
  for (std::uint64_t seed : {7u, 99u, 12345u}) {
    auto a = run_schedule(seed);
    auto b = run_schedule(seed);
    CHECK(a.hash == b.hash);
  }
}
