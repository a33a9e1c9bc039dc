// The sensor pipeline sample (samples/sensor_pipeline) in its own processes:
// - the demo on a 3-node cluster: every reading sent over TCP is applied once, and
//   each sensor's aggregate equals the fold of its readings (computed here);
// - an ingest node whose sensors cannot persist yet (no member hosts them) under a
//   client that writes as fast as the kernel takes: the node holds at most its
//   configured readings and bytes (its status counts them), TCP blocks the client,
//   and once a host joins every reading is applied once.
// Waits are on what the processes report, never on sleeps.
#include "../../samples/sensor_pipeline/readings.hpp"
#include "../../samples/sensor_pipeline/status.hpp"

#include "support/child_process.hpp"
#include "support/free_ports.hpp"
#include "support/temp_dir.hpp"
#include "support/wait.hpp"

#include "troupe/persistence/sqlite_journal.hpp"

#include <doctest/doctest.h>
#include <fmt/format.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

using namespace std::chrono_literals;
using troupe::test::child_process;
using troupe::test::wait_until;

namespace {

/// The samples are built into build/samples/sensor_pipeline, the tests into build/tests/bin.
std::string sample_path(const std::string& program) {
  auto bin = std::filesystem::path{troupe::test::program_path("x")}.parent_path();
  return (bin.parent_path().parent_path() / "samples/sensor_pipeline" / program).string();
}

/// What the tests expect of a sensor: the fold of its readings, written out here
/// rather than taken from the entity.
struct expected_aggregate {
  std::uint64_t count = 0;
  double sum = 0, min = 0, max = 0;
  std::int64_t last_timestamp = 0;
};

std::map<std::string, expected_aggregate> fold(const std::vector<sensors::reading>& readings) {
  std::map<std::string, expected_aggregate> out;
  for (auto& r : readings) {
    auto& a = out[r.sensor];
    a.min = a.count == 0 || r.value < a.min ? r.value : a.min;
    a.max = a.count == 0 || r.value > a.max ? r.value : a.max;
    a.sum += r.value;
    a.count += 1;
    a.last_timestamp = r.timestamp;
  }
  return out;
}

void check_equal(const std::map<std::string, sensors::aggregate>& got,
                 const std::map<std::string, expected_aggregate>& want) {
  CHECK(got.size() == want.size());
  for (auto& [id, w] : want) {
    INFO(id);
    REQUIRE(got.count(id) == 1);
    auto& a = got.at(id);
    CHECK(a.count == w.count);
    CHECK(a.sum == w.sum);  // quarter steps: exact in binary, whatever the order
    CHECK(a.min == w.min);
    CHECK(a.max == w.max);
    CHECK(a.last_timestamp == w.last_timestamp);
  }
}

/// Parses "  sensor-3: count=250 sum=3735.25 mean=14.941 min=-50 max=80 last_timestamp=..."
std::optional<std::pair<std::string, sensors::aggregate>> aggregate_line(const std::string& line) {
  auto colon = line.find(": count=");
  if (line.rfind("  sensor-", 0) != 0 || colon == std::string::npos)
    return std::nullopt;
  std::map<std::string, std::string> fields;
  std::istringstream in{line.substr(colon + 2)};
  for (std::string kv; in >> kv;)
    if (auto eq = kv.find('='); eq != std::string::npos)
      fields[kv.substr(0, eq)] = kv.substr(eq + 1);
  sensors::aggregate a;
  a.count = std::stoull(fields["count"]);
  a.sum = std::stod(fields["sum"]);
  a.min = std::stod(fields["min"]);
  a.max = std::stod(fields["max"]);
  a.last_timestamp = std::stoll(fields["last_timestamp"]);
  return std::pair{line.substr(2, colon - 2), a};
}

/// A node process whose stdout and stderr go to a log file; the file's tail is
/// what a failed wait shows.
class node_process {
public:
  node_process(const std::string& log, std::vector<std::string> args) : log_(log) {
    std::vector<std::string> sh{"-c", "exec \"$0\" \"$@\" >'" + log + "' 2>&1",
                                sample_path("troupe-sensor-node")};
    sh.insert(sh.end(), args.begin(), args.end());
    p_ = std::make_unique<child_process>("/bin/sh", sh);
    REQUIRE(p_->started());
  }
  std::string log() const {
    std::ifstream in{log_};
    std::stringstream text;
    text << in.rdbuf();
    auto s = text.str();
    return s.size() > 4000 ? "..." + s.substr(s.size() - 4000) : s;
  }
  /// SIGTERM: the node leaves the cluster and exits 0 (node_main).
  void stop() {
    p_->signal(SIGTERM);
    auto status = p_->wait(60s);
    INFO(log());
    CHECK(status == 0);
  }

private:
  std::string log_;
  std::unique_ptr<child_process> p_;
};

/// Cluster settings for short tests: quick gossip and joins.
std::vector<std::string> node_args(std::uint16_t port, std::uint16_t http, const std::string& seeds,
                                   const std::string& roles, const std::string& journal) {
  return {"--port", std::to_string(port), "--http-port", std::to_string(http), "--seeds", seeds,
          "--roles", roles, "--journal", journal, "--log.level=warn",
          "--cluster.gossip-interval=200ms", "--cluster.leader-actions-interval=100ms",
          "--cluster.join-retry-interval=200ms", "--cluster.allow-weakly-up-members=0"};
}

} // namespace

TEST_CASE("sensor pipeline: readings over TCP into sensors on 3 nodes are each applied once, and every aggregate is the fold of its readings") {
  constexpr std::size_t readings = 3000, sensor_count = 12;
  troupe::test::temp_dir dir;
  child_process demo{sample_path("troupe-sensor-demo"),
                     {"--readings", std::to_string(readings), "--sensors", std::to_string(sensor_count),
                      "--clients", "3", "--malformed", "3", "--dir", dir.path().string()}};
  REQUIRE(demo.started());
  std::map<std::string, sensors::aggregate> got;
  std::string output, summary;
  while (auto line = demo.read_line(180s)) {
    output += *line + "\n";
    if (auto a = aggregate_line(*line))
      got.insert(*a);
    if (line->find(" readings, ") != std::string::npos)
      summary = *line;
  }
  INFO(output);
  std::vector<sensors::reading> sent;
  for (std::size_t i = 0; i < readings; ++i)
    sent.push_back(sensors::generated_reading(i, sensor_count));
  check_equal(got, fold(sent));
  CHECK(summary == "3000 readings, 3000 applied, 0 lost, 0 duplicated; 3 malformed lines skipped");
  CHECK(output.find("aggregates equal the fold of the readings sent\n") != std::string::npos);
  CHECK(demo.wait(60s) == 0);
}

TEST_CASE("sensor pipeline: a client faster than the sensors persist is slowed by TCP while the ingest node holds at most its configured readings and bytes") {
  constexpr std::size_t sensor_count = 8, parallelism = 8, buffer = 1024;
  troupe::test::temp_dir dir;
  auto journal = dir.file("sensors.db");
  troupe::persistence::sqlite_options so;
  so.path = journal;
  so.create_if_missing = true;
  REQUIRE(troupe::persistence::sqlite_journal::open(so));
  auto ports = troupe::test::free_ports(5);  // ingest: transport, http, listen; host: transport, http
  auto seeds = fmt::format("127.0.0.1:{}", ports[0]);
  // The ingest node hosts no sensors (role "ingest"), and no member does yet:
  // their shards have no home, so no reading can be persisted.
  auto args = node_args(ports[0], ports[1], seeds, "ingest", journal);
  for (auto a : {"--sensor.listen=127.0.0.1:" + std::to_string(ports[2]),
                 "--sensor.parallelism=" + std::to_string(parallelism), std::string{"--sensor.max-connections=1"},
                 "--sensor.connection-buffer=" + std::to_string(buffer),
                 "--sensor.buffered-bytes=" + std::to_string(buffer)})
    args.push_back(a);
  node_process ingest{dir.file("ingest.log"), args};
  sensors::ingest_status st;
  // Reads the node's status into st; waits poll it at most every 20 ms (each
  // read is an HTTP request to the node).
  auto last_read = std::chrono::steady_clock::now() - 1s;
  auto status = [&] {
    auto now = std::chrono::steady_clock::now();
    if (now - last_read < 20ms)
      return false;
    last_read = now;
    auto s = sensors::fetch_status(ports[1]);
    if (s)
      st = *s;
    return static_cast<bool>(s);
  };
  REQUIRE_MESSAGE(wait_until([&] { return status() && st.stream == "running"; }, 60s), ingest.log());

  // The client writes readings without blocking until the kernel takes no more
  // (at most 64 MB, far beyond any socket buffer), from a send buffer of 4 KiB.
  sensors::line_client client;
  REQUIRE(client.connect(ports[2], 4096));
  REQUIRE(client.set_blocking(false));
  std::vector<sensors::reading> sent;  // every reading whose line was begun
  std::string pending;                 // the rest of the last line begun
  std::uint64_t written = 0;
  auto write_until_blocked = [&] {
    while (written < (64u << 20)) {
      if (pending.empty()) {
        sent.push_back(sensors::generated_reading(sent.size(), sensor_count));
        pending = sensors::format_line(sent.back());
      }
      auto n = client.write(pending);
      REQUIRE(n);
      written += *n;
      pending.erase(0, *n);
      if (!pending.empty())
        return true;  // the socket's send buffer is full: a blocking write would wait
    }
    return false;
  };
  REQUIRE(write_until_blocked());
  // The node stopped reading (its buffer is full); once the kernel's buffers are
  // full again, the client stays blocked; the sink holds its parallelism.
  REQUIRE_MESSAGE(wait_until([&] { return status() && st.tcp.paused_reads > 0; }, 30s), ingest.log());
  REQUIRE(write_until_blocked());
  REQUIRE_MESSAGE(wait_until([&] { return status() && st.in_flight == parallelism; }, 30s), ingest.log());
  INFO("written ", written, " bytes (", sent.size(), " lines begun); node: received ",
       st.tcp.received_bytes, " bytes, ", st.tcp.lines, " lines, ", st.tcp.buffered_bytes, " buffered");
  CHECK(st.parallelism == parallelism);
  CHECK(st.buffered_bytes_limit == buffer);
  CHECK(st.acknowledged == 0);
  CHECK(st.readings == parallelism);  // the sink pulled no more than it may hold
  CHECK(st.tcp.lines == parallelism);
  CHECK(st.max_in_flight == parallelism);
  CHECK(st.tcp.buffered_bytes <= buffer);
  CHECK(st.tcp.max_buffered_bytes <= buffer);
  CHECK(st.tcp.max_connection_buffered <= buffer);
  // The node received the lines it emitted and at most its buffer more; the
  // rest of what the client wrote sits in the kernel's buffers.
  std::uint64_t emitted_bytes = 0;
  for (std::size_t i = 0; i < st.tcp.lines; ++i)
    emitted_bytes += sensors::format_line(sent[i]).size();
  CHECK(st.tcp.received_bytes >= emitted_bytes);
  CHECK(st.tcp.received_bytes <= emitted_bytes + buffer);
  CHECK(st.tcp.received_bytes < written);
  CHECK(written > 4 * buffer);

  // A member that hosts sensors joins: the shards get a home, the readings
  // persist. The client, blocking now, sends the rest of its line and as many
  // readings again, faster than they persist; then it closes.
  node_process host{dir.file("host.log"), node_args(ports[3], ports[4], seeds, "sensor", journal)};
  REQUIRE(client.set_blocking(true));
  auto gated = sent.size();
  std::string more = pending;
  for (std::size_t i = gated; i < 2 * gated; ++i) {
    sent.push_back(sensors::generated_reading(i, sensor_count));
    more += sensors::format_line(sent.back());
  }
  auto n = client.write(more);
  REQUIRE(n);
  CHECK(*n == more.size());
  client.close();
  REQUIRE_MESSAGE(wait_until([&] { return status() && st.acknowledged == sent.size(); }, 120s),
                  "acknowledged ", st.acknowledged, " of ", sent.size(), "\n", ingest.log(), "\n",
                  host.log());
  CHECK(st.readings == sent.size());
  CHECK(st.rejected == 0);
  CHECK(st.malformed == 0);
  CHECK(st.in_flight == 0);
  // The bounds held for the whole run.
  CHECK(st.max_in_flight == parallelism);
  CHECK(st.tcp.max_buffered_bytes <= buffer);
  CHECK(st.tcp.max_connection_buffered <= buffer);
  // Each reading applied once (one the sink asked again after a timeout while
  // its shard had no home would be absorbed by the sensor's timestamp check).
  std::vector<std::string> ids;
  for (std::size_t k = 0; k < sensor_count; ++k)
    ids.push_back(sensors::sensor_id(k));
  auto got = sensors::fetch_aggregates(ports[1], ids);
  REQUIRE_MESSAGE(got, got.error().to_string());
  check_equal(*got, fold(sent));
  host.stop();
  ingest.stop();
}

TEST_CASE("sensor pipeline: the node lists its sensor keys, and a bad --sensor.listen is a usage error naming it") {
  auto run = [](std::vector<std::string> args) {
    std::vector<std::string> sh{"-c", "exec \"$0\" \"$@\" 2>&1", sample_path("troupe-sensor-node")};
    sh.insert(sh.end(), args.begin(), args.end());
    child_process p{"/bin/sh", sh};
    std::string out;
    while (auto line = p.read_line(30s))
      out += *line + "\n";
    return std::pair{p.wait(30s).value_or(-1), out};
  };
  auto [help_status, help] = run({"--help-config"});
  CHECK(help_status == 0);
  CHECK(help.find("--sensor.listen <string>") != std::string::npos);
  CHECK(help.find("--sensor.parallelism <integer>  default: 256  allowed: 1..100000") != std::string::npos);
  for (auto bad : {"127.0.0.1", "127.0.0.1:0", "127.0.0.1:http"}) {
    auto [status, out] = run({std::string{"--sensor.listen="} + bad});
    INFO(bad, ": ", out);
    CHECK(status == 2);
    CHECK(out.find("sensor.listen: '" + std::string{bad} + "' is not HOST:PORT") != std::string::npos);
  }
}
