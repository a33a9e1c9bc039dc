// Cluster singletons in the simulator: one instance, on the oldest up member,
// moved only after the old instance stopped.
#include "troupe/membership/sim/membership_simulation.hpp"
#include "troupe/membership/sim/random_faults.hpp"
#include "troupe/membership/singleton_core.hpp"

#include <doctest/doctest.h>
#include <fmt/format.h>

#include <memory>

using namespace std::chrono_literals;
using namespace troupe::membership;
using namespace troupe::membership::sim;

namespace {

/// Membership plus one singleton manager per node; instances take a random
/// 0..200 ms to stop. Counts the instances that run at once.
class singleton_world {
public:
  explicit singleton_world(simulation_options o) : sim_(std::move(o)), rng_(sim_.options().seed) {
    managers_.resize(sim_.size());
    running_.assign(sim_.size(), false);
    last_core_.assign(sim_.size(), nullptr);
    sim_.on_effects = [this](node_index i, const effects&) { after_membership_step(i); };
  }

  membership_simulation& sim() { return sim_; }

  /// Instances in processes that still exist (a crash takes its instance along).
  std::size_t instances() const {
    std::size_t n = 0;
    for (node_index i = 0; i < sim_.size(); ++i)
      n += running_on(i);
    return n;
  }
  std::size_t max_instances() const { return max_instances_; }
  bool running_on(node_index i) const {
    auto st = sim_.at(i).state;
    return running_[i] && (st == membership_simulation::node_state::running
                           || st == membership_simulation::node_state::paused);
  }
  std::uint64_t starts() const { return starts_; }

  /// The single instance runs on the oldest up member.
  bool settled() const {
    if (instances() != 1)
      return false;
    for (node_index i = 0; i < sim_.size(); ++i)
      if (running_on(i)) {
        auto oldest = sim_.at(i).core->state().oldest();
        return oldest && oldest->node == sim_.at(i).core->self();
      }
    return false;
  }

private:
  void after_membership_step(node_index i) {
    auto& node = sim_.at(i);
    if (node.core.get() != last_core_[i]) {  // a new incarnation: a new manager
      last_core_[i] = node.core.get();
      running_[i] = false;
      managers_[i] = std::make_unique<singleton_core>(node.core->self(), "coordinator", "", 1s);
      schedule_tick(i, node.starts);
    }
    if (node.state != membership_simulation::node_state::running) {
      running_[i] = false;  // crashed, downed or removed: the process is gone
      return;
    }
    singleton_effects fx;
    managers_[i]->update(sim_.now(), node.core->state(), fx);
    apply(i, fx);
  }

  void schedule_tick(node_index i, std::uint32_t starts) {
    sim_.at(sim_.now() + 100ms, [this, i, starts] {
      if (sim_.at(i).starts != starts)
        return;
      if (sim_.running(i)) {
        singleton_effects fx;
        managers_[i]->tick(sim_.now(), fx);
        apply(i, fx);
      }
      schedule_tick(i, starts);
    });
  }

  void apply(node_index i, singleton_effects& fx) {
    auto starts = sim_.at(i).starts;
    for (auto& m : fx.messages) {
      auto to = static_cast<node_index>(m.to.address.port - 7000);
      sim_.send_extension(i, to, [this, to, m] {
        singleton_effects out;
        managers_[to]->receive(sim_.now(), m, out);
        apply(to, out);
      });
    }
    if (fx.start) {
      running_[i] = true;
      ++starts_;
      max_instances_ = std::max(max_instances_, instances());
    }
    if (fx.stop) {
      auto delay = duration{rng_.between(0, 200'000'000)};
      sim_.at(sim_.now() + delay, [this, i, starts] {
        if (sim_.at(i).starts != starts || !sim_.running(i))
          return;
        running_[i] = false;
        singleton_effects out;
        managers_[i]->instance_stopped(sim_.now(), out);
        apply(i, out);
      });
    }
  }

  membership_simulation sim_;
  deterministic_rng rng_;
  std::vector<std::unique_ptr<singleton_core>> managers_;
  std::vector<bool> running_;
  std::vector<const membership_core*> last_core_;
  std::size_t max_instances_ = 0;
  std::uint64_t starts_ = 0;
};

simulation_options options(std::size_t n, std::uint64_t seed) {
  simulation_options o;
  o.nodes = n;
  o.seed_nodes = n / 2 + 1;
  o.seed = seed;
  o.trace_lines = 0;
  return o;
}

} // namespace

TEST_CASE("singleton: one instance on the oldest member, and a graceful leave hands it over "
          "acknowledged") {
  singleton_world w{options(4, 3)};
  w.sim().start_all();
  REQUIRE(w.sim().run_until([&] { return w.sim().all_converged_up() && w.settled(); }, 30s));
  node_index holder = 0;
  while (!w.running_on(holder))
    ++holder;
  w.sim().leave(holder);
  REQUIRE(w.sim().run_until([&] { return !w.sim().running(holder) && w.settled(); }, 30s));
  CHECK_FALSE(w.running_on(holder));
  CHECK(w.max_instances() == 1);
  CHECK(w.starts() == 2);
}

TEST_CASE("singleton: several members leaving at once never run two instances") {
  singleton_world w{options(6, 11)};
  w.sim().start_all();
  REQUIRE(w.sim().run_until([&] { return w.sim().all_converged_up() && w.settled(); }, 30s));
  // The three oldest leave together: the fourth oldest must wait for all three.
  std::vector<std::pair<std::uint32_t, node_index>> by_age;
  for (node_index i = 0; i < 6; ++i)
    by_age.emplace_back(w.sim().at(i).core->self_member()->up_number, i);
  std::sort(by_age.begin(), by_age.end());
  for (int k = 0; k < 3; ++k)
    w.sim().leave(by_age[static_cast<std::size_t>(k)].second);
  REQUIRE(w.sim().run_until([&] { return w.settled() && w.sim().all_converged_up(); }, 60s));
  CHECK(w.running_on(by_age[3].second));
  CHECK(w.max_instances() == 1);
}

TEST_CASE("singleton: a crashed holder's instance starts elsewhere once it is removed") {
  singleton_world w{options(3, 5)};
  w.sim().start_all();
  REQUIRE(w.sim().run_until([&] { return w.sim().all_converged_up() && w.settled(); }, 30s));
  node_index holder = 0;
  while (!w.running_on(holder))
    ++holder;
  w.sim().crash(holder);
  CHECK(w.instances() == 0);
  REQUIRE(w.sim().run_until([&] { return w.settled(); }, 15s));
  CHECK(w.max_instances() == 1);
}

TEST_CASE("singleton: random crashes, pauses, leaves and message loss never run two instances") {
  fault_options f;
  f.max_pause = 2s;       // shorter than stable-after: a paused holder is not replaced
  f.partitions = false;  // partitions may run two (see singleton_core.hpp); not here
  std::size_t failures = 0;
  for (std::uint64_t seed = 1; seed <= 300; ++seed) {
    deterministic_rng rng{seed};
    singleton_world w{options(3 + rng.below(5), seed)};
    fault_options no_partitions = f;
    auto plan = schedule_random_faults(w.sim(), rng, no_partitions);
    w.sim().run_until(plan.all_healed);
    bool settled = w.sim().run_until([&] { return w.sim().all_converged_up() && w.settled(); },
                                     plan.all_healed + 40s);
    if (!settled || w.max_instances() > 1) {
      ++failures;
      if (failures <= 3)
        FAIL_CHECK(fmt::format("seed {}: settled={} max instances={}", seed, settled,
                               w.max_instances()));
    }
  }
  CHECK(failures == 0);
}
