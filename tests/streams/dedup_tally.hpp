// dedup_tally: a test entity that keeps every value it applied, in order, and
// deduplicates commands by their origin (persistence/producer_offsets.hpp): a
// command it has applied already is acknowledged without a second event. A
// command with an empty origin is always applied (the at-least-once mode).
#pragma once

#include "troupe/actors/codec.hpp"
#include "troupe/persistence/effect.hpp"
#include "troupe/persistence/producer_offsets.hpp"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace dedup_tally {

using troupe::persistence::done;
using troupe::persistence::origin;

struct add {
  std::int64_t value = 0;
  origin from;
  using reply = done;
};
struct get_values {
  using reply = std::vector<std::int64_t>;
};
struct added {
  std::int64_t value = 0;
  origin from;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(add, value, from)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(added, value, from)
inline void to_json(nlohmann::json& j, const get_values&) { j = nlohmann::json::object(); }
inline void from_json(const nlohmann::json&, get_values&) {}

struct state {
  std::vector<std::int64_t> values;
  troupe::persistence::producer_offsets applied;
  friend bool operator==(const state&, const state&) = default;
};

struct entity {
  static constexpr std::string_view entity_type = "dedup-tally";
  using command = std::variant<add, get_values>;
  using event = std::variant<added>;
  using state = dedup_tally::state;
  using effect = troupe::persistence::effect<entity>;

  static effect on_command(const state& s, const add& c) {
    if (s.applied.seen(c.from))
      return effect::reply(c, done{});  // a duplicate: acknowledged, nothing stored
    return effect::persist(added{c.value, c.from});
  }
  static effect on_command(const state& s, const get_values& c) { return effect::reply(c, s.values); }
  static state on_event(state s, const added& e) {
    s.values.push_back(e.value);
    s.applied.record(e.from);
    return s;
  }
};

inline void register_types(troupe::codec_registry& codec) {
  codec.add<added>("test.dedup-tally-added");
  codec.add<add>("test.dedup-tally-add");
  codec.add<get_values>("test.dedup-tally-get-values");
  codec.add<std::vector<std::int64_t>>("test.dedup-tally-values");
}

} // namespace dedup_tally
