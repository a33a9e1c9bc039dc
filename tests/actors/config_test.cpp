// Configuration: defaults, JSON file, environment, flags; clear errors for unknown
// keys and wrong types; docs/configuration.md lists every key.
#include "support/config_docs.hpp"
#include "support/temp_dir.hpp"

#include "troupe/actors/config.hpp"

#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>

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
