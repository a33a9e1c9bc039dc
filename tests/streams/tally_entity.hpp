// tally: a test entity that keeps every value it was sent, in arrival order, so a
// test can check that a stream delivered each element once and in order per key.
#pragma once

#include "troupe/actors/codec.hpp"
#include "troupe/actors/node.hpp"
#include "troupe/persistence/entity.hpp"
#include "troupe/persistence/journal_service.hpp"

#include "support/node_fixture.hpp"
#include "support/temp_dir.hpp"

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <variant>
#include <vector>

namespace tally {

struct append {
  std::int64_t value = 0;
  using reply = troupe::persistence::done;
};
struct get_values {
  using reply = std::vector<std::int64_t>;
};
struct appended {
  std::int64_t value = 0;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(appended, value)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(append, value)
inline void to_json(nlohmann::json& j, const get_values&) { j = nlohmann::json::object(); }
inline void from_json(const nlohmann::json&, get_values&) {}

struct state {
  std::vector<std::int64_t> values;
};

struct entity {
  static constexpr std::string_view entity_type = "tally";
  using command = std::variant<append, get_values>;
  using event = std::variant<appended>;
  using state = tally::state;
  using effect = troupe::persistence::effect<entity>;

  static effect on_command(const state&, const append& c) { return effect::persist(appended{c.value}); }
  static effect on_command(const state& s, const get_values& c) { return effect::reply(c, s.values); }
  static std::vector<std::string> tags(const event&) { return {"tally"}; }
  static state on_event(state s, const appended& e) {
    s.values.push_back(e.value);
    return s;
  }
};

/// The tally's event, commands and replies (entities may only be spawned, and
/// sharded, with every one registered).
inline void register_types(troupe::codec_registry& codec) {
  codec.add<appended>("test.tally-appended");
  codec.add<append>("test.tally-append");
  codec.add<get_values>("test.tally-get-values");
  codec.add<std::vector<std::int64_t>>("test.tally-values");
}

/// A node with the SQLite journal in `dir` and the tally's types registered.
inline std::unique_ptr<troupe::node> make_node(const troupe::test::temp_dir& dir) {
  auto schema = troupe::node_config_keys();
  troupe::persistence::add_config_keys(schema);
  auto codec = std::make_shared<troupe::codec_registry>();
  register_types(*codec);
  auto n = troupe::test::make_node({"persistence.journal.create-if-missing=true",
                                    "persistence.journal.path=" + dir.file("journal.db")},
                                   std::move(schema), troupe::node::options{codec});
  auto j = troupe::persistence::install_journal(*n);
  REQUIRE(j);
  return n;
}

} // namespace tally
