// troupe-sensor-demo: the sensor pipeline on a 3-node cluster (docs/streams.md,
// "Samples").
//
// Starts three troupe-sensor-node processes on 127.0.0.1 sharing one SQLite
// journal, each hosting sensors and reading lines on a TCP port of its own;
// connects --clients TCP clients, spread over the three nodes, that send
// --readings readings of --sensors sensors (each sensor over one connection) and a
// few malformed lines; waits until every reading is acknowledged; asks every
// sensor for its aggregate and compares it with the fold of the readings sent.
// Exit code 0 when every reading was applied exactly once, 1 when not (or on a
// runtime failure), 2 on usage errors.
#include "readings.hpp"
#include "status.hpp"

#include "troupe/persistence/sqlite_journal.hpp"

#include "troupe/cli/command_line.hpp"
#include <fmt/format.h>

#include <csignal>
#include <sys/prctl.h>
#include <sys/wait.h>

#include <array>
#include <chrono>
#include <filesystem>
#include <thread>

using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

struct options {
  std::int64_t readings = 20'000;
  std::int64_t sensors = 24;
  std::int64_t clients = 3;
  std::int64_t malformed = 2;
  std::int64_t parallelism = 256;
  std::string dir;
};

constexpr std::size_t nodes = 3;

/// `count` distinct free ports on 127.0.0.1: all bound at once, then released
/// for the nodes to bind.
std::vector<std::uint16_t> free_ports(std::size_t count) {
  std::vector<int> held;
  std::vector<std::uint16_t> ports;
  for (std::size_t i = 0; i < count; ++i) {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    held.push_back(fd);
    ports.push_back(ntohs(a.sin_port));
  }
  for (int fd : held)
    ::close(fd);
  return ports;
}

/// A node process: its ports and pid; its stdout and stderr go to node-<i>.log.
struct node_process {
  std::uint16_t port = 0, http = 0, listen = 0;
  pid_t pid = -1;

  void start(const fs::path& program, const fs::path& log, const std::vector<std::string>& args) {
    std::vector<std::string> all{program.string()};
    all.insert(all.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& a : all)
      argv.push_back(a.data());
    argv.push_back(nullptr);
    pid = ::fork();
    if (pid != 0)
      return;
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // the node dies with the demo, however it ends
    if (int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644); fd >= 0) {
      ::dup2(fd, 1);
      ::dup2(fd, 2);
    }
    ::execv(program.c_str(), argv.data());
    ::_exit(127);
  }
  /// SIGTERM (the node leaves the cluster), then reaps it.
  void stop() {
    if (pid <= 0)
      return;
    ::kill(pid, SIGTERM);
    ::waitpid(pid, nullptr, 0);
    pid = -1;
  }
};

/// Polls `f` (which returns true when done) every 100 ms until `within` passes.
template <class F>
bool poll(F f, std::chrono::seconds within) {
  auto deadline = std::chrono::steady_clock::now() + within;
  while (!f()) {
    if (std::chrono::steady_clock::now() >= deadline)
      return false;
    std::this_thread::sleep_for(100ms);
  }
  return true;
}

/// What client c sends: its sensors' readings in order, and (client 0) the
/// malformed lines spread among them.
std::string client_text(const options& o, std::size_t c) {
  auto n = static_cast<std::size_t>(o.readings);
  auto m = static_cast<std::size_t>(o.sensors);
  auto every = o.malformed > 0 ? n / static_cast<std::size_t>(o.malformed) + 1 : n + 1;
  static constexpr std::array<std::string_view, 3> bad{"sensor-1 twenty-one 1700000000000",
                                                       "not a reading at all, clearly", "sensor-2 4.5"};
  std::string text;
  std::size_t bad_sent = 0;
  for (std::size_t i = 0; i < n; ++i) {
    if (c == 0 && i % every == every / 2 && bad_sent < static_cast<std::size_t>(o.malformed))
      text += fmt::format("{}\n", bad[bad_sent++ % bad.size()]);
    if (sensors::client_of(i % m, static_cast<std::size_t>(o.clients)) == c)
      text += sensors::format_line(sensors::generated_reading(i, m));
  }
  return text;
}

/// The aggregates the sensors must hold: the fold of every reading sent.
std::map<std::string, sensors::aggregate> expected_aggregates(const options& o) {
  std::map<std::string, sensors::aggregate> out;
  auto m = static_cast<std::size_t>(o.sensors);
  for (std::size_t i = 0; i < static_cast<std::size_t>(o.readings); ++i) {
    auto r = sensors::generated_reading(i, m);
    out[r.sensor].add(r.value, r.timestamp);
  }
  return out;
}

int run(const options& o, const fs::path& self_dir) {
  fs::path dir = o.dir.empty() ? fs::temp_directory_path() / fmt::format("troupe-sensor-demo-{}", ::getpid())
                               : fs::path{o.dir};
  fs::create_directories(dir);
  auto journal = dir / "sensors.db";
  fs::remove(journal);
  troupe::persistence::sqlite_options so;
  so.path = journal.string();
  so.create_if_missing = true;
  if (auto j = troupe::persistence::sqlite_journal::open(so); !j) {
    fmt::print(stderr, "cannot create the journal: {}\n", j.error().to_string());
    return 1;
  }
  std::array<node_process, nodes> cluster;
  auto ports = free_ports(3 * nodes);
  std::string seeds;
  for (std::size_t i = 0; i < nodes; ++i) {
    cluster[i].port = ports[i];
    cluster[i].http = ports[nodes + i];
    cluster[i].listen = ports[2 * nodes + i];
    seeds += fmt::format("{}127.0.0.1:{}", i == 0 ? "" : ",", ports[i]);
  }
  auto stop_all = [&] {
    for (auto& p : cluster)
      p.stop();
  };
  auto fail = [&](const std::string& what) {
    fmt::print(stderr, "demo failed: {} (logs in {})\n", what, dir.string());
    stop_all();
    return 1;
  };
  fmt::print("troupe sensor pipeline: 3 nodes on 127.0.0.1, one SQLite journal ({})\n", journal.string());
  for (std::size_t i = 0; i < nodes; ++i) {
    auto& p = cluster[i];
    p.start(self_dir / "troupe-sensor-node", dir / fmt::format("node-{}.log", i + 1),
            {"--port", std::to_string(p.port), "--seeds", seeds, "--roles", "sensor", "--journal",
             journal.string(), "--http-port", std::to_string(p.http), "--sensor.listen",
             fmt::format("127.0.0.1:{}", p.listen), "--sensor.parallelism",
             std::to_string(o.parallelism), fmt::format("--node.name=sensor-node-{}", i + 1),
             "--cluster.gossip-interval=200ms", "--cluster.join-retry-interval=200ms",
             "--cluster.allow-weakly-up-members=0", "--log.level=warn"});
    if (p.pid <= 0)
      return fail("cannot start troupe-sensor-node next to this program");
  }
  auto ready = [&](const node_process& p) {
    auto r = troupe::membership::management_call({"127.0.0.1", p.http}, "GET", "/health/ready", {}, 2s);
    return r && r->status == 200;
  };
  if (!poll([&] { return std::all_of(cluster.begin(), cluster.end(), ready); }, 60s))
    return fail("the nodes did not come up within 60 s");
  fmt::print("cluster up: 3 nodes, each hosting sensors and reading lines on TCP ports {}, {}, {}\n",
             cluster[0].listen, cluster[1].listen, cluster[2].listen);

  // The clients: client c writes to node c mod 3, blocking while TCP pushes back.
  auto began = std::chrono::steady_clock::now();
  std::vector<std::thread> clients;
  std::vector<std::string> client_errors(static_cast<std::size_t>(o.clients));
  for (std::size_t c = 0; c < static_cast<std::size_t>(o.clients); ++c)
    clients.emplace_back([&, c] {
      sensors::line_client client;
      auto text = client_text(o, c);
      auto ok = client.connect(cluster[c % nodes].listen);
      if (ok) {
        auto n = client.write(text);
        if (!n)
          ok = n.error();
      }
      if (!ok)
        client_errors[c] = ok.error().to_string();
    });
  for (auto& t : clients)
    t.join();
  for (auto& e : client_errors)
    if (!e.empty())
      return fail("a client failed: " + e);
  fmt::print("{} clients sent {} readings of {} sensors and {} malformed lines\n", o.clients,
             o.readings, o.sensors, o.malformed);

  // Every reading acknowledged (or refused) and every malformed line counted.
  std::array<sensors::ingest_status, nodes> status;
  auto total = [&](std::uint64_t sensors::ingest_status::*field) {
    std::uint64_t sum = 0;
    for (auto& s : status)
      sum += s.*field;
    return sum;
  };
  auto all_in = [&] {
    for (std::size_t i = 0; i < nodes; ++i)
      if (auto s = sensors::fetch_status(cluster[i].http))
        status[i] = *s;
    auto n = static_cast<std::uint64_t>(o.readings);
    return total(&sensors::ingest_status::readings) == n
           && total(&sensors::ingest_status::acknowledged) + total(&sensors::ingest_status::rejected) == n
           && total(&sensors::ingest_status::malformed) == static_cast<std::uint64_t>(o.malformed);
  };
  if (!poll(all_in, 120s))
    return fail(fmt::format("after 120 s: {} readings arrived, {} acknowledged, {} malformed lines counted",
                            total(&sensors::ingest_status::readings),
                            total(&sensors::ingest_status::acknowledged),
                            total(&sensors::ingest_status::malformed)));
  auto took = std::chrono::duration<double>(std::chrono::steady_clock::now() - began).count();
  fmt::print("all acknowledged in {:.1f} s ({:.0f} readings/s)\n", took,
             static_cast<double>(o.readings) / took);
  for (std::size_t i = 0; i < nodes; ++i)
    fmt::print("  node {}: {} readings in, at most {} held (parallelism {}), at most {} bytes "
               "buffered (limit {}), {} paused reads\n",
               i + 1, status[i].readings, status[i].max_in_flight, status[i].parallelism,
               status[i].tcp.max_buffered_bytes, status[i].buffered_bytes_limit, status[i].tcp.paused_reads);

  // The aggregates, asked of the sensors wherever they live, against the fold.
  auto want = expected_aggregates(o);
  std::vector<std::string> ids;
  for (std::size_t k = 0; k < static_cast<std::size_t>(o.sensors); ++k)
    ids.push_back(sensors::sensor_id(k));
  auto got = sensors::fetch_aggregates(cluster[0].http, ids);
  if (!got)
    return fail("asking the sensors: " + got.error().to_string());
  std::uint64_t applied = 0, lost = 0, duplicated = 0;
  std::size_t differing = 0;
  constexpr std::size_t shown = 40;
  fmt::print("\naggregates, asked of the sensors{}:\n",
             ids.size() > shown ? fmt::format(" (the first {} of {})", shown, ids.size()) : "");
  for (std::size_t k = 0; k < ids.size(); ++k) {
    auto& a = (*got)[ids[k]];
    auto& w = want[ids[k]];
    applied += a.count;
    lost += a.count < w.count ? w.count - a.count : 0;
    duplicated += a.count > w.count ? a.count - w.count : 0;
    differing += a == w ? 0 : 1;
    if (k < shown || !(a == w))
      fmt::print("  {}: count={} sum={} mean={:.3f} min={} max={} last_timestamp={}{}\n", ids[k],
                 a.count, a.sum, a.mean(), a.min, a.max, a.last_timestamp,
                 a == w ? "" : " (NOT the fold of its readings)");
  }
  fmt::print("\n{} readings, {} applied, {} lost, {} duplicated; {} malformed lines skipped\n",
             o.readings, applied, lost, duplicated, total(&sensors::ingest_status::malformed));
  fmt::print("aggregates {} the fold of the readings sent\n",
             differing == 0 ? "equal" : fmt::format("of {} sensors differ from", differing));
  bool ok = applied == static_cast<std::uint64_t>(o.readings) && lost == 0 && duplicated == 0
            && differing == 0 && total(&sensors::ingest_status::rejected) == 0;
  stop_all();
  fmt::print("{} (logs and journal in {})\n", ok ? "OK" : "FAILED", dir.string());
  return ok ? 0 : 1;
}

} // namespace

int main(int argc, char** argv) {
  options o;
  CLI::App app{"The sensor pipeline on a 3-node cluster: readings over TCP into sharded "
               "per-sensor entities, checked against the fold of what was sent.",
               "troupe-sensor-demo"};
  troupe::cli::apply_conventions(app);
  troupe::cli::add_integer(app, "--readings", o.readings, 1, 10'000'000, "Readings to send");
  troupe::cli::add_integer(app, "--sensors", o.sensors, 1, 100'000, "Sensors they come from");
  troupe::cli::add_integer(app, "--clients", o.clients, 1, 64,
                           "TCP clients sending them, spread over the nodes (each sensor reports "
                           "over one)");
  troupe::cli::add_integer(app, "--malformed", o.malformed, 0, 1000,
                           "Malformed lines the first client sends among its readings");
  troupe::cli::add_integer(app, "--parallelism", o.parallelism, 1, 100'000,
                           "Readings each node's entity sink holds at most (sensor.parallelism)");
  app.add_option("--dir", o.dir, "Where the journal and the node logs go (default: a new temp dir)");
  if (auto rc = troupe::cli::parse(app, argc, argv))
    return *rc;
  if (o.clients > o.sensors)
    return troupe::cli::usage_error(app, "--clients must be at most --sensors (each client sends "
                                         "the readings of its own sensors)");
  ::signal(SIGPIPE, SIG_IGN);
  auto self_dir = fs::canonical("/proc/self/exe").parent_path();
  return run(o, self_dir);
}
