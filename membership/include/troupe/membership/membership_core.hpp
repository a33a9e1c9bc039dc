// troupe::membership::membership_core: one node's membership logic as a
// deterministic state machine.
//
// No clock reads, sockets, threads, CAF or hidden randomness: every input carries
// the current time, randomness comes from the seed given at construction, and
// every call appends what the node must do to `effects` (messages to send, cluster
// events, downing decisions). Given the same inputs in the same order, a core
// produces the same outputs: that is what lets the simulator
// (troupe/membership/sim) run 25 nodes in one thread in virtual time over a
// faulty network and replay any failing schedule from its seed. The cluster shell
// (cluster.hpp) runs one core per node behind a CAF actor, the transport and a
// timer.
//
// What it implements (docs/membership.md has the rules and why):
//   - joining through seed nodes (the first seed bootstraps by joining itself when
//     no other seed answers within seed-node-timeout), with a compatibility check;
//   - gossip of the membership state to random peers, versioned by vector clocks,
//     with a seen set, convergence and digests while converged, faster gossip
//     while the state is not yet seen by half the members;
//   - heartbeats to ring neighbours judged by phi-accrual detectors, and
//     per-observer reachability;
//   - leader actions on convergence (joining->up, leaving->exiting,
//     exiting->removed, down->removed) and weakly-up without convergence;
//   - the split-brain resolver, decided by the leader of each side once the
//     unreachable set has been stable for stable-after;
//   - leave and down commands.
//
// Thread-safety: none; one core is driven by one thread (the shell's actor).
#pragma once

#include "troupe/actors/expected.hpp"
#include "troupe/membership/cluster_event.hpp"
#include "troupe/membership/gossip.hpp"
#include "troupe/membership/phi_accrual_detector.hpp"
#include "troupe/membership/protocol.hpp"
#include "troupe/membership/random.hpp"
#include "troupe/membership/settings.hpp"
#include "troupe/membership/split_brain_resolver.hpp"

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <vector>

namespace troupe::membership {

/// What one call asks the caller to do, in order.
struct effects {
  std::vector<envelope> messages;
  std::vector<cluster_event> events;
  std::vector<downing_decision> decisions;

  bool empty() const noexcept { return messages.empty() && events.empty() && decisions.empty(); }
  void clear() {
    messages.clear();
    events.clear();
    decisions.clear();
  }
};

struct core_stats {
  std::uint64_t gossip_sent = 0;         ///< full states
  std::uint64_t gossip_status_sent = 0;  ///< digests
  std::uint64_t gossip_received = 0;
  std::uint64_t gossip_merges = 0;       ///< concurrent versions merged
  std::uint64_t heartbeats_sent = 0;
  std::uint64_t heartbeat_responses = 0;
  std::uint64_t downing_decisions = 0;
  std::uint64_t dropped_messages = 0;    ///< for another incarnation or out of phase
};

class membership_core {
public:
  enum class phase {
    idle,        ///< constructed, start() not called
    joining,     ///< looking for a cluster through the seed nodes
    member,      ///< part of the cluster (any status but removed)
    terminated,  ///< downed, removed or refused: the node must stop
  };

  membership_core(node_identity self, membership_settings settings, std::uint64_t seed);

  /// Begins joining through the seed nodes (with none, waits for join_seed_nodes).
  void start(timestamp now, effects& out);
  /// Joins through `seeds` (the first one bootstraps if it is this node).
  void join_seed_nodes(timestamp now, std::vector<node_address> seeds, effects& out);
  void receive(timestamp now, const envelope& message, effects& out);
  /// Drives every timer: call at least every tick_interval().
  void tick(timestamp now, effects& out);
  /// The transport lost its connection to `peer` (an input; it never downs anyone).
  void connection_lost(timestamp now, const node_identity& peer, effects& out);
  /// Asks the member at `node` to leave (this node's own address: graceful leave).
  expected<void> leave(timestamp now, const node_address& node, effects& out);
  /// Marks the member at `node` down (an operator's decision).
  expected<void> down(timestamp now, const node_address& node, effects& out);

  const node_identity& self() const noexcept { return self_; }
  const membership_settings& settings() const noexcept { return settings_; }
  phase current_phase() const noexcept { return phase_; }
  const gossip& state() const noexcept { return *state_; }
  std::shared_ptr<const gossip> state_ptr() const noexcept { return state_; }
  const member* self_member() const noexcept { return state_->find(self_); }
  std::optional<node_identity> leader() const { return state_->leader(self_); }
  bool is_leader() const;
  bool converged() const { return state_->converged(); }
  /// The nodes this node sends heartbeats to, with their detectors' phi.
  std::vector<std::pair<node_identity, double>> monitored(timestamp now) const;
  const core_stats& stats() const noexcept { return stats_; }
  /// The interval the caller should tick at (a fraction of the shortest timer).
  duration tick_interval() const noexcept;

private:
  struct monitored_node {
    phi_accrual_detector detector;
    bool connection_lost = false;  ///< until the next heartbeat response
  };

  void send(const node_identity& to, protocol_message m, effects& out);
  void adopt(gossip next, effects& out);
  void change(gossip next, effects& out);  // a local change: version bump
  void terminate(cluster_event e, effects& out);

  void on_init_join(timestamp now, const envelope& e, effects& out);
  void on_init_join_ack(timestamp now, const envelope& e, effects& out);
  void on_init_join_nack(timestamp now, const envelope& e, effects& out);
  void on_join(timestamp now, const envelope& e, const join_request& j, effects& out);
  void on_welcome(timestamp now, const envelope& e, const welcome& w, effects& out);
  void on_gossip(timestamp now, const envelope& e, const gossip& remote, effects& out);
  void on_gossip_status(const envelope& e, const gossip_status& s, effects& out);
  void on_heartbeat_response(timestamp now, const envelope& e);

  void join_tick(timestamp now, effects& out);
  void conflict_tick(timestamp now, effects& out);
  void join_through(timestamp now, const node_identity& member, effects& out);
  void self_join(effects& out);
  void gossip_tick(timestamp now, effects& out);
  void heartbeat_tick(timestamp now, effects& out);
  void reachability_tick(timestamp now, effects& out);
  void leader_tick(timestamp now, effects& out);
  void leader_actions_on_convergence(timestamp now, effects& out);
  void weakly_up_actions(timestamp now, effects& out);
  void split_brain_tick(timestamp now, effects& out);
  void apply_downing(downing_decision d, effects& out);
  void gossip_to(const node_identity& to, effects& out);
  void push_to_members(effects& out);

  std::optional<std::string> incompatibility(const join_request& j) const;
  /// Index of the first seed address where a live member of this cluster runs
  /// (the seed list's size if none): which of two clusters yields to the other.
  std::size_t seed_rank() const;
  std::vector<node_identity> heartbeat_receivers() const;

  node_identity self_;
  membership_settings settings_;
  deterministic_rng rng_;
  phase phase_ = phase::idle;
  std::shared_ptr<const gossip> state_;

  // joining
  std::vector<node_address> seeds_;
  std::vector<node_address> nacked_;  // seeds that answered "not a member" (sorted)
  timestamp join_started_{0};
  timestamp next_join_attempt_{0};
  std::optional<node_identity> join_target_;
  bool cluster_answered_ = false;  // some member acknowledged: a cluster exists
  timestamp join_sent_at_{0};

  // timers
  timestamp next_gossip_{0};
  timestamp next_heartbeat_{0};
  timestamp next_leader_actions_{0};
  timestamp next_tombstone_prune_{0};
  timestamp next_conflict_check_{0};
  std::uint64_t heartbeat_sequence_ = 0;
  std::map<node_identity, monitored_node> monitored_;

  // weakly-up and the split-brain resolver's stability tracking
  std::optional<timestamp> not_converged_since_;
  std::vector<node_identity> sbr_observed_;  // unreachable set + member set, as seen
  timestamp sbr_stable_since_{0};
  std::optional<timestamp> sbr_unstable_since_;

  core_stats stats_;
};

std::string_view to_string(membership_core::phase p) noexcept;

} // namespace troupe::membership
