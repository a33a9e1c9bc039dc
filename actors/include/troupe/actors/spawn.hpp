// Spawning troupe actors: CAF actors with troupe's default handlers installed.
//
// CAF's defaults are traps (see docs/architecture.md): an unhandled error response
// quits the actor, unexpected messages and down messages print to stdout, and an
// exception kills the actor with an uninformative reason. init_actor() replaces
// them on one actor:
//   - error handler: logs the error at warn level; the actor keeps running;
//   - down handler: logs at debug level;
//   - default handler: logs the unexpected message and replies unexpected_message;
//   - exception handler: logs the exception; the actor stops with actor_failed
//     naming the exception (its supervisor restarts it), and the requester of the
//     message that threw gets that error as its reply.
// Actors started through spawn_actor(), node::spawn() and supervisors get this
// automatically; call init_actor() yourself when spawning with raw CAF.
#pragma once

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <caf/scheduled_actor.hpp>
#include <caf/spawn_options.hpp>
#include <caf/unit.hpp>

#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

namespace troupe {

void init_actor(caf::scheduled_actor* self, std::string name);

/// init_actor for actors that exist by the million (entities): the same handlers,
/// without an allocation per actor. The handlers capture nothing; they ask
/// `label_of(self)` for the actor's name in a log line when one is written (on
/// the cold path only). `label_of` must be a plain function (no state).
void init_actor(caf::scheduled_actor* self, std::string (*label_of)(caf::scheduled_actor*));

namespace detail {

template <class F>
struct first_arg : first_arg<decltype(&F::operator())> {};
template <class R, class C, class A0, class... As>
struct first_arg<R (C::*)(A0, As...) const> {
  using type = A0;
};
template <class R, class C, class A0, class... As>
struct first_arg<R (C::*)(A0, As...)> {
  using type = A0;
};
template <class R, class A0, class... As>
struct first_arg<R (*)(A0, As...)> {
  using type = A0;
};
template <class R, class A0, class... As>
struct first_arg<R(A0, As...)> {
  using type = A0;
};

/// Wraps `fun(self, args...)` so that init_actor runs first. The wrapper takes one
/// dummy argument: CAF 0.17.6 dereferences a null pointer when an actor is spawned
/// with no arguments at all (harmless in practice, undefined behaviour in law, and
/// UBSan stops on it).
template <class F, class... Ts>
auto with_defaults(std::string name, F fun, Ts&&... xs) {
  using self_ptr = typename first_arg<std::decay_t<F>>::type;
  return [name = std::move(name), fun = std::move(fun),
          args = std::make_tuple(std::forward<Ts>(xs)...)](self_ptr self, caf::unit_t) mutable {
    // Blocking actors have none of these handlers (and must handle exit_msg in
    // their receive loops themselves).
    if constexpr (std::is_convertible_v<self_ptr, caf::scheduled_actor*>)
      init_actor(self, name);
    return std::apply([&](auto&... a) { return fun(self, a...); }, args);
  };
}

} // namespace detail

/// Spawns `fun(self, xs...)` as a troupe actor named `name` (the name appears in
/// logs). `fun`'s first parameter decides the actor type, as with caf::spawn:
/// caf::event_based_actor*, caf::stateful_actor<S>*, a typed actor's pointer, ...
template <caf::spawn_options Os = caf::no_spawn_options, class F, class... Ts>
caf::actor spawn_actor(caf::actor_system& sys, std::string name, F fun, Ts&&... xs) {
  return caf::actor_cast<caf::actor>(sys.spawn<Os>(
    detail::with_defaults(std::move(name), std::move(fun), std::forward<Ts>(xs)...), caf::unit));
}

} // namespace troupe
