#include "troupe/membership/sim/random_faults.hpp"

#include <fmt/format.h>

#include <algorithm>

namespace troupe::membership::sim {

namespace {

double seconds(timestamp t) {
  return std::chrono::duration<double>(t).count();
}

duration random_duration(deterministic_rng& rng, duration lo, duration hi) {
  return duration{rng.between(lo.count(), hi.count())};
}

/// A random split of 0..n-1 into two non-empty sides.
std::pair<std::vector<node_index>, std::vector<node_index>> random_sides(deterministic_rng& rng,
                                                                         std::size_t n) {
  std::vector<node_index> all(n);
  for (std::size_t i = 0; i < n; ++i)
    all[i] = i;
  for (std::size_t i = n - 1; i > 0; --i)
    std::swap(all[i], all[rng.below(i + 1)]);
  auto cut = 1 + rng.below(n - 1);
  return {{all.begin(), all.begin() + static_cast<std::ptrdiff_t>(cut)},
          {all.begin() + static_cast<std::ptrdiff_t>(cut), all.end()}};
}

} // namespace

fault_plan schedule_random_faults(membership_simulation& sim, deterministic_rng& rng,
                                  const fault_options& o) {
  fault_plan plan;
  auto n = sim.size();
  for (node_index i = 0; i < n; ++i)
    sim.at(random_duration(rng, duration::zero(), o.start_spread), [&sim, i] { sim.start(i); });
  auto faults = o.max_faults == 0 ? 0 : rng.below(o.max_faults + 1);
  timestamp end = o.formation;
  for (std::size_t k = 0; k < faults; ++k) {
    timestamp at = o.formation + random_duration(rng, duration::zero(), o.fault_window);
    std::string what;
    timestamp over = at;
    switch (rng.below(8)) {
      case 0:
      case 1: {  // partition
        if (n < 2 || !o.partitions)
          break;
        auto [a, b] = random_sides(rng, n);
        auto length = random_duration(rng, std::chrono::milliseconds{500}, o.max_partition);
        what = fmt::format("partition {} | {} for {:.1f}s", fmt::join(a, ","), fmt::join(b, ","),
                           seconds(length));
        sim.at(at, [&sim, a = a, b = b] { sim.partition(a, b); });
        over = at + length;
        sim.at(over, [&sim] { sim.heal(); });
        break;
      }
      case 2: {  // a one-way link failure: indirectly connected nodes
        if (n < 3 || !o.partitions)
          break;
        auto x = rng.below(n);
        auto y = (x + 1 + rng.below(n - 1)) % n;
        auto length = random_duration(rng, std::chrono::milliseconds{500}, o.max_partition);
        what = fmt::format("block {} -> {} for {:.1f}s", x, y, seconds(length));
        sim.at(at, [&sim, x, y] { sim.block(x, y); });
        over = at + length;
        sim.at(over, [&sim] { sim.heal(); });
        break;
      }
      case 3:
      case 4: {  // crash (the orchestrator restarts it)
        auto x = rng.below(n);
        what = fmt::format("crash {}", x);
        sim.at(at, [&sim, x] { sim.crash(x); });
        break;
      }
      case 5: {  // pause
        auto x = rng.below(n);
        auto length = random_duration(rng, std::chrono::milliseconds{100}, o.max_pause);
        what = fmt::format("pause {} for {:.1f}s", x, seconds(length));
        sim.at(at, [&sim, x, length] { sim.pause(x, length); });
        over = at + length;
        break;
      }
      case 6: {  // a burst of message loss
        auto length = random_duration(rng, std::chrono::milliseconds{500}, std::chrono::seconds{5});
        auto drop = o.burst_drop;
        what = fmt::format("drop {:.0f}% for {:.1f}s", drop * 100, seconds(length));
        sim.at(at, [&sim, drop] { sim.net().faults().drop = drop; });
        over = at + length;
        auto base = sim.options().faults.drop;
        sim.at(over, [&sim, base] { sim.net().faults().drop = base; });
        break;
      }
      case 7: {  // a graceful leave or an operator's down
        auto x = rng.below(n);
        if (o.operator_downs && rng.chance(0.3)) {
          auto by = rng.below(n);
          what = fmt::format("{} downs {}", by, x);
          sim.at(at, [&sim, by, x] { sim.down(by, x); });
        } else if (o.leaves) {
          what = fmt::format("{} leaves", x);
          sim.at(at, [&sim, x] { sim.leave(x); });
        }
        break;
      }
    }
    if (!what.empty())
      plan.faults.push_back(fmt::format("t={:.1f}s {}", seconds(at), what));
    end = std::max(end, over);
  }
  plan.all_healed = end;
  sim.at(end, [&sim] { sim.heal(); });
  std::sort(plan.faults.begin(), plan.faults.end());
  return plan;
}

} // namespace troupe::membership::sim
