// Membership benchmarks: failover, cluster_join (real troupe-node processes on
// 127.0.0.1, default settings) and gossip_cpu (the simulator).
#include "harness.hpp"

#include "support/child_process.hpp"
#include "support/free_ports.hpp"

#include "troupe/membership/management_client.hpp"
#include "troupe/membership/sim/membership_simulation.hpp"

#include <boost/asio.hpp>
#include <nlohmann/json.hpp>

#include <cmath>
#include <ctime>
#include <filesystem>
#include <memory>
#include <set>
#include <thread>

namespace troupe::bench {

namespace {

using test::child_process;
using test::free_ports;
using nlohmann::json;

std::string node_program() {
  auto self = std::filesystem::read_symlink("/proc/self/exe");
  auto p = self.parent_path().parent_path() / "tools" / "node" / "troupe-node";
  if (!std::filesystem::exists(p))
    die("troupe-node not found at " + p.string() + " (build it: cmake --build build)");
  return p.string();
}

struct process_cluster {
  std::vector<std::uint16_t> ports;
  std::vector<std::uint16_t> http;
  std::vector<std::unique_ptr<child_process>> nodes;

  /// Starts n troupe-node processes with the default settings (all of them seeds).
  explicit process_cluster(std::size_t n) {
    auto p = free_ports(2 * n);
    ports.assign(p.begin(), p.begin() + static_cast<std::ptrdiff_t>(n));
    http.assign(p.begin() + static_cast<std::ptrdiff_t>(n), p.end());
    std::string seeds;
    for (auto port : ports)
      seeds += fmt::format("{}127.0.0.1:{}", seeds.empty() ? "" : ",", port);
    auto program = node_program();
    for (std::size_t i = 0; i < n; ++i)
      nodes.push_back(std::make_unique<child_process>(
        program, std::vector<std::string>{"--port", std::to_string(ports[i]), "--seeds", seeds,
                                          "--http-port", std::to_string(http[i]),
                                          "--log.level=error"}));
  }

  void wait_all(const std::string& what) {
    for (std::size_t i = 0; i < nodes.size(); ++i)
      if (!nodes[i]->wait_for_line("troupe-node node " + what, std::chrono::seconds{60}))
        die(fmt::format("node {} never printed '{}'", i, what));
  }

  /// Whether node i's view holds `gone` (host:port) as a member.
  bool still_has(std::size_t i, const std::string& gone) {
    auto r = membership::management_call({"127.0.0.1", http[i]}, "GET", "/cluster/members");
    if (!r || r->status != 200)
      return true;
    auto doc = json::parse(r->body, nullptr, false);
    for (auto& m : doc["members"])
      if (m["address"] == gone)
        return true;
    return false;
  }
};

/// The failover budget of docs/membership.md with the default settings.
double default_budget_seconds(std::size_t n) {
  membership::membership_settings s;
  auto tick = membership::membership_core{{}, s, 0}.tick_interval();
  auto rounds = std::ceil(std::log2(static_cast<double>(n))) + 4;
  auto d = s.heartbeat_interval + s.detector.acceptable_pause + 53 * s.detector.min_std_deviation / 10
           + s.split_brain.stable_after + s.leader_actions_interval + 2 * tick;
  return std::chrono::duration<double>(d).count()
         + rounds * std::chrono::duration<double>(s.gossip_interval / 3).count();
}

std::vector<result> failover(const options&) {
  constexpr std::size_t n = 5;
  std::vector<double> measured;
  for (int round = 0; round < 3; ++round) {
    process_cluster c{n};
    c.wait_all("up:");
    auto victim = n - 1;
    auto gone = fmt::format("127.0.0.1:{}", c.ports[victim]);
    // Every survivor sees all five first.
    for (std::size_t i = 0; i < victim; ++i)
      while (!c.still_has(i, gone))
        std::this_thread::sleep_for(std::chrono::milliseconds{5});
    auto t0 = now_seconds();
    c.nodes[victim]->kill();
    // Polling every 5 ms: precise enough for seconds, and it leaves the CPU to
    // the nodes being measured.
    for (std::size_t i = 0; i < victim; ++i)
      while (c.still_has(i, gone)) {
        if (now_seconds() - t0 > 60)
          die("failover: the killed node was not removed within 60 s");
        std::this_thread::sleep_for(std::chrono::milliseconds{5});
      }
    measured.push_back(now_seconds() - t0);
  }
  auto median = percentile(measured, 50);
  result r{"failover", "s", median, default_budget_seconds(n), true};
  r.extra["nodes"] = n;
  r.extra["rounds"] = measured;
  r.extra["what"] = "kill -9 of one of 5 troupe-node processes until every survivor removed it; "
                    "baseline = the failover budget of the default settings";
  return {r};
}

std::vector<result> cluster_join(const options&) {
  std::vector<result> out;
  for (std::size_t n : {5u, 10u}) {
    auto t0 = now_seconds();
    process_cluster c{n};
    c.wait_all("listening:");
    auto listening = now_seconds() - t0;
    c.wait_all("up:");
    auto up = now_seconds() - t0;
    result r{fmt::format("cluster_join_{}", n), "s", up, listening, true};
    r.extra["what"] = fmt::format("start {} troupe-node processes until every one is up; "
                                  "baseline = until every one listens (process start)",
                                  n);
    out.push_back(r);
  }
  return out;
}

/// CPU seconds the simulator spends per node and virtual second of a converged,
/// idle cluster of n nodes.
double cpu_per_node_second(std::size_t n) {
  membership::sim::simulation_options o;
  o.nodes = n;
  o.seed_nodes = n / 2 + 1;
  o.faults = membership::sim::link_faults{0, 0, std::chrono::milliseconds{1},
                                          std::chrono::milliseconds{2}};
  o.trace_lines = 0;
  o.invariants.split_brain = false;
  membership::sim::membership_simulation sim{o};
  sim.start_all();
  if (!sim.run_until([&] { return sim.all_converged_up(); }, std::chrono::seconds{60}))
    die("gossip_cpu: the simulated cluster did not converge");
  auto cpu = [] {
    timespec ts{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) + ts.tv_nsec / 1e9;
  };
  constexpr double virtual_seconds = 60;
  auto c0 = cpu();
  sim.run_for(std::chrono::seconds{static_cast<int>(virtual_seconds)});
  return (cpu() - c0) / (static_cast<double>(n) * virtual_seconds);
}

std::vector<result> gossip_cpu(const options&) {
  result r{"gossip_cpu", "cpu_s/node/s", cpu_per_node_second(25), cpu_per_node_second(3), true};
  r.extra["what"] = "CPU per node per second of a converged idle 25-node cluster in the "
                    "simulator (gossip, heartbeats, detectors, invariant checks); baseline = "
                    "the same for 3 nodes, so the ratio shows how the cost per node grows";
  return {r};
}

} // namespace

TROUPE_BENCHMARK("failover", "kill -9 one of 5 nodes; time until every survivor removed it",
                 failover);
TROUPE_BENCHMARK("cluster_join", "start 5 and 10 nodes; time until every one is up", cluster_join);
TROUPE_BENCHMARK("gossip_cpu", "CPU per node-second of an idle 25-node simulated cluster",
                 gossip_cpu);

} // namespace troupe::bench
