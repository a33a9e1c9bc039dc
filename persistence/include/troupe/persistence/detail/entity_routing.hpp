// Internal: what a router of entity commands (sharding's shard region and its
// entity_ref) needs of the entity runtime beyond entity.hpp's asks:
//
// - asks whose deadline the asking actor's table keeps (entity_ask.cpp), for any
//   request answered with a reply_box, so a router's reply costs no CAF timer;
// - asks that report a command the entity never received (it had ended: CAF
//   bounced the request) instead of failing it, so the router can send it again
//   to the entity's next incarnation;
// - the commands an entity handed back (owned_entity.hpp) read and answered by
//   whoever routes them next.
//
// Thread-safety: the in-actor functions run inside the asking actor; the blocking
// ask from a non-actor thread; the rest anywhere.
#pragma once

#include "troupe/actors/config.hpp"
#include "troupe/actors/expected.hpp"
#include "troupe/persistence/detail/entity_model.hpp"

#include <caf/fwd.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>

namespace troupe::persistence::detail {

using ask_continuation = std::function<void(expected<reply_box>)>;

/// An ask registered in its actor's deadline table: completed once, by
/// finish_ask with the reply or by the table with `timeout` at its deadline.
struct ask_ticket {
  std::shared_ptr<void> table;
  std::uint64_t id = 0;
};

using ask_clock = std::chrono::steady_clock;

/// Registers an ask of `self` due after `timeout`; `k` runs on `self`, once.
ask_ticket begin_ask(caf::event_based_actor* self, duration timeout, ask_continuation k);

/// The same, due at `deadline` (a caller that already read the clock), which is
/// `timeout` after the ask began (for the timeout error's message).
ask_ticket begin_ask(caf::event_based_actor* self, ask_clock::time_point deadline,
                     duration timeout, ask_continuation k);

/// Completes the ask (a no-op if it already timed out).
void finish_ask(const ask_ticket& t, expected<reply_box> r);

/// Takes the ask out of the table without completing it (null if it already
/// completed): its continuation, to be completed by another ask.
ask_continuation take_ask(const ask_ticket& t);

/// Called with a command the entity never received, and the ask's continuation.
using bounce_fn = std::function<void(command_ptr, ask_continuation)>;

/// The in-actor ask (entity.hpp), due at `deadline` (`timeout` after it began),
/// except that a command bounced because the entity had ended goes to `bounced`
/// (not null) instead of failing.
void ask_entity(caf::event_based_actor* self, const caf::actor& dest,
                ask_clock::time_point deadline, duration timeout, command_ptr cmd,
                ask_continuation done, bounce_fn bounced);

/// The blocking ask, with `sent` called right after the command is enqueued, and
/// `bounced` set (and the command not handled) if the entity had ended.
expected<reply_box> ask_entity(caf::actor_system& sys, const caf::actor& dest, duration timeout,
                               command_ptr cmd, const std::function<void()>& sent,
                               bool& bounced);

/// The command in a mailbox element an entity handed back (null if it holds a
/// state query or no command).
command_ptr command_of(const caf::mailbox_element& e);

/// Answers `rp` the way the entity answers a command: a reply_box, or the error.
void answer_command(caf::response_promise& rp, expected<reply_box> r);

} // namespace troupe::persistence::detail
