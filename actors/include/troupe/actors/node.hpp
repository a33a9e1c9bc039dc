// troupe::node: one troupe process's runtime. It owns the CAF actor system and
// everything troupe starts in it, and stops all of it in a bounded time.
//
//   auto cfg = troupe::config::load(troupe::node_config_keys(), argc, argv);
//   auto n = troupe::node::start(std::move(*cfg));
//   auto sup = (*n)->spawn_supervisor(spec);
//   ...
//   (*n)->shutdown();   // also run by the destructor
//
// Guardian tree: every long-lived actor is a descendant of the node's guardian (a
// supervisor whose children are temporary). shutdown():
//   1. runs the coordinated-shutdown phases (shutdown_phase.hpp): the tasks upper
//      layers added, phase by phase, each phase within its own timeout (the
//      cluster leaves, shards hand off, ... while every actor still runs);
//   2. marks the node stopping (new spawns fail with shutting_down);
//   3. asks the guardian to stop its children in reverse start order, each actor
//      within shutdown.actor-timeout (then killed); supervisors below do the same
//      with their children's shutdown_timeout;
//   4. runs the stop hooks of upper layers in reverse order (journal writers, the
//      transport, ...) and erases every name from CAF's registry;
//   5. waits for CAF's actor count to reach zero, then destroys the actor system.
// All of it is bounded by shutdown.timeout: if CAF would wait forever (an actor
// outside the tree, a blocking actor that ignores exit messages), shutdown reports
// it and abandons the actor system instead of hanging. CAF's own shutdown hangs on
// registered, published or detached actors; the guardian tree avoids all three.
//
// Thread-safety: start(), spawn*(), add_stop_hook() and shutdown() may be called
// from any non-actor thread. Do not call the blocking members from inside actors.
#pragma once

#include "troupe/actors/config.hpp"
#include "troupe/actors/expected.hpp"
#include "troupe/actors/node_context.hpp"
#include "troupe/actors/shutdown_phase.hpp"
#include "troupe/actors/spawn.hpp"
#include "troupe/actors/supervisor.hpp"

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>

#include <atomic>
#include <chrono>

#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace troupe {

namespace detail {
struct node_caf_config;
} // namespace detail

/// The scheduler workers a node runs with `scheduler.threads = 0` (the default):
/// one per hardware thread but one, at least one. The core left over runs the
/// threads outside the scheduler that carry the load next to the actors: the
/// journal's writer (SQLite, fsync), the transport's I/O thread, the clock.
/// docs/architecture.md, "Threads", has the measurements behind it.
unsigned default_scheduler_threads() noexcept;

class node {
public:
  struct options {
    /// Share one codec registry between nodes (several nodes in one process).
    std::shared_ptr<codec_registry> codec;
  };

  struct shutdown_report {
    bool clean = true;                  ///< everything stopped within the bounds
    std::vector<std::string> problems;  ///< what did not stop, and why
    duration took{0};
  };

  static expected<std::unique_ptr<node>> start(troupe::config cfg, options opts = {});

  ~node();
  node(const node&) = delete;
  node& operator=(const node&) = delete;

  caf::actor_system& system() noexcept { return *system_; }
  node_context& context() noexcept { return *context_; }
  const std::string& name() const noexcept { return context_->name(); }
  logger& log() noexcept { return context_->log(); }
  metrics_registry& metrics() noexcept { return context_->metrics(); }
  node_health& health() noexcept { return context_->health(); }
  codec_registry& codec() noexcept { return context_->codec(); }
  const troupe::config& config() const noexcept { return context_->config(); }

  /// Starts a long-lived troupe actor under the guardian (stopped by shutdown, not
  /// restarted when it fails). See spawn_actor for `fun`.
  template <caf::spawn_options Os = caf::no_spawn_options, class F, class... Ts>
  expected<caf::actor> spawn(std::string name, F fun, Ts... xs) {
    auto factory = [name, fun, xs...](caf::actor_system& sys) {
      return spawn_actor<Os>(sys, name, fun, xs...);
    };
    return adopt_actor(std::move(name), std::move(factory));
  }

  /// Starts the actor `factory` returns under the guardian, like spawn: temporary,
  /// stopped at shutdown within shutdown.actor-timeout.
  expected<caf::actor> adopt_actor(std::string name, child_factory factory);

  /// Starts a supervisor (and its subtree) under the guardian.
  expected<caf::actor> spawn_supervisor(supervisor_spec spec);

  /// Starts any child spec under the guardian.
  expected<caf::actor> adopt(child_spec spec);

  /// Upper layers register how to stop their non-actor parts (threads, sockets).
  /// Hooks run once, in reverse registration order, after all actors stopped.
  void add_stop_hook(std::string name, std::function<void()> hook);

  using deadline = std::chrono::steady_clock::time_point;
  /// Adds a task to a phase of the coordinated shutdown. Tasks of a phase run in
  /// the order they were added, on the thread that called shutdown(), while all
  /// actors still run; each gets the phase's deadline and must return by then
  /// (one that returns late is reported). Tasks must not call shutdown().
  void add_shutdown_task(shutdown_phase phase, std::string name,
                         std::function<void(deadline)> task);
  /// Whether shutdown() has begun (its phases may still be running).
  bool shutting_down() const;

  /// Stops everything; idempotent (later calls return the first report).
  shutdown_report shutdown();

private:
  node(std::unique_ptr<detail::node_caf_config> cfg, std::shared_ptr<node_context> ctx);

  std::unique_ptr<detail::node_caf_config> caf_config_;
  std::unique_ptr<caf::actor_system> system_;
  std::shared_ptr<node_context> context_;
  std::mutex mtx_;
  std::vector<std::pair<std::string, std::function<void()>>> stop_hooks_;
  struct shutdown_task {
    shutdown_phase phase;
    std::string name;
    std::function<void(deadline)> run;
  };
  std::vector<shutdown_task> shutdown_tasks_;
  std::atomic<bool> shutdown_begun_{false};
  std::optional<shutdown_report> report_;
};

} // namespace troupe
