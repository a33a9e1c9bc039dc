// Configuration: defaults, JSON file, environment, flags; clear errors for unknown
// keys and wrong types; docs/configuration.md lists every key.
#include "support/config_docs.hpp"
#include "support/temp_dir.hpp"

#include "troupe/actors/config.hpp"

#include <doctest/doctest.h>
#include <fmt/core.h>

#include <filesystem>
#include <fstream>
#include <set>

using namespace std::chrono_literals;
using troupe::errc;

namespace {

troupe::expected<troupe::config> load(const troupe::config_sources& src) {
  return troupe::config::load(troupe::node_config_keys(), src);
}

std::string write_file(const troupe::test::temp_dir& dir, const std::string& text) {
  auto path = dir.file("troupe.json");
  std::ofstream{path} << text;
  return path;
}

} // namespace

TEST_CASE("defaults come from the schema") {
  troupe::config cfg{troupe::node_config_keys()};
  CHECK(cfg.get_string("node.cluster-name") == "troupe");
  CHECK(cfg.get_int("node.port") == 0);
  CHECK(cfg.get_duration("shutdown.timeout") == 30s);
  CHECK(cfg.get_bool("log.stderr"));
}

TEST_CASE("file, environment and flags apply in that order") {
  troupe::test::temp_dir dir;
  troupe::config_sources src;
  src.file = write_file(dir, R"({"node": {"name": "from-file", "port": 7000, "cluster-name": "c1"},
                                 "shutdown": {"timeout": "2s"}})");
  src.environment = {{"TROUPE_NODE_PORT", "7001"}, {"TROUPE_NODE_CLUSTER_NAME", "c2"},
                     {"HOME", "/root"}};
  src.flags = {"--node.port=7002"};
  auto cfg = load(src);
  REQUIRE(cfg);
  CHECK(cfg->get_string("node.name") == "from-file");
  CHECK(cfg->get_string("node.cluster-name") == "c2");
  CHECK(cfg->get_int("node.port") == 7002);
  CHECK(cfg->get_duration("shutdown.timeout") == 2s);
}

TEST_CASE("argv: config flags are taken, other arguments are left for the program") {
  troupe::test::temp_dir dir;
  auto file = write_file(dir, R"({"log": {"level": "debug"}})");
  auto config_flag = "--config=" + file;
  const char* argv[] = {"prog", "run", "--node.port=9", config_flag.c_str(), "--verbose", "x"};
  std::vector<std::string> rest;
  auto cfg = troupe::config::load(troupe::node_config_keys(), 6, argv, &rest);
  REQUIRE(cfg);
  CHECK(cfg->get_int("node.port") == 9);
  CHECK(cfg->get_string("log.level") == "debug");
  CHECK(rest == std::vector<std::string>{"run", "--verbose", "x"});
}

TEST_CASE("an unknown key is an error naming the key and where it came from") {
  troupe::test::temp_dir dir;
  SUBCASE("in a file") {
    troupe::config_sources src;
    src.file = write_file(dir, R"({"node": {"prot": 7000}})");
    auto cfg = load(src);
    REQUIRE_FALSE(cfg);
    CHECK(cfg.error().code() == errc::invalid_config);
    CHECK(cfg.error().message().find("node.prot") != std::string::npos);
    CHECK(cfg.error().message().find("troupe.json") != std::string::npos);
  }
  SUBCASE("in the environment") {
    troupe::config_sources src;
    src.environment = {{"TROUPE_NODE_PROT", "1"}};
    auto cfg = load(src);
    REQUIRE_FALSE(cfg);
    CHECK(cfg.error().message().find("TROUPE_NODE_PROT") != std::string::npos);
  }
  SUBCASE("on the command line") {
    troupe::config_sources src;
    src.flags = {"--nod.port=1"};
    auto cfg = load(src);
    REQUIRE_FALSE(cfg);
    CHECK(cfg.error().message().find("nod.port") != std::string::npos);
  }
}

TEST_CASE("a wrong type is an error naming the key, never a silent default") {
  troupe::test::temp_dir dir;
  troupe::config_sources src;
  SUBCASE("string for an integer in a file") {
    src.file = write_file(dir, R"({"node": {"port": "seven"}})");
  }
  SUBCASE("bad integer in a flag") {
    src.flags = {"--node.port=7x"};
  }
  SUBCASE("duration without unit") {
    src.flags = {"--shutdown.timeout=10"};
  }
  SUBCASE("bad boolean in the environment") {
    src.environment = {{"TROUPE_LOG_STDERR", "maybe"}};
  }
  auto cfg = load(src);
  REQUIRE_FALSE(cfg);
  CHECK(cfg.error().code() == errc::invalid_config);
  auto msg = cfg.error().message();
  CHECK((msg.find("node.port") != std::string::npos || msg.find("shutdown.timeout") != std::string::npos
         || msg.find("log.stderr") != std::string::npos));
}

TEST_CASE("unreadable or malformed config files are clear errors") {
  troupe::test::temp_dir dir;
  troupe::config_sources src;
  src.file = dir.file("missing.json");
  auto missing = load(src);
  REQUIRE_FALSE(missing);
  CHECK(missing.error().message().find("missing.json") != std::string::npos);
  src.file = write_file(dir, "{ not json");
  auto broken = load(src);
  REQUIRE_FALSE(broken);
  CHECK(broken.error().message().find("not valid JSON") != std::string::npos);
}

TEST_CASE("durations parse and print in the same notation") {
  CHECK(*troupe::parse_duration("250ms") == 250ms);
  CHECK(*troupe::parse_duration("1.5s") == 1500ms);
  CHECK(*troupe::parse_duration("2m") == 120s);
  CHECK(*troupe::parse_duration("100us") == 100us);
  CHECK_FALSE(troupe::parse_duration("fast"));
  CHECK_FALSE(troupe::parse_duration("ms"));
  CHECK(troupe::format_duration(250ms) == "250ms");
  CHECK(troupe::format_duration(3s) == "3s");
}

TEST_CASE("docs/configuration.md documents every node key with its type and default") {
  troupe::test::check_documented(troupe::node_config_keys());
}

// -- ranges ---------------------------------------------------------------------------

TEST_CASE("config ranges: every node and transport key, in range, on the boundary and beyond") {
  troupe::test::check_range_table(
    troupe::node_config_keys(),
    {
      {"node.name", "n1", {""}, {}},
      {"node.cluster-name", "c", {""}, {}},
      {"node.host", "0.0.0.0", {""}, {}},
      {"node.port", "7355", {"0", "65535"}, {"-1", "65536", "99999999999999999999"}},
      {"node.caf-middleman", "true", {"false"}, {"maybe"}},
      {"scheduler.threads", "4", {"0", "256"}, {"-1", "257", "1000000"}},
      {"log.level", "debug", {"trace", "off"}, {"verbose", "INFO", ""}},
      {"log.stderr", "false", {"true"}, {"2"}},
      {"log.file", "x.log", {""}, {}},
      {"shutdown.timeout", "2s", {"10ms", "1h"}, {"0", "9ms", "61m", "-1s", "99999999999h"}},
      {"shutdown.phase.before-service-unbind", "1s", {"0", "1h"}, {"61m", "-1s"}},
      {"shutdown.phase.service-stop", "1s", {"0", "1h"}, {"61m", "-1s"}},
      {"shutdown.phase.cluster-sharding-shutdown-region", "1s", {"0", "1h"}, {"61m", "-1s"}},
      {"shutdown.phase.cluster-leave", "1s", {"0", "1h"}, {"61m", "-1s"}},
      {"shutdown.phase.cluster-exiting", "1s", {"0", "1h"}, {"61m", "-1s"}},
      {"shutdown.phase.before-actor-system-terminate", "1s", {"0", "1h"}, {"61m", "-1s"}},
      {"shutdown.actor-timeout", "1s", {"1ms", "1h"}, {"0", "999us", "2h", "99999999999h"}},
      {"transport.advertised-host", "h", {""}, {}},
      {"transport.secret", "s", {""}, {}},
      {"transport.max-frame-size", "65536", {"1024", "1073741824"}, {"1023", "0", "-5", "1073741825"}},
      {"transport.max-queue-bytes", "65536", {"1024", "17179869184"}, {"1023", "17179869185"}},
      {"transport.heartbeat-interval", "500ms", {"0", "10ms", "1h"}, {"9ms", "2h", "99999999999h"}},
      {"transport.failure-timeout", "3s", {"0", "10ms", "1h"}, {"1ms", "61m", "99999999999h"}},
      {"transport.handshake-timeout", "1s", {"10ms", "10m"}, {"0", "11m"}},
      {"transport.reconnect-backoff-min", "50ms", {"1ms", "1m"}, {"0", "61s"}},
      {"transport.reconnect-backoff-max", "2s", {"1ms", "1h"}, {"0", "2h"}},
      {"transport.request-retention", "60s", {"1ms", "24h"}, {"0", "999us", "25h"}},
      {"transport.stop-timeout", "500ms", {"0", "10m"}, {"11m", "-1s"}},
      {"transport.max-connections", "100", {"1", "1000000"}, {"0", "1000001"}},
      {"transport.max-connections-per-address", "100", {"1", "1000000"}, {"0", "-1"}},
      {"transport.max-pending-handshakes", "10", {"1", "1000000"}, {"0", "1000001"}},
      {"transport.max-pending-handshakes-per-address", "10", {"1", "1000000"}, {"0", "1000001"}},
      {"transport.tls.enabled", "true", {"false"}, {"maybe"}},
      {"transport.tls.certificate", "cert.pem", {""}, {}},
      {"transport.tls.private-key", "key.pem", {""}, {}},
      {"transport.tls.ca", "ca.pem", {""}, {}},
      {"transport.fault-injection.rules-file", "rules.txt", {""}, {}},
    });
}

TEST_CASE("config ranges: the issue's values fail with the key and the range, from every source") {
  troupe::test::temp_dir dir;
  troupe::config_sources src;
  std::string key;
  SUBCASE("an overflowing duration on the command line") {
    src.flags = {"--transport.failure-timeout=99999999999h"};
    key = "transport.failure-timeout";
  }
  SUBCASE("an overflowing duration in the environment") {
    src.environment = {{"TROUPE_SHUTDOWN_TIMEOUT", "99999999999h"}};
    key = "shutdown.timeout";
  }
  SUBCASE("an unbounded thread count in a file") {
    src.file = write_file(dir, R"({"scheduler": {"threads": 1000000}})");
    key = "scheduler.threads";
  }
  SUBCASE("a negative port in a file") {
    src.file = write_file(dir, R"({"node": {"port": -7}})");
    key = "node.port";
  }
  SUBCASE("an integer beyond 64 bits in a file") {
    src.file = write_file(dir, R"({"transport": {"max-frame-size": 18446744073709551615}})");
    key = "transport.max-frame-size";
  }
  auto cfg = load(src);
  REQUIRE_FALSE(cfg);
  CHECK(cfg.error().code() == errc::invalid_config);
  CHECK(cfg.error().message().find(key) != std::string::npos);
  CHECK(cfg.error().message().find("allowed: ") != std::string::npos);
}

TEST_CASE("config ranges: set() checks them too, and durations never wrap") {
  troupe::config cfg{troupe::node_config_keys()};
  auto r = cfg.set("scheduler.threads", std::int64_t{1000000});
  REQUIRE_FALSE(r);
  CHECK(r.error().message().find("scheduler.threads") != std::string::npos);
  CHECK(cfg.get_int("scheduler.threads") == 0);  // unchanged
  CHECK_FALSE(cfg.set("shutdown.timeout", troupe::duration{0}));
  auto huge = troupe::parse_duration("99999999999h");
  REQUIRE_FALSE(huge);
  CHECK(huge.error().message().find("too large") != std::string::npos);
  CHECK(*troupe::parse_duration("2562047h") == std::chrono::hours{2562047});  // ~292 years
  CHECK_FALSE(troupe::parse_duration("-1s"));
  CHECK(troupe::format_duration(std::chrono::minutes{10}) == "10m");
  CHECK(troupe::format_duration(std::chrono::hours{24}) == "24h");
  CHECK(*troupe::parse_duration(troupe::format_duration(std::chrono::hours{24})) == std::chrono::hours{24});
}
