// Supervision trees: supervisors restart failed children by a strategy, within a
// restart intensity, with exponential backoff and jitter.
//
//   troupe::supervisor_spec spec{
//     .name = "db",
//     .strategy = troupe::restart_strategy::one_for_one,
//     .max_restarts = 3, .within = 5s,
//     .children = {troupe::make_child("cache", cache_actor),
//                  troupe::make_supervisor_child(workers_spec)}};
//   auto sup = node.spawn_supervisor(spec);
//   auto cache = troupe::child_handle(node.system(), *sup, "cache", 1s);  // stable
//
// Contract:
// - Children start in spec order and stop in reverse order (on shutdown, and when
//   a strategy stops siblings); a child that does not stop within its
//   shutdown_timeout is killed. Starting a child, handling its exit and stopping
//   it cost O(log n) in the number of children, so a supervisor (e.g. the
//   guardian) can hold tens of thousands of dynamic children (entities). Looking a
//   child up by name (child_handle) is a linear scan.
// - A child's *stable handle* (child_handle / child_atom) is an actor handle that
//   outlives restarts. It has no mailbox: a message sent to it goes, on the
//   sender's thread, straight into the current incarnation's mailbox, keeping the
//   sender and request id (as fast as sending to the child itself). While the child
//   is restarting the handle buffers (up to buffer_capacity) and hands the buffer to
//   the next incarnation before anything sent later. Overflow replies `overloaded`
//   to requests (one-way messages are dropped and counted). Once a child is gone
//   for good (temporary, or transient after a normal exit), the handle replies
//   `stopped`. A message sent to the handle is forwarded to the child, exit
//   messages included.
//   A message sent after the reply to a failed request is held for the next
//   incarnation. Messages already in the failing child's mailbox are lost with it
//   (CAF discards a stopped actor's mailbox): their requesters get actor_down.
//   A handle lives as long as its supervisor's incarnation: when the supervisor
//   itself is restarted (escalation), the handles of its children end (monitors
//   of a handle get a down message; requests to it are answered `stopped`), and
//   clients look them up again through the supervisor's own stable handle (as with
//   Akka, where a restarted parent recreates its children).
// - A child stops "abnormally" when its exit reason is neither normal nor
//   user_shutdown. permanent children are always restarted, transient ones only
//   after an abnormal stop, temporary ones never.
// - An exception in a child's handler stops it with actor_failed (see spawn.hpp);
//   the requester of the failing message gets that error, not a timeout, and the
//   child restarts with fresh state.
// - Restart intensity: if more than max_restarts restarts would happen within
//   `within`, the supervisor stops all its children and exits with restart_limit,
//   which its own parent sees as a child failure (escalation).
// - Backoff: the n-th restart within the window waits
//   min(max, min * factor^(n-1)) * (1 + jitter * u), u uniform in [0, 1).
// - A supervisor that receives an exit from its parent (or any linked non-child)
//   stops its children in reverse order, then exits with the same reason.
//
// Thread-safety: a supervisor is an actor; talk to it with messages or through the
// blocking helpers below (not from inside an actor).
#pragma once

#include "troupe/actors/atoms.hpp"
#include "troupe/actors/config.hpp"
#include "troupe/actors/expected.hpp"
#include "troupe/actors/spawn.hpp"

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <caf/allowed_unsafe_message_type.hpp>

#include <chrono>
#include <functional>
#include <string>
#include <vector>

namespace troupe {

enum class restart_strategy {
  one_for_one,   ///< restart only the failed child
  one_for_all,   ///< stop all children, restart all
  rest_for_one,  ///< stop the failed child and those started after it, restart them
};

enum class restart_policy {
  permanent,  ///< always restarted
  transient,  ///< restarted only after an abnormal stop
  temporary,  ///< never restarted
};

std::string_view to_string(restart_strategy x) noexcept;
std::string_view to_string(restart_policy x) noexcept;

struct backoff_policy {
  duration min = std::chrono::milliseconds{10};
  duration max = std::chrono::seconds{10};
  double factor = 2.0;
  double jitter = 0.2;

  /// The delay before restart number `attempt` (1-based) with random `u` in [0, 1).
  duration delay(int attempt, double u) const;
};

/// Starts one incarnation of a child. Called by the supervisor, on its own thread,
/// for every (re)start; must return a fresh actor (or an invalid handle to report
/// a failed start, which counts as a crash).
using child_factory = std::function<caf::actor(caf::actor_system&)>;

struct child_spec {
  std::string name;
  child_factory start;
  restart_policy restart = restart_policy::permanent;
  duration shutdown_timeout = std::chrono::seconds{3};
  std::size_t buffer_capacity = 1024;
};

struct supervisor_spec {
  std::string name;
  restart_strategy strategy = restart_strategy::one_for_one;
  int max_restarts = 3;
  duration within = std::chrono::seconds{5};
  backoff_policy backoff;
  std::vector<child_spec> children;
};

/// A child running `fun(self, xs...)` as a troupe actor (see spawn_actor).
template <class F, class... Ts>
child_spec make_child(std::string name, F fun, Ts... xs) {
  auto factory = [name, fun, xs...](caf::actor_system& sys) {
    return spawn_actor(sys, name, fun, xs...);
  };
  return child_spec{name, std::move(factory)};
}

/// A nested supervisor as a child (forms a tree).
child_spec make_supervisor_child(supervisor_spec spec);

/// Spawns a supervisor. Prefer node::spawn_supervisor, which puts it under the
/// node's guardian so node::shutdown stops it.
caf::actor spawn_supervisor(caf::actor_system& sys, supervisor_spec spec);

/// What a supervisor reports about one child.
struct child_info {
  std::string name;
  caf::actor current;          ///< the running incarnation; invalid while restarting
  caf::actor handle;           ///< the stable handle
  int restarts = 0;            ///< restarts since the supervisor started
  std::string state;           ///< "running", "restarting", "stopping" or "stopped"
  duration last_backoff{0};    ///< delay chosen before the latest restart
};

/// Blocking helpers for non-actor threads (tests, main).
expected<caf::actor> child_handle(caf::actor_system& sys, const caf::actor& supervisor,
                                  const std::string& child, duration timeout);
expected<std::vector<child_info>> which_children(caf::actor_system& sys,
                                                 const caf::actor& supervisor,
                                                 duration timeout);
/// Adds a child to a running supervisor; returns its stable handle.
expected<caf::actor> start_child(caf::actor_system& sys, const caf::actor& supervisor,
                                 child_spec spec, duration timeout);

} // namespace troupe

// Local-only message types (never serialized).
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::child_spec)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::child_info)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(std::vector<troupe::child_info>)
