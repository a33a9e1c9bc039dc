// An event-sourced counter: the entity of the starter project. Commands say what
// their reply is; events are what the journal stores; the state is what the
// events fold into (docs/persistence.md).
#pragma once

#include <troupe/actors/codec.hpp>
#include <troupe/persistence/entity.hpp>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string_view>
#include <variant>

namespace starter {

using troupe::persistence::done;

// Commands.
struct add { std::int64_t amount = 0; using reply = done; };
struct get { using reply = std::int64_t; };

// Events.
struct added { std::int64_t amount = 0; };

// State.
struct counter_state { std::int64_t value = 0; };

struct counter {
  static constexpr std::string_view entity_type = "counter";
  using command = std::variant<add, get>;
  using event = std::variant<added>;
  using state = counter_state;
  using effect = troupe::persistence::effect<counter>;

  static effect on_command(const state&, const add& c) {
    if (c.amount <= 0)
      return effect::reply_error(c, "the amount must be positive");
    return effect::persist(added{c.amount});
  }
  static effect on_command(const state& s, const get& c) { return effect::reply(c, s.value); }

  static state on_event(state s, const added& e) {
    s.value += e.amount;
    return s;
  }
};

// JSON for the codec. Events, state, commands and replies are registered under
// stable manifests ("starter.added"): the journal stores events under them, and
// commands and replies travel under them between nodes.
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(add, amount)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(added, amount)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(counter_state, value)
inline void to_json(nlohmann::json& j, const get&) { j = nlohmann::json::object(); }
inline void from_json(const nlohmann::json&, get&) {}

inline void register_types(troupe::codec_registry& codec) {
  codec.add<added>("starter.added");
  codec.add<counter_state>("starter.counter-state");
  codec.add<add>("starter.add");
  codec.add<get>("starter.get");
  codec.add<std::int64_t>("starter.value");  // get's reply: replies travel too
}

} // namespace starter
