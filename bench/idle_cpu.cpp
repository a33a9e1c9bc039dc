// idle_cpu: the CPU an idle node burns. Two troupe nodes in two processes, with the
// defaults a user gets, connected over the transport (heartbeats flowing), first
// busy with 2,000 request/response round trips, then left alone: the figure is the
// CPU time of the busier process over the idle window, in percent of one core
// (every thread counted, from /proc/<pid>/task/*/schedstat).
//
// The bar is absolute (an idle node stays under 2% of a core), so the baseline is
// the bar itself and ratio = 2% / troupe (>= 1: the bar holds). For reference the
// line also carries raw CAF 0.17.6 (an actor system with CAF's defaults and one
// idle actor, in the same process after the troupe node stopped).
#include "transport_common.hpp"

#include "troupe/actors/ask.hpp"

#include <dirent.h>
#include <thread>

namespace troupe::bench::transport {

namespace {

constexpr const char* bench_name = "idle_cpu";
constexpr double bar_percent = 2.0;
constexpr int busy_round_trips = 2000;

/// CPU time of every thread of `pid` so far, in seconds.
double cpu_seconds(pid_t pid) {
  auto dir = fmt::format("/proc/{}/task", pid);
  double total = 0;
  if (DIR* d = ::opendir(dir.c_str())) {
    while (auto* e = ::readdir(d)) {
      if (e->d_name[0] == '.')
        continue;
      std::ifstream in{dir + "/" + e->d_name + "/schedstat"};
      double ns = 0;
      if (in >> ns)
        total += ns / 1e9;
    }
    ::closedir(d);
  }
  return total;
}

/// Percent of one core that `pids` used, each, over `seconds` of doing nothing.
std::vector<double> idle_percent(const std::vector<pid_t>& pids, double seconds) {
  std::vector<double> before;
  for (auto p : pids)
    before.push_back(cpu_seconds(p));
  auto t0 = now_seconds();
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  auto wall = now_seconds() - t0;
  std::vector<double> result;
  for (std::size_t i = 0; i < pids.size(); ++i)
    result.push_back((cpu_seconds(pids[i]) - before[i]) / wall * 100.0);
  return result;
}

std::vector<double> measure_troupe(double seconds) {
  peer_process peer{bench_name, "troupe_echo"};
  bench_node me;
  auto dest = me.t->actor_for(remote::node_address{"127.0.0.1", peer.port()}, "echo");
  bench_msg msg{std::string(payload_size, 'r')};
  for (int i = 0; i < busy_round_trips; ++i)
    if (auto r = ask<bench_msg>(me.n->system(), dest, std::chrono::seconds{10}, msg); !r)
      die("idle_cpu: " + r.error().to_string());
  return idle_percent({::getpid(), peer.pid()}, seconds);
}

double measure_raw_caf(double seconds) {
  caf::actor_system_config cfg;
  caf::actor_system sys{cfg};
  auto a = sys.spawn(bench_echo);
  return idle_percent({::getpid()}, seconds).front();
}

std::vector<result> idle_cpu(const options& opts) {
  if (peer_role() == "troupe_echo") {
    serve_actor("echo", bench_echo);
    return {};
  }
  auto troupe = measure_troupe(opts.seconds);
  auto raw = measure_raw_caf(opts.seconds);
  result r{"idle_cpu", "percent of a core", std::max(troupe[0], troupe[1]), bar_percent, true};
  r.extra["baseline_is"] = "the bar: 2% of one core";
  r.extra["troupe_is"] = "the busier of two connected, idle nodes (heartbeats on), defaults";
  r.extra["node_percent"] = troupe;
  r.extra["raw_caf_percent"] = raw;
  r.extra["idle_seconds"] = opts.seconds;
  r.extra["config"] = "defaults";
  return {r};
}

} // namespace

TROUPE_BENCHMARK("idle_cpu",
                 "CPU of two connected, idle troupe nodes (percent of a core) vs the 2% bar",
                 idle_cpu);

} // namespace troupe::bench::transport
