// Random fault schedules for the membership simulation: one seed, one schedule.
//
// A schedule starts the nodes at staggered times, lets the cluster form, then
// injects up to max_faults faults at random times within the fault window:
// partitions into two random sides, one-way link blocks (indirect connections),
// crashes (restarted by the simulation's orchestrator), pauses, bursts of message
// loss, graceful leaves and operator downs. Every fault ends by the returned time,
// when the network is healed and nothing is paused; what happens after that is
// the convergence the test checks.
#pragma once

#include "troupe/membership/sim/membership_simulation.hpp"

#include <string>
#include <vector>

namespace troupe::membership::sim {

struct fault_options {
  duration start_spread = std::chrono::seconds{2};   ///< nodes start within this
  duration formation = std::chrono::seconds{6};      ///< no faults before this
  duration fault_window = std::chrono::seconds{40};
  std::size_t max_faults = 6;
  bool partitions = true;  ///< partitions and one-way link blocks
  duration max_partition = std::chrono::seconds{15};
  duration max_pause = std::chrono::milliseconds{2500};
  double burst_drop = 0.3;
  bool leaves = true;
  bool operator_downs = true;
};

struct fault_plan {
  timestamp all_healed{0};           ///< every fault has ended by then
  std::vector<std::string> faults;   ///< what was planned, for failure messages
};

/// Schedules the starts and faults on `sim` (sim.at) using `rng`.
fault_plan schedule_random_faults(membership_simulation& sim, deterministic_rng& rng,
                                  const fault_options& options);

} // namespace troupe::membership::sim
