// The counter: a test entity whose commands exercise every effect. Shared by the
// entity test suites and the crash-test helper program (no doctest in here).
#pragma once

#include "troupe/actors/codec.hpp"
#include "troupe/persistence/entity.hpp"

#include <nlohmann/json.hpp>

#include <atomic>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <variant>
#include <vector>

namespace fx {

using troupe::persistence::done;

// -- commands --------------------------------------------------------------------------
struct add {
  std::int64_t n = 0;
  using reply = done;
};
/// Persists one `added` per element, atomically; replies the new total.
struct add_many {
  std::vector<std::int64_t> ns;
  using reply = std::int64_t;
};
struct get {
  using reply = std::int64_t;
};
/// Persists, then stops the entity.
struct add_and_stop {
  std::int64_t n = 0;
  using reply = done;
};
/// Persists an event whose to_json throws.
struct add_poison {
  using reply = done;
};
/// Persists an event whose to_json / from_json lose the value.
struct add_lossy {
  std::int64_t n = 0;
  using reply = done;
};
/// The command handler throws.
struct boom {
  using reply = done;
};
/// Effect none without a reply, for a non-`done` reply type.
struct silent {
  using reply = std::int64_t;
};
/// Unhandled.
struct refuse {
  using reply = done;
};
/// Persists, then runs a side effect (counted in counter::side_effects).
struct add_and_run {
  std::int64_t n = 0;
  using reply = done;
};
/// A business rule: n must not be negative.
struct checked_add {
  std::int64_t n = 0;
  using reply = done;
};

// -- events ----------------------------------------------------------------------------
struct added {
  std::int64_t n = 0;
  friend bool operator==(const added&, const added&) = default;
};
struct poison {
  std::int64_t n = 0;
};
struct lossy {
  std::int64_t n = 0;
  friend bool operator==(const lossy&, const lossy&) = default;
};

inline void to_json(nlohmann::json& j, const added& x) {
  j = nlohmann::json{{"n", x.n}};
}
inline void from_json(const nlohmann::json& j, added& x) {
  j.at("n").get_to(x.n);
}
inline void to_json(nlohmann::json&, const poison&) {
  throw std::runtime_error("poison does not encode");
}
inline void from_json(const nlohmann::json& j, poison& x) {
  j.at("n").get_to(x.n);
}
inline void to_json(nlohmann::json& j, const lossy&) {
  j = nlohmann::json::object();
}
inline void from_json(const nlohmann::json&, lossy& x) {
  x.n = 0;
}

// -- the entity ------------------------------------------------------------------------
struct counter {
  static constexpr std::string_view entity_type = "counter";

  using command = std::variant<add, add_many, get, add_and_stop, add_poison, add_lossy, boom,
                               silent, refuse, add_and_run, checked_add>;
  using event = std::variant<added, poison, lossy>;

  struct state {
    std::int64_t total = 0;
    std::int64_t events = 0;
    friend bool operator==(const state&, const state&) = default;
  };

  using effect = troupe::persistence::effect<counter>;

  static inline std::atomic<int> side_effects{0};
  static inline std::atomic<int> recoveries{0};

  static effect on_command(const state&, const add& c) { return effect::persist(added{c.n}); }
  static effect on_command(const state&, const add_many& c) {
    std::vector<event> events;
    for (auto n : c.ns)
      events.push_back(added{n});
    return effect::persist(std::move(events)).then_reply(c, [](const state& s) {
      return s.total;
    });
  }
  static effect on_command(const state& s, const get& c) { return effect::reply(c, s.total); }
  static effect on_command(const state&, const add_and_stop& c) {
    return effect::persist(added{c.n}).then_stop();
  }
  static effect on_command(const state&, const add_poison&) {
    return effect::persist(poison{1});
  }
  static effect on_command(const state&, const add_lossy& c) {
    return effect::persist(lossy{c.n});
  }
  static effect on_command(const state&, const boom&) {
    throw std::runtime_error("boom");
  }
  static effect on_command(const state&, const silent&) { return effect::none(); }
  static effect on_command(const state&, const refuse&) { return effect::unhandled(); }
  static effect on_command(const state&, const add_and_run& c) {
    return effect::persist(added{c.n}).then_run([](const state&) { ++side_effects; });
  }
  static effect on_command(const state&, const checked_add& c) {
    if (c.n < 0)
      return effect::reply_error(c, "n must not be negative");
    return effect::persist(added{c.n});
  }

  static state on_event(state s, const added& e) {
    s.total += e.n;
    ++s.events;
    return s;
  }
  static state on_event(state s, const poison&) { return s; }
  static state on_event(state s, const lossy& e) {
    s.total += e.n;
    ++s.events;
    return s;
  }

  static void on_recovery_completed(const state&) { ++recoveries; }

  static std::vector<std::string> tags(const event& e) {
    if (std::holds_alternative<added>(e) && std::get<added>(e).n < 0)
      return {"negative"};
    return {};
  }
};

inline void to_json(nlohmann::json& j, const counter::state& s) {
  j = nlohmann::json{{"total", s.total}, {"events", s.events}};
}
inline void from_json(const nlohmann::json& j, counter::state& s) {
  j.at("total").get_to(s.total);
  j.at("events").get_to(s.events);
}

// Commands travel as JSON too (entity_protocol.hpp): the ones without fields as {}.
template <class T>
  requires std::is_empty_v<T>
void to_json(nlohmann::json& j, const T&) {
  j = nlohmann::json::object();
}
template <class T>
  requires std::is_empty_v<T>
void from_json(const nlohmann::json&, T&) {}
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(add, n)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(add_many, ns)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(add_and_stop, n)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(add_lossy, n)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(add_and_run, n)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(checked_add, n)

/// Registers the counter's events, state, commands and replies; false if a
/// registration failed.
inline bool try_register_counter(troupe::codec_registry& codec) {
  return codec.add<added>("test.added") && codec.add<poison>("test.poison")
         && codec.add<lossy>("test.lossy") && codec.add<counter::state>("test.counter-state")
         && codec.add<add>("test.add") && codec.add<add_many>("test.add-many")
         && codec.add<get>("test.get") && codec.add<add_and_stop>("test.add-and-stop")
         && codec.add<add_poison>("test.add-poison") && codec.add<add_lossy>("test.add-lossy")
         && codec.add<boom>("test.boom") && codec.add<silent>("test.silent")
         && codec.add<refuse>("test.refuse") && codec.add<add_and_run>("test.add-and-run")
         && codec.add<checked_add>("test.checked-add")
         && codec.add<std::int64_t>("test.int64");
}

} // namespace fx
