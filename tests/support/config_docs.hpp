// Checks that docs/configuration.md documents every key of a schema with its type and
// default (one table row per key: | `key` | type | `default` | description |).
#pragma once

#include "troupe/actors/config.hpp"

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <string>

namespace troupe::test {

inline void check_documented(const config_schema& schema) {
  // Tests run inside the build tree; the docs are in the source tree above it.
  std::filesystem::path docs;
  for (auto dir = std::filesystem::current_path(); dir != dir.parent_path(); dir = dir.parent_path())
    if (std::filesystem::exists(dir / "docs/configuration.md")) {
      docs = dir / "docs/configuration.md";
      break;
    }
  REQUIRE_MESSAGE(!docs.empty(), "docs/configuration.md not found above the test directory");
  std::ifstream in{docs};
  std::string text{std::istreambuf_iterator<char>{in}, {}};
  std::regex row{R"(\|\s*`([a-z0-9.\-]+)`\s*\|\s*([a-z ]+?)\s*\|\s*`([^`]*)`\s*\|)"};
  std::map<std::string, std::pair<std::string, std::string>> documented;
  for (std::sregex_iterator i{text.begin(), text.end(), row}, end; i != end; ++i)
    documented[(*i)[1]] = {(*i)[2], (*i)[3]};
  config defaults{schema};
  auto dump = nlohmann::json::parse(defaults.dump());
  for (auto* key : schema.keys()) {
    INFO("key: " << key->name);
    REQUIRE(documented.count(key->name) == 1);
    CHECK(documented[key->name].first == to_string(key->type));
    auto def = dump[key->name];
    CHECK(documented[key->name].second == (def.is_string() ? def.get<std::string>() : def.dump()));
  }
}

} // namespace troupe::test
