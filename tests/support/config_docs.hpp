// Checks that docs/configuration.md documents every key of a schema with its type,
// default and range (one table row per key: | `key` | type | `default` | range |
// description |; a table's header row names its columns), and runs a layer's
// table of in-range, boundary and out-of-range values against its schema.
#pragma once

#include "troupe/actors/config.hpp"

#include <doctest/doctest.h>
#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace troupe::test {

struct documented_key {
  std::string type;
  std::string default_value;
  std::optional<std::string> range;  ///< none: the row's table has no range column
};

/// The rows of every key table in docs/configuration.md, by key.
inline std::map<std::string, documented_key> documented_config_keys() {
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
  auto trim = [](std::string x) {
    auto b = x.find_first_not_of(' ');
    auto e = x.find_last_not_of(' ');
    return b == std::string::npos ? std::string{} : x.substr(b, e - b + 1);
  };
  auto unquote = [](const std::string& x) {
    return x.size() >= 2 && x.front() == '`' && x.back() == '`' ? x.substr(1, x.size() - 2) : x;
  };
  auto cells_of = [&](const std::string& line) {
    std::vector<std::string> cells;
    std::istringstream row{line.substr(1)};
    for (std::string cell; std::getline(row, cell, '|');)
      cells.push_back(trim(cell));
    return cells;
  };
  std::map<std::string, documented_key> documented;
  std::map<std::string, std::size_t> columns;  // of the table being read
  std::istringstream lines{text};
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("| key |", 0) == 0) {
      columns.clear();
      auto header = cells_of(line);
      for (std::size_t i = 0; i < header.size(); ++i)
        columns[header[i]] = i;
      continue;
    }
    if (line.rfind("| `", 0) != 0)
      continue;
    auto cells = cells_of(line);
    auto cell = [&](const char* name) -> std::optional<std::string> {
      auto c = columns.find(name);
      if (c == columns.end() || c->second >= cells.size())
        return std::nullopt;
      return cells[c->second];
    };
    if (cells.size() < 3)
      continue;
    documented[unquote(cells[0])] = {cell("type").value_or(cells[1]),
                                     unquote(cell("default").value_or(cells[2])), cell("range")};
  }
  return documented;
}

/// Every key of the schema has a row with its type and default; a key with a range
/// has it in the row's range column (as config.hpp's to_string renders it), a key
/// without one has "—" there.
inline void check_documented(const config_schema& schema) {
  auto documented = documented_config_keys();
  config defaults{schema};
  auto dump = nlohmann::json::parse(defaults.dump());
  for (auto* key : schema.keys()) {
    INFO("key: " << key->name);
    REQUIRE(documented.count(key->name) == 1);
    auto& row = documented[key->name];
    CHECK(row.type == to_string(key->type));
    auto def = dump[key->name];
    CHECK(row.default_value == (def.is_string() ? def.get<std::string>() : def.dump()));
    REQUIRE_MESSAGE(row.range.has_value(), "the key's table has no range column");
    CHECK(*row.range == (key->range ? to_string(*key->range, key->type) : std::string{"—"}));
  }
}

/// One key of the table: a value inside its range, the values on its boundary
/// (accepted), and values beyond it (refused with invalid_config naming the key and
/// the range). Keys of types without ranges list wrong-typed values as "beyond".
struct range_row {
  const char* key;
  const char* in_range;
  std::vector<const char*> boundary;
  std::vector<const char*> beyond;
};

/// Checks every row through the command line, and that the table covers `schema`.
inline void check_range_table(const config_schema& schema, const std::vector<range_row>& table) {
  std::set<std::string> covered;
  for (auto& row : table) {
    INFO("key: " << row.key);
    auto* key = schema.find(row.key);
    REQUIRE(key != nullptr);
    covered.insert(row.key);
    auto load_one = [&](const char* value) {
      config_sources src;
      src.flags = {fmt::format("--{}={}", row.key, value)};
      return config::load(schema, src);
    };
    CHECK(load_one(row.in_range));
    for (auto* v : row.boundary) {
      INFO("boundary value: " << v);
      CHECK(load_one(v));
    }
    for (auto* v : row.beyond) {
      INFO("value beyond the range: " << v);
      auto cfg = load_one(v);
      REQUIRE_FALSE(cfg);
      CHECK(cfg.error().code() == errc::invalid_config);
      CHECK(cfg.error().message().find(row.key) != std::string::npos);
      if (key->range)
        CHECK(cfg.error().message().find("allowed: " + to_string(*key->range, key->type))
              != std::string::npos);
    }
  }
  for (auto* k : schema.keys()) {
    INFO("key without a row in the range table: " << k->name);
    CHECK(covered.count(k->name) == 1);
  }
}

} // namespace troupe::test
