// ask: request/response that always has a timeout and always yields a value or an
// error, never a silent hang and never a killed requester.
//
//   // from any thread that is not an actor (blocks the caller):
//   expected<int> n = troupe::ask<int>(sys, counter, 2s, get_atom_v);
//
//   // from inside an event-based actor (does not block; the continuation runs
//   // exactly once, with the reply or with the error):
//   troupe::ask<int>(self, counter, 2s, get_atom_v).then([=](expected<int> n) { ... });
//
// Errors: timeout, actor_down (the receiver is gone), unexpected_message,
// actor_failed (its handler threw), node_unreachable (remote peer lost), or any
// error the receiver replied with.
//
// Do not call the blocking form from inside an actor: it parks a scheduler thread.
#pragma once

#include "troupe/actors/caf_error.hpp"
#include "troupe/actors/config.hpp"
#include "troupe/actors/expected.hpp"

#include <caf/actor_system.hpp>
#include <caf/scoped_actor.hpp>

#include <optional>
#include <utility>

namespace troupe {

namespace detail {

inline caf::duration to_caf_duration(duration d) {
  return caf::duration{std::chrono::duration_cast<std::chrono::microseconds>(d)};
}

inline error invalid_ask_target() {
  return error{errc::actor_down, "ask to an invalid (null) actor handle"};
}

} // namespace detail

/// Drops the calling thread's reference to CAF's logger. caf::scoped_actor leaves
/// one behind in a thread-local, and ~actor_system waits for every such reference,
/// so a thread that used one would keep another thread's shutdown waiting forever.
void release_thread_caf_state() noexcept;

namespace detail {
struct thread_caf_state_guard {
  ~thread_caf_state_guard() { release_thread_caf_state(); }
};
} // namespace detail

/// Blocking ask. R = void expects an empty reply.
template <class R, class Handle, class... Ts>
expected<R> ask(caf::actor_system& sys, const Handle& dest, duration timeout, Ts&&... xs) {
  if (!dest)
    return detail::invalid_ask_target();
  detail::thread_caf_state_guard release_after;
  caf::scoped_actor self{sys};
  std::optional<expected<R>> result;
  auto on_error = [&](caf::error& err) { result.emplace(from_caf_error(err)); };
  if constexpr (std::is_void_v<R>) {
    self->request(dest, detail::to_caf_duration(timeout), std::forward<Ts>(xs)...)
      .receive([&] { result.emplace(); }, on_error);
  } else {
    self->request(dest, detail::to_caf_duration(timeout), std::forward<Ts>(xs)...)
      .receive([&](R& x) { result.emplace(std::move(x)); }, on_error);
  }
  if (!result)
    return error{errc::internal, "ask: no reply and no error"};
  return std::move(*result);
}

/// Pending in-actor ask; call then() exactly once.
template <class R, class Self, class Handle, class Tuple>
class ask_handle {
public:
  ask_handle(Self* self, Handle dest, duration timeout, Tuple args)
    : self_(self), dest_(std::move(dest)), timeout_(timeout), args_(std::move(args)) {
  }

  /// `f(expected<R>)` runs once, on the actor, with the reply or the error.
  template <class F>
  void then(F f) {
    if (!dest_) {
      f(expected<R>{detail::invalid_ask_target()});
      return;
    }
    std::apply(
      [&](auto&... xs) {
        auto handle = self_->request(dest_, detail::to_caf_duration(timeout_), std::move(xs)...);
        if constexpr (std::is_void_v<R>)
          handle.then([f]() mutable { f(expected<void>{}); },
                      [f](caf::error& err) mutable { f(expected<void>{from_caf_error(err)}); });
        else
          handle.then([f](R& x) mutable { f(expected<R>{std::move(x)}); },
                      [f](caf::error& err) mutable { f(expected<R>{from_caf_error(err)}); });
      },
      args_);
  }

private:
  Self* self_;
  Handle dest_;
  duration timeout_;
  Tuple args_;
};

/// Non-blocking ask from inside an event-based actor.
template <class R, class Self, class Handle, class... Ts>
auto ask(Self* self, const Handle& dest, duration timeout, Ts&&... xs) {
  using tuple_type = std::tuple<std::decay_t<Ts>...>;
  return ask_handle<R, Self, Handle, tuple_type>{self, dest, timeout,
                                                 tuple_type{std::forward<Ts>(xs)...}};
}

} // namespace troupe
