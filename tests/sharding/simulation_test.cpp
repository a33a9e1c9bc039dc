// Deterministic simulation of sharding: seeded fault schedules (crashes, pauses,
// partitions, leaves, message loss) while clients send commands; the invariants
// of sharding_simulation.hpp after every step, and a settled cluster after the
// last fault heals.
//
// Replay one schedule: SIM_SEED=<seed> build/tests/bin/troupe-tests-sharding
//   --test-case='*sharding simulation: random*'; more: SIM_SCHEDULES=<n>.
#include "troupe/membership/sim/random_faults.hpp"
#include "troupe/sharding/sim/sharding_simulation.hpp"

#include "support/sanitizer_build.hpp"

#include <doctest/doctest.h>
#include <fmt/format.h>

#include <cstdlib>
#include <optional>

using namespace std::chrono_literals;
using namespace troupe::sharding;
using namespace troupe::sharding::sim;
using troupe::membership::deterministic_rng;
using troupe::membership::sim::fault_options;
using troupe::membership::sim::schedule_random_faults;

namespace {

std::optional<std::uint64_t> env_number(const char* name) {
  if (auto v = std::getenv(name); v && *v)
    return std::strtoull(v, nullptr, 10);
  return std::nullopt;
}

sharding_sim_options options_for(deterministic_rng& rng, std::uint64_t seed) {
  sharding_sim_options o;
  auto n = 3 + rng.below(5);  // 3..7 nodes
  o.membership.nodes = n;
  o.membership.seed_nodes = n / 2 + 1;
  o.membership.seed = seed;
  o.membership.trace_lines = env_number("SIM_TRACE_LINES").value_or(300);
  o.number_of_shards = 12;
  o.entities = 30;
  o.coordinator.rebalance_interval = 2s;
  o.coordinator.begin_hand_off_timeout = 2s;
  o.coordinator.hand_off_timeout = 3s;
  o.coordinator.retry_interval = 500ms;
  o.region.retry_interval = 500ms;
  return o;
}

struct outcome {
  bool settled = false;
  std::vector<std::string> violations;
  std::string report;
  std::uint64_t acked = 0;
  std::uint64_t hand_offs = 0;
};

outcome run(std::uint64_t seed) {
  deterministic_rng rng{seed};
  sharding_simulation s{options_for(rng, seed)};
  fault_options f;
  f.fault_window = 30s;
  auto plan = schedule_random_faults(s.cluster(), rng, f);
  s.start_clients();
  s.cluster().run_until(plan.all_healed);
  s.stop_clients();
  s.probe_every_entity();
  outcome r;
  r.settled = s.cluster().run_until([&] { return s.settled(); }, plan.all_healed + 60s);
  s.final_checks();
  r.violations = s.violations();
  for (auto& v : s.cluster().violations())
    r.violations.push_back("membership: " + v);
  r.acked = s.acknowledged();
  r.hand_offs = s.hand_offs_completed();
  if (!r.settled || !r.violations.empty()) {
    r.report = fmt::format("seed {} ({} nodes), faults:\n", seed, s.cluster().size());
    for (auto& x : plan.faults)
      r.report += "  " + x + "\n";
    for (auto& v : r.violations)
      r.report += "VIOLATION " + v + "\n";
    r.report += s.describe() + s.cluster().recent_trace();
  }
  return r;
}

} // namespace

TEST_CASE("sharding simulation: random fault schedules never run two writers, lose nothing "
          "acknowledged, and settle") {
  auto only = env_number("SIM_SEED");
  // 1,000 schedules in Release; a sanitizer build (6-8x slower per schedule) runs
  // the first 300 of them, for memory errors and races, not for more coverage.
  auto count = only ? 1
                    : env_number("SIM_SCHEDULES")
                        .value_or(troupe::test::sanitizer_build ? 300 : 1000);
  auto first = only ? *only : env_number("SIM_FIRST_SEED").value_or(1);
  std::size_t failures = 0;
  std::uint64_t acked = 0;
  std::uint64_t hand_offs = 0;
  for (auto seed = first; seed < first + count; ++seed) {
    auto r = run(seed);
    acked += r.acked;
    hand_offs += r.hand_offs;
    if (!r.settled || !r.violations.empty()) {
      ++failures;
      if (failures <= 3)
        FAIL_CHECK(fmt::format("schedule failed (replay with SIM_SEED={}):\n{}", seed, r.report));
    }
  }
  MESSAGE(fmt::format("{} seeded schedules, {} failed; {} commands acknowledged, {} hand-offs "
                      "completed",
                      count, failures, acked, hand_offs));
  CHECK(failures == 0);
}
