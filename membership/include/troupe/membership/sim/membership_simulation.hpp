// troupe::membership::sim::membership_simulation: N membership cores in one
// thread, in virtual time, over a seeded faulty network.
//
//   membership_simulation sim{{.nodes = 5, .seed = 42}};
//   sim.start_all();
//   sim.run_until(10s);                  // virtual seconds
//   sim.partition({0, 1, 2}, {3, 4});
//   sim.run_for(20s);
//   CHECK(sim.violations().empty());
//
// Nodes are numbered 0..N-1 and listen at 127.0.0.1:(7000+i); each start gives a
// node a new incarnation. Faults: crash (kill -9: in-flight messages to it are
// lost; peers get the transport's `lost` signal with probability
// lost_signal_on_crash), pause (a GC pause or SIGSTOP: messages to it wait until
// it resumes), partitions and one-way link blocks (peers get `lost` once a link
// has been blocked for transport_failure_timeout), message drop / duplication /
// delay. A node that its core terminates (downed, removed, refused) stops, like a
// troupe-node that exits; with restart_stopped_after set, an orchestrator starts
// it again (a new incarnation) once no link is blocked.
//
// After every step (one delivery or one tick) the invariant checker
// (invariants.hpp) looks at the node that stepped; violations() lists what broke,
// each with the virtual time. The trace hash covers every step and event: two runs
// with the same seed and options must give the same hash.
//
// Thread-safety: none.
#pragma once

#include "troupe/membership/membership_core.hpp"
#include "troupe/membership/sim/invariants.hpp"
#include "troupe/membership/sim/network.hpp"

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <queue>
#include <string>
#include <vector>

namespace troupe::membership::sim {

struct simulation_options {
  std::size_t nodes = 5;
  std::size_t seed_nodes = 3;  ///< the first k nodes are the seed nodes
  std::uint64_t seed = 1;
  membership_settings settings{};  ///< seed_nodes is filled in
  /// Adjusts one node's settings at each start (e.g. an incompatible node).
  std::function<void(node_index, membership_settings&)> configure_node;
  link_faults faults{0.01, 0.01, std::chrono::milliseconds{1}, std::chrono::milliseconds{20}};
  double lost_signal_on_crash = 0.7;
  duration transport_failure_timeout = std::chrono::seconds{5};
  std::optional<duration> restart_stopped_after = std::chrono::seconds{1};
  invariant_options invariants{};
  /// Keep the last this many trace lines (printed when a test fails).
  std::size_t trace_lines = 200;
  /// Also trace every delivered message (for replaying one failing seed).
  bool trace_messages = false;
};

class membership_simulation {
public:
  enum class node_state { not_started, running, paused, stopped };

  struct node {
    node_address address;
    node_state state = node_state::not_started;
    std::unique_ptr<membership_core> core;  ///< the current or last incarnation
    std::uint32_t starts = 0;
    timestamp next_tick{0};
    timestamp paused_until{0};
    std::deque<envelope> held;  ///< arrived while paused
    std::string stop_reason;
  };

  explicit membership_simulation(simulation_options options);

  // ---- faults and commands (take effect at now()) ----
  void start(node_index i);
  void start_all();
  void crash(node_index i);
  void pause(node_index i, duration d);
  void partition(const std::vector<node_index>& a, const std::vector<node_index>& b);
  void block(node_index from, node_index to);
  void heal();
  void leave(node_index i);
  void down(node_index by, node_index target);
  /// Runs `action` at virtual time `at` (a scheduled fault).
  void at(timestamp at, std::function<void()> action);
  /// Carries a message of an upper layer (singleton, sharding) from `from` to
  /// `to` over the same faulty links: `deliver` runs after a random delay unless
  /// the message is dropped or the link is blocked (at sending or at delivery),
  /// and only if the receiver still runs the incarnation it ran at sending.
  void send_extension(node_index from, node_index to, std::function<void()> deliver);

  // ---- running ----
  void run_until(timestamp t);
  void run_for(duration d) { run_until(now_ + d); }
  /// Runs until `done()` holds or `deadline`; returns whether it held.
  bool run_until(const std::function<bool()>& done, timestamp deadline);

  // ---- observation ----
  timestamp now() const noexcept { return now_; }
  std::size_t size() const noexcept { return nodes_.size(); }
  const node& at(node_index i) const { return nodes_[i]; }
  bool running(node_index i) const { return nodes_[i].state == node_state::running; }
  network<envelope>& net() noexcept { return net_; }
  const simulation_options& options() const noexcept { return options_; }
  std::uint64_t trace_hash() const noexcept { return hash_; }
  std::uint64_t steps() const noexcept { return steps_; }
  const std::vector<std::string>& violations() const { return checker_.violations(); }
  std::string recent_trace() const;
  /// Adds a line to the trace (and its hash): upper layers' steps.
  void note(std::string line) { trace(std::move(line)); }
  /// Every running node is an up member of one converged state that holds exactly
  /// the running incarnations.
  bool all_converged_up() const;
  /// Why all_converged_up() is false, for failure messages.
  std::string describe() const;
  /// Called with every node's effects (upper layers hook in here).
  std::function<void(node_index, const effects&)> on_effects;

private:
  struct action {
    timestamp at;
    std::uint64_t order;
    std::function<void()> run;
    bool operator>(const action& o) const { return at != o.at ? at > o.at : order > o.order; }
  };

  bool step(timestamp limit);
  void deliver(node_index to, const envelope& e);
  void tick(node_index i);
  void apply(node_index i, effects& fx);
  void stop(node_index i, std::string reason);
  void schedule_restart(node_index i);
  void signal_lost_after(node_index from, node_index to, duration d);
  void deliver_extension(timestamp t, node_index from, node_index to, std::uint32_t starts,
                         std::function<void()> deliver);
  std::optional<node_index> index_of(const node_address& a) const;
  void trace(std::string line);
  void mix(std::uint64_t x) noexcept;

  simulation_options options_;
  deterministic_rng rng_;
  network<envelope> net_;
  std::vector<node> nodes_;
  std::priority_queue<action, std::vector<action>, std::greater<>> actions_;
  std::uint64_t next_action_order_ = 0;
  timestamp now_{0};
  invariant_checker checker_;
  std::uint64_t hash_ = 0xcbf29ce484222325ULL;
  std::uint64_t steps_ = 0;
  timestamp last_periodic_{0};
  std::deque<std::string> trace_;
  effects scratch_;
};

} // namespace troupe::membership::sim
