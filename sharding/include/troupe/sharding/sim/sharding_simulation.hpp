// troupe::sharding::sim::sharding_simulation: sharded entities over the membership
// simulator, in virtual time, with an in-memory journal that fences by epoch.
//
// Every node runs membership (membership_simulation), a cluster singleton manager
// for the shard coordinator (singleton_core) and, while it holds the singleton, a
// coordinator_core whose events go to the journal's coordinator log; a region_core;
// the shards the coordinator gave it (fenced in the journal before they start);
// and counter entities that persist one event per command. A client on every node
// sends commands to random entities through its region. Regions, coordinators and
// entities talk over the simulator's faulty links (send_extension), so crashes,
// pauses, partitions and message loss hit them too.
//
// Checked after every step that touches an entity or a shard, and periodically:
//   - never two live incarnations of one entity that can both persist (their
//     epoch is not below the shard's fence in the journal);
//   - an acknowledged command is in the journal (checked at the end too), and
//     every entity's events have contiguous sequence numbers (the journal refuses
//     anything else);
//   - every hand-off completes or is rolled back within its timeouts;
// and, once the last fault has healed (settled()): one coordinator, every
// allocated shard hosted by exactly one live region under its epoch, nothing
// buffered, and a command to every entity acknowledged.
//
// Thread-safety: none.
#pragma once

#include "troupe/membership/sim/membership_simulation.hpp"
#include "troupe/membership/singleton_core.hpp"
#include "troupe/sharding/coordinator_core.hpp"
#include "troupe/sharding/region_core.hpp"

#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace troupe::sharding::sim {

using membership::sim::node_index;

struct sharding_sim_options {
  membership::sim::simulation_options membership{};
  std::uint32_t number_of_shards = 16;
  std::size_t entities = 40;
  coordinator_settings coordinator{};
  region_settings region{};
  duration min_write = std::chrono::milliseconds{1};  ///< journal write latency
  duration max_write = std::chrono::milliseconds{20};
  duration command_interval = std::chrono::milliseconds{100};  ///< per node's client
  duration tick_interval = std::chrono::milliseconds{100};
};

/// The shared journal every node writes to (a shared SQLite file in the demo).
class journal_model {
public:
  enum class result { ok, fenced, conflict };

  /// Appends command `command` as event `seq` of `entity` under the shard's fence.
  result append(const std::string& entity, std::uint64_t seq, shard_id shard, std::uint64_t epoch,
                std::uint64_t command);
  /// Raises the shard's fence to `epoch`; fenced if it is already higher.
  result fence(shard_id shard, std::uint64_t epoch);
  result append_coordinator(std::uint64_t seq, coordinator_event e);

  std::uint64_t fence_of(shard_id shard) const;
  std::uint64_t highest_seq(const std::string& entity) const;
  const std::map<std::string, std::vector<std::uint64_t>>& events() const noexcept {
    return events_;
  }
  const std::vector<coordinator_event>& coordinator_log() const noexcept { return coordinator_; }

private:
  std::map<std::string, std::vector<std::uint64_t>> events_;  ///< commands, seq = index + 1
  std::map<shard_id, std::uint64_t> fences_;
  std::vector<coordinator_event> coordinator_;
};

class sharding_simulation {
public:
  explicit sharding_simulation(sharding_sim_options options);
  ~sharding_simulation();

  membership::sim::membership_simulation& cluster() noexcept { return sim_; }
  const journal_model& journal() const noexcept { return journal_; }

  /// Clients send commands from now on (until stop_clients).
  void start_clients();
  void stop_clients();
  /// Sends one command to every entity (from random nodes); settled() waits for them.
  void probe_every_entity();

  /// One coordinator, one host per allocated shard, buffers empty, every probe
  /// acknowledged.
  bool settled();
  std::string describe() const;
  const std::vector<std::string>& violations() const noexcept { return violations_; }
  /// Checks at the end: every acknowledged command is in the journal.
  void final_checks();

  /// Node i's region and coordinator (null if none runs there).
  const region_core* region(node_index i) const;
  const coordinator_core* coordinator(node_index i) const;

  std::uint64_t acknowledged() const noexcept { return acked_.size(); }
  std::uint64_t hand_offs_completed() const noexcept { return hand_offs_completed_; }
  std::uint64_t hand_offs_rolled_back() const noexcept { return hand_offs_rolled_back_; }

private:
  struct command {
    std::uint64_t id;
    std::string entity;
    int hops = 0;
    bool probe = false;
  };
  struct entity_state;
  struct shard_state;
  struct node_state;

  node_state* state_of(node_index i);
  void on_membership(node_index i);
  void tick(node_index i, std::uint32_t starts);
  void client_tick(node_index i, std::uint32_t starts);
  void route(node_index i, command c);
  void apply_region(node_index i, region_effects& fx);
  void apply_coordinator(node_index i, coordinator_effects& fx);
  void apply_singleton(node_index i, membership::singleton_effects& fx);
  void start_coordinator(node_index i);
  void write_coordinator(node_index i);
  void deliver_local(node_index i, shard_id s, std::uint64_t epoch, command c);
  void persist_next(node_index i, const std::string& entity);
  void start_shard(node_index i, shard_id s, std::uint64_t epoch);
  void stop_shard(node_index i, shard_id s);
  void maybe_shard_stopped(node_index i, shard_id s);
  void stop_entity(node_index i, const std::string& entity, const std::string& why);
  void check_single_writer(const std::string& entity);
  void periodic_checks();
  void fail(std::string what);
  std::optional<node_index> index_of(const node_identity& n) const;

  sharding_sim_options options_;
  membership::sim::membership_simulation sim_;
  membership::deterministic_rng rng_;
  journal_model journal_;
  std::vector<std::unique_ptr<node_state>> nodes_;
  std::vector<std::string> entity_ids_;
  std::uint64_t next_command_ = 1;
  std::set<std::uint64_t> acked_;
  std::set<std::size_t> probes_open_;  ///< entities (indexes) not yet acknowledged since probed
  bool clients_ = false;
  std::uint64_t hand_offs_completed_ = 0;
  std::uint64_t hand_offs_rolled_back_ = 0;
  std::vector<std::string> violations_;
  membership::timestamp last_periodic_{0};
};

} // namespace troupe::sharding::sim
