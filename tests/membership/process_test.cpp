// Membership with real troupe node processes on 127.0.0.1: join, kill -9,
// SIGSTOP, restart on the same port, a partition through the transport's fault
// rules, an incompatible node, garbage on every port. Timings are short through
// configuration, never through sleeps: the tests wait on what the nodes report.
#include "support/child_process.hpp"
#include "support/free_ports.hpp"
#include "support/temp_dir.hpp"
#include "support/wait.hpp"

#include "troupe/membership/management_client.hpp"

#include <doctest/doctest.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <boost/asio.hpp>

#include <csignal>
#include <fstream>
#include <memory>
#include <set>

using namespace std::chrono_literals;
using troupe::test::child_process;
using troupe::test::free_ports;
using troupe::test::program_path;
using troupe::test::wait_until;
using nlohmann::json;

namespace {

/// A call to the management endpoint on 127.0.0.1:port; nullopt if it failed.
std::optional<troupe::membership::http_response> http_call(std::uint16_t port,
                                                           const std::string& method,
                                                           const std::string& target,
                                                           const std::string& body = {}) {
  auto r = troupe::membership::management_call({"127.0.0.1", port}, method, target, body);
  return r ? std::optional{*r} : std::nullopt;
}

/// Short timings for tests (docs/membership.md, "Tuning").
const std::vector<std::string> fast = {
  "--log.level=warn",
  "--cluster.gossip-interval=200ms",
  "--cluster.leader-actions-interval=100ms",
  "--cluster.join-retry-interval=200ms",
  "--cluster.seed-node-timeout=1s",
  "--cluster.failure-detector.heartbeat-interval=200ms",
  "--cluster.failure-detector.acceptable-heartbeat-pause=600ms",
  "--cluster.split-brain.stable-after=1500ms",
  "--transport.heartbeat-interval=200ms",
  "--transport.failure-timeout=1s",
  "--shutdown.phase.cluster-leave=3s",
  "--shutdown.phase.cluster-exiting=3s",
};

struct test_node {
  std::uint16_t port;
  std::uint16_t http;
  std::unique_ptr<child_process> process;
  std::vector<std::string> lines;  ///< stdout lines read so far
};

class test_cluster {
public:
  explicit test_cluster(std::size_t n, std::size_t seeds = 0) {
    auto ports = free_ports(2 * n);
    for (std::size_t i = 0; i < n; ++i)
      nodes_.push_back(test_node{ports[i], ports[n + i], nullptr, {}});
    for (std::size_t i = 0; i < (seeds == 0 ? n / 2 + 1 : seeds); ++i)
      seed_list_ += fmt::format("{}127.0.0.1:{}", seed_list_.empty() ? "" : ",", nodes_[i].port);
  }

  void start(std::size_t i, std::vector<std::string> extra = {}) {
    auto& nd = nodes_[i];
    std::vector<std::string> args{"--port", std::to_string(nd.port), "--seeds", seed_list_,
                                  "--http-port", std::to_string(nd.http),
                                  fmt::format("--node.name=n{}", i),
                                  fmt::format("--transport.fault-injection.rules-file={}",
                                              rules_file(i))};
    args.insert(args.end(), fast.begin(), fast.end());
    args.insert(args.end(), extra.begin(), extra.end());
    nd.process = std::make_unique<child_process>(program_path("troupe-test-cluster-node"), args);
    nd.lines.clear();
  }
  void start_all() {
    for (std::size_t i = 0; i < nodes_.size(); ++i)
      start(i);
  }

  test_node& operator[](std::size_t i) { return nodes_[i]; }
  std::size_t size() const { return nodes_.size(); }
  std::string address(std::size_t i) const { return fmt::format("127.0.0.1:{}", nodes_[i].port); }

  /// GET /cluster/members of node i, or null.
  json members(std::size_t i) {
    auto r = http_call(nodes_[i].http, "GET", "/cluster/members");
    if (!r || r->status != 200)
      return nullptr;
    return json::parse(r->body, nullptr, false);
  }

  /// Node i sees exactly `expected` (addresses) as up, converged.
  bool sees_up(std::size_t i, const std::set<std::string>& expected) {
    auto m = members(i);
    if (!m.is_object() || !m.value("converged", false))
      return false;
    std::set<std::string> up;
    for (auto& x : m["members"])
      if (x["status"] == "up")
        up.insert(x["address"].get<std::string>());
      else
        return false;
    return up == expected;
  }

  bool all_see_up(const std::vector<std::size_t>& alive) {
    std::set<std::string> expected;
    for (auto i : alive)
      expected.insert(address(i));
    for (auto i : alive)
      if (!sees_up(i, expected))
        return false;
    return true;
  }

  std::string rules_file(std::size_t i) const { return dir_.file(fmt::format("faults-{}.txt", i)); }
  /// Node i drops all traffic with the nodes in `others`.
  void cut(std::size_t i, const std::vector<std::size_t>& others) {
    std::ofstream out{rules_file(i), std::ios::trunc};
    for (auto o : others)
      out << "drop " << address(o) << "\n";
  }
  void heal(std::size_t i) { std::ofstream{rules_file(i), std::ios::trunc}; }

  std::vector<std::size_t> all() const {
    std::vector<std::size_t> r(nodes_.size());
    for (std::size_t i = 0; i < r.size(); ++i)
      r[i] = i;
    return r;
  }

private:
  troupe::test::temp_dir dir_;
  std::vector<test_node> nodes_;
  std::string seed_list_;
};

/// A line of node i's stdout that starts with `prefix`, already read or read now
/// (every line read is kept: a node may print what a test waits for before the
/// line the test waited for first).
std::optional<std::string> line(test_cluster& c, std::size_t i, const std::string& prefix,
                                std::chrono::milliseconds timeout = 20s) {
  auto& nd = c[i];
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (std::size_t k = 0;; ++k) {
    for (; k < nd.lines.size(); ++k)
      if (nd.lines[k].rfind(prefix, 0) == 0)
        return nd.lines[k];
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left <= 0ms)
      return std::nullopt;
    auto next = nd.process->read_line(left);
    if (!next)
      return std::nullopt;
    nd.lines.push_back(*next);
    --k;
  }
}

/// Starts every node and waits until each reported up and all see each other.
void start_and_converge(test_cluster& c) {
  c.start_all();
  for (std::size_t i = 0; i < c.size(); ++i)
    REQUIRE(line(c, i, "cluster-node n" + std::to_string(i) + " up:"));
  REQUIRE(wait_until([&] { return c.all_see_up(c.all()); }, 20s));
}

} // namespace

TEST_CASE("cluster processes: five nodes join, converge and run one singleton") {
  test_cluster c{5};
  start_and_converge(c);
  auto ready = http_call(c[2].http, "GET", "/health/ready");
  REQUIRE(ready);
  CHECK(ready->status == 200);
  // The singleton runs on the oldest member, once.
  auto m = c.members(0);
  REQUIRE(m.is_object());
  auto oldest = m["oldest"].get<std::string>();
  std::size_t holder = 0;
  while (c.address(holder) != oldest)
    ++holder;
  CHECK(line(c, holder, "singleton started"));
}

TEST_CASE("cluster processes: kill -9 of a member: unreachable, downed, removed everywhere, and "
          "the singleton restarts elsewhere") {
  test_cluster c{5};
  start_and_converge(c);
  auto oldest = c.members(1)["oldest"].get<std::string>();
  std::size_t holder = 0;
  while (c.address(holder) != oldest)
    ++holder;
  REQUIRE(line(c, holder, "singleton started"));
  c[holder].process->kill();
  std::vector<std::size_t> rest;
  for (auto i : c.all())
    if (i != holder)
      rest.push_back(i);
  CHECK(wait_until([&] { return c.all_see_up(rest); }, 20s));
  // The next oldest starts it.
  auto next = c.members(rest[0])["oldest"].get<std::string>();
  std::size_t new_holder = 0;
  while (c.address(new_holder) != next)
    ++new_holder;
  CHECK(new_holder != holder);
  CHECK(line(c, new_holder, "singleton started"));
}

TEST_CASE("cluster processes: a SIGSTOP shorter than stable-after downs nobody") {
  test_cluster c{3};
  start_and_converge(c);
  auto before = c.members(2)["self_incarnation"];
  c[2].process->signal(SIGSTOP);
  // Wait until the others notice (unreachable), then let it run again.
  auto unreachable = [&] {
    auto m = c.members(0);
    return m.is_object() && !m["unreachable"].empty();
  };
  CHECK(wait_until(unreachable, 10s));
  c[2].process->signal(SIGCONT);
  CHECK(wait_until([&] { return c.all_see_up(c.all()); }, 20s));
  CHECK(c.members(2)["self_incarnation"] == before);  // the same process, never downed
  CHECK_FALSE(c[2].process->wait(100ms));             // still running
}

TEST_CASE("cluster processes: a node restarted on the same port joins as a new incarnation and "
          "the old one is gone") {
  test_cluster c{3};
  start_and_converge(c);
  auto old_incarnation = c.members(2)["self_incarnation"].get<std::string>();
  c[2].process->kill();
  c[2].process->wait();
  c.start(2);
  REQUIRE(line(c, 2, "cluster-node n2 up:"));
  CHECK(wait_until([&] { return c.all_see_up(c.all()); }, 20s));
  auto m = c.members(0);
  for (auto& x : m["members"])
    CHECK(x["incarnation"] != old_incarnation);
}

TEST_CASE("cluster processes: in a partition the majority stays and the minority downs itself "
          "and exits") {
  test_cluster c{5};
  start_and_converge(c);
  std::vector<std::size_t> majority{0, 1, 2};
  std::vector<std::size_t> minority{3, 4};
  for (auto i : majority)
    c.cut(i, minority);
  for (auto i : minority)
    c.cut(i, majority);
  for (auto i : minority)
    CHECK(c[i].process->wait(30s) == 3);  // downed: exit code 3
  CHECK(wait_until([&] { return c.all_see_up(majority); }, 20s));
}

TEST_CASE("cluster processes: an incompatible node is refused and exits non-zero") {
  test_cluster c{3, 2};
  c.start(0);
  c.start(1);
  REQUIRE(line(c, 0, "cluster-node n0 up:"));
  REQUIRE(line(c, 1, "cluster-node n1 up:"));
  c.start(2, {"--test.compat=b"});
  CHECK(c[2].process->wait(20s) == 3);
  CHECK(wait_until([&] { return c.all_see_up({0, 1}); }, 10s));
}

TEST_CASE("cluster processes: garbage on the transport and management ports leaves every node "
          "up and the cluster converged") {
  test_cluster c{3};
  start_and_converge(c);
  boost::asio::io_context io;
  std::string junk(4096, '\0');
  for (std::size_t k = 0; k < junk.size(); ++k)
    junk[k] = static_cast<char>((k * 7919 + 13) & 0xff);
  for (auto port : {c[0].port, c[0].http, c[1].port, c[1].http}) {
    boost::asio::ip::tcp::socket s{io};
    boost::system::error_code ec;
    s.connect({boost::asio::ip::make_address("127.0.0.1"), port}, ec);
    REQUIRE_FALSE(ec);
    boost::asio::write(s, boost::asio::buffer(junk), ec);
  }
  // A header larger than the endpoint accepts.
  {
    boost::asio::ip::tcp::socket s{io};
    boost::system::error_code ec;
    s.connect({boost::asio::ip::make_address("127.0.0.1"), c[2].http}, ec);
    REQUIRE_FALSE(ec);
    auto request = "GET /cluster/members HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(100000, 'a')
                   + "\r\n\r\n";
    boost::asio::write(s, boost::asio::buffer(request), ec);
    std::string answer(64, '\0');
    auto got = s.read_some(boost::asio::buffer(answer), ec);
    CHECK(answer.substr(0, std::min<std::size_t>(got, 12)) == "HTTP/1.1 400");
  }
  // Bad HTTP requests get 4xx answers.
  CHECK(http_call(c[0].http, "GET", "/no/such/thing")->status == 404);
  CHECK(http_call(c[0].http, "DELETE", "/cluster/members")->status == 405);
  CHECK(http_call(c[0].http, "POST", "/cluster/down", "{not json")->status == 400);
  CHECK(http_call(c[0].http, "POST", "/cluster/down", R"({"address": "127.0.0.1:1"})")->status == 404);
  CHECK(wait_until([&] { return c.all_see_up(c.all()); }, 10s));
  for (std::size_t i = 0; i < 3; ++i)
    CHECK_FALSE(c[i].process->wait(10ms));
}

TEST_CASE("cluster processes: a node of another cluster or with a wrong secret never joins, and "
          "the cluster stays as it was") {
  test_cluster c{5, 2};
  c.start(0);
  c.start(1);
  c.start(2);
  for (std::size_t i = 0; i < 3; ++i)
    REQUIRE(line(c, i, "cluster-node n" + std::to_string(i) + " up:"));
  REQUIRE(wait_until([&] { return c.all_see_up({0, 1, 2}); }, 20s));
  c.start(3, {"--node.cluster-name=elsewhere"});
  c.start(4, {"--transport.secret=not-the-clusters"});
  REQUIRE(line(c, 3, "cluster-node n3 listening:"));
  REQUIRE(line(c, 4, "cluster-node n4 listening:"));
  // They keep knocking (the transport refuses their handshakes) ...
  auto refused = [&] {
    auto r = http_call(c[0].http, "GET", "/metrics");
    return r && r->body.find("troupe_transport_connection_errors_total") != std::string::npos;
  };
  CHECK(wait_until(refused, 10s));
  // ... and never become members.
  CHECK(c.all_see_up({0, 1, 2}));
  CHECK(c.members(3)["members"].empty());
  CHECK(c.members(4)["members"].empty());
}

TEST_CASE("cluster processes: SIGTERM leaves gracefully, and troupe cluster members and leave work") {
  test_cluster c{3};
  start_and_converge(c);
  // The CLI prints the member table.
  auto cli = program_path("../../tools/troupe");
  child_process members{cli, {"cluster", "members", "--http", fmt::format("127.0.0.1:{}", c[0].http)}};
  CHECK(members.wait_for_line("ADDRESS"));
  CHECK(members.wait(10s) == 0);
  // A graceful leave through the CLI: the node is removed and exits 0.
  child_process leave{cli, {"cluster", "leave", "--http", fmt::format("127.0.0.1:{}", c[1].http)}};
  CHECK(leave.wait(10s) == 0);
  CHECK(c[1].process->wait(20s) == 0);
  CHECK(wait_until([&] { return c.all_see_up({0, 2}); }, 10s));
  // SIGTERM: the node leaves, then exits 0.
  c[2].process->signal(SIGTERM);
  CHECK(c[2].process->wait(20s) == 0);
  CHECK(wait_until([&] { return c.all_see_up({0}); }, 10s));
}
