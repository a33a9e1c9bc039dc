// What an event-sourced entity's command handler returns: an effect.
//
//   static effect on_command(const state& s, const withdraw& c) {
//     if (s.balance < c.amount)
//       return effect::reply_error(c, "insufficient balance");
//     return effect::persist(withdrawn{c.amount});            // replies `done` once durable
//   }
//   static effect on_command(const state& s, const get_balance& c) {
//     return effect::reply(c, s.balance);
//   }
//
// Primary effects (exactly one per command):
//   persist(e) / persist({e1, e2})  store the events atomically; apply them to the
//                                   state only once they are durable
//   none()                          nothing to store
//   unhandled()                     the command makes no sense in this state; the
//                                   requester gets an unexpected_message error
//   stop()                          stop the entity (after the follow-ups ran)
//   reply(c, value) / reply_error(c, ...)   none() plus an immediate reply
//
// Follow-ups run once, in the order given, after the events are durable (at once
// when nothing is persisted), on the state with the events applied; never during
// recovery, and not at all when the persist fails or is rejected:
//   .then_reply(c, f)   reply f(state) to the requester of c (R or expected<R>)
//   .then_run(f)        run f(state)
//   .then_stop()        stop the entity
//
// Replies are typed: every command declares `using reply = R;` and the command
// object passed to reply / then_reply is the compile-time proof of what the
// requester waits for (like Akka's replyTo). A command whose reply type is `done`
// and whose effect has no reply gets `done` automatically when the effect
// completes; any other command without a reply gets an error, so a requester never
// waits for a reply that will not come.
//
// Thread-safety: an effect is a value created and consumed on the entity's thread.
#pragma once

#include "troupe/actors/error.hpp"
#include "troupe/actors/expected.hpp"

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <type_traits>
#include <typeindex>
#include <utility>
#include <variant>
#include <vector>

namespace troupe::persistence {

/// The reply of commands that only acknowledge (Akka's Done).
struct done {
  friend bool operator==(done, done) noexcept { return true; }
};

namespace detail {

/// A reply on its way to a requester: a boxed `Command::reply`, or an error.
using reply_box = std::shared_ptr<void>;
using reply_result = expected<reply_box>;

/// Boxes a reply; every `done` shares one box (most replies are acknowledgements).
template <class R>
reply_box box_reply(R&& value) {
  using type = std::decay_t<R>;
  if constexpr (std::is_same_v<type, done>) {
    static const reply_box shared = std::make_shared<done>();
    return shared;
  } else {
    return std::make_shared<type>(std::forward<R>(value));
  }
}

template <class T>
struct is_expected : std::false_type {};
template <class T>
struct is_expected<expected<T>> : std::true_type {};

template <class Entity>
class typed_model;

} // namespace detail

template <class Entity>
class effect {
public:
  using state_type = typename Entity::state;
  using event_type = typename Entity::event;

  // -- primary effects -----------------------------------------------------------------

  static effect persist(event_type e) {
    effect x{kind::persist};
    x.events_.push_back(std::move(e));
    return x;
  }

  /// Stores all events in one atomic write: all of them or none.
  static effect persist(std::vector<event_type> events) {
    effect x{events.empty() ? kind::none : kind::persist};
    x.events_ = std::move(events);
    return x;
  }

  static effect none() { return effect{kind::none}; }
  static effect unhandled() { return effect{kind::unhandled}; }
  static effect stop() { return effect{kind::none}.then_stop(); }

  template <class Command, class R>
  static effect reply(const Command& c, R&& value) {
    using reply_type = typename Command::reply;
    static_assert(std::is_convertible_v<R&&, reply_type>,
                  "reply(c, value): value does not convert to the command's reply type");
    return none().then_reply(
      c, [v = reply_type(std::forward<R>(value))](const state_type&) { return v; });
  }

  /// Replies an error: the requester's ask yields it. The default code is
  /// invalid_argument (the command broke a business rule).
  template <class Command>
  static effect reply_error(const Command& c, std::string message) {
    return reply_error(c, error{errc::invalid_argument, std::move(message)});
  }
  template <class Command>
  static effect reply_error(const Command&, error e) {
    effect x{kind::none};
    x.steps_.push_back(step{typeid(typename Command::reply),
                            [e = std::move(e)](const state_type&) -> detail::reply_result {
                              return e;
                            },
                            nullptr, false});
    return x;
  }

  // -- follow-ups ----------------------------------------------------------------------

  /// Replies f(state) once the events are durable; f returns the command's reply
  /// type or expected of it.
  template <class Command, class F>
  effect then_reply(const Command&, F f) && {
    using reply_type = typename Command::reply;
    using result_type = std::invoke_result_t<F&, const state_type&>;
    static_assert(std::is_convertible_v<result_type, reply_type>
                    || std::is_same_v<std::decay_t<result_type>, expected<reply_type>>,
                  "then_reply(c, f): f(state) must return the command's reply type "
                  "or expected of it");
    steps_.push_back(step{typeid(reply_type),
                          [f = std::move(f)](const state_type& s) mutable -> detail::reply_result {
                            if constexpr (detail::is_expected<std::decay_t<result_type>>::value) {
                              auto r = f(s);
                              if (!r)
                                return std::move(r).error();
                              return detail::box_reply(reply_type(std::move(*r)));
                            } else {
                              return detail::box_reply(reply_type(f(s)));
                            }
                          },
                          nullptr, false});
    return std::move(*this);
  }

  /// Runs f(state) once the events are durable (a side effect; at most once).
  template <class F>
  effect then_run(F f) && {
    steps_.push_back(step{typeid(void), nullptr, std::function<void(const state_type&)>{std::move(f)},
                          false});
    return std::move(*this);
  }

  /// Stops the entity once the events are durable and the other follow-ups ran.
  effect then_stop() && {
    steps_.push_back(step{typeid(void), nullptr, nullptr, true});
    return std::move(*this);
  }

  // -- inspection (tests, the runtime) ---------------------------------------------------

  bool persists() const noexcept { return kind_ == kind::persist; }
  bool is_unhandled() const noexcept { return kind_ == kind::unhandled; }
  const std::vector<event_type>& events() const noexcept { return events_; }

private:
  template <class>
  friend class detail::typed_model;

  enum class kind : std::uint8_t { none, persist, unhandled };

  struct step {
    std::type_index reply_type;  ///< the reply's C++ type (void for run/stop steps)
    std::function<detail::reply_result(const state_type&)> reply;
    std::function<void(const state_type&)> run;
    bool stop = false;
  };

  explicit effect(kind k) : kind_(k) {}

  kind kind_;
  std::vector<event_type> events_;
  std::vector<step> steps_;
};

} // namespace troupe::persistence
