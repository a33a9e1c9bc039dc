// Checks that docs/configuration.md documents every key of a schema with its type and
// default (one table row per key: | `key` | type | `default` | description |).
#pragma once

#include "troupe/actors/config.hpp"

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
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
  // Rows look like: | `key` | type | `default` | description |
  auto trim = [](std::string x) {
    auto b = x.find_first_not_of(' ');
    auto e = x.find_last_not_of(' ');
    return b == std::string::npos ? std::string{} : x.substr(b, e - b + 1);
  };
  auto unquote = [](const std::string& x) {
    return x.size() >= 2 && x.front() == '`' && x.back() == '`' ? x.substr(1, x.size() - 2) : x;
  };
  std::map<std::string, std::pair<std::string, std::string>> documented;
  std::istringstream lines{text};
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("| `", 0) != 0)
      continue;
    std::vector<std::string> cells;
    std::istringstream row{line.substr(1)};
    for (std::string cell; std::getline(row, cell, '|');)
      cells.push_back(trim(cell));
    if (cells.size() >= 3)
      documented[unquote(cells[0])] = {cells[1], unquote(cells[2])};
  }
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
