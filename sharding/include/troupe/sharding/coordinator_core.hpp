// troupe::sharding::coordinator_core: the shard coordinator of one entity type,
// as a deterministic state machine.
//
// No clock reads, sockets, threads or CAF: inputs carry the time, outputs are
// messages to regions and durable events to write. The shell (a cluster
// singleton, coordinator.hpp) writes those events to the journal and calls
// persisted() once each is durable, in order; a new coordinator after a failover
// recovers its allocations by replaying them (recover()).
//
// What it decides (docs/sharding.md):
//   - allocation: a shard nobody hosts goes to the strategy's region (least shards)
//     under a new epoch, written durably before anyone hears of it; lookups of
//     known shards are answered at once, even while a write is in flight;
//   - epochs only grow, per shard, across releases and coordinator failovers: the
//     region that hosts a shard fences the journal with its epoch first, so a
//     stale owner's writes are rejected;
//   - rebalance: bounded rounds (the strategy), one at a time, only while the
//     cluster is stable (nobody joining or unreachable, one app version);
//   - hand-off: begin (every region stops routing and buffers; a region that dies
//     counts as acknowledged) -> hand-off (the owner stops the shard's entities)
//     -> release (written durably) -> the next request allocates it elsewhere;
//     each phase has its own timeout: begin rolls back, stopping proceeds (the
//     fence makes that safe), a late shard_stopped is accepted and ignored;
//   - a region whose node is down or removed loses its shards at once (they are
//     released and allocated again), never because a message was lost.
//
// Thread-safety: none; one coordinator is driven by one actor.
#pragma once

#include "troupe/sharding/allocation_strategy.hpp"
#include "troupe/sharding/protocol.hpp"

#include "troupe/membership/timestamp.hpp"

#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <variant>
#include <vector>

namespace troupe::sharding {

using membership::duration;
using membership::timestamp;

struct coordinator_settings {
  std::uint32_t number_of_shards = 100;
  duration rebalance_interval = std::chrono::seconds{10};
  /// Regions must acknowledge begin_hand_off within this, or the hand-off rolls back.
  duration begin_hand_off_timeout = std::chrono::seconds{5};
  /// The owner must report the shard stopped within this; then it is released anyway.
  duration hand_off_timeout = std::chrono::seconds{10};
  /// How often deferred requests (no eligible region yet) are retried.
  duration retry_interval = std::chrono::seconds{1};
  /// A shard handed off (rebalance, leave) is allocated again as soon as it is
  /// released, not on its next message: remember-entities wants its entities
  /// running again without waiting for traffic.
  bool allocate_released_at_once = false;
};

// Durable events.
struct shard_allocated {
  shard_id shard = 0;
  node_identity region;
  std::uint64_t epoch = 0;
};
struct shard_released {
  shard_id shard = 0;
};
using coordinator_event = std::variant<shard_allocated, shard_released>;

/// CBOR bytes of a durable event (the coordinator's journal payload), and back
/// (decode_failed naming the problem).
std::vector<std::uint8_t> encode(const coordinator_event& e);
expected<coordinator_event> decode_coordinator_event(const std::uint8_t* data, std::size_t size);

struct allocation {
  node_identity region;
  std::uint64_t epoch = 0;
};

/// What sharding needs to know of the cluster (from membership; see
/// cluster_snapshot_of in snapshot.hpp).
struct cluster_snapshot {
  /// Up members that may host shards (with the entity type's role), sorted.
  std::vector<node_identity> eligible;
  /// Every member that is not down, sorted: a region elsewhere is gone.
  std::vector<node_identity> members;
  /// Nobody joining or unreachable, one application version: rebalancing is allowed.
  bool stable = false;
};

struct hand_off_report {
  shard_id shard = 0;
  node_identity from;
  bool completed = false;  ///< false: rolled back
  duration took{0};
  std::string how;  ///< "stopped", "owner gone", "stop timed out", "begin timed out"
  /// Time spent in each phase (zero for a phase not reached): regions
  /// acknowledging begin_hand_off, the owner stopping the shard, the release
  /// being stored.
  duration begin{0};
  duration stopping{0};
  duration releasing{0};
};

struct coordinator_effects {
  std::vector<sharding_envelope> messages;
  /// Write these durably, in order; call persisted() once per event when done.
  std::vector<coordinator_event> persist;
  std::vector<hand_off_report> hand_offs;

  void clear() {
    messages.clear();
    persist.clear();
    hand_offs.clear();
  }
};

class coordinator_core {
public:
  coordinator_core(node_identity self, coordinator_settings settings,
                   std::unique_ptr<allocation_strategy> strategy = nullptr);

  /// Replays one durable event (before start()).
  void recover(const coordinator_event& e);
  void start(timestamp now, coordinator_effects& out);

  void members_changed(timestamp now, const cluster_snapshot& s, coordinator_effects& out);
  void receive(timestamp now, const sharding_envelope& m, coordinator_effects& out);
  /// The oldest event handed out in `persist` is durable.
  void persisted(timestamp now, coordinator_effects& out);
  void tick(timestamp now, coordinator_effects& out);

  const std::map<shard_id, allocation>& allocations() const noexcept { return homes_; }
  std::uint64_t last_epoch(shard_id s) const;
  /// Shards in hand-off with the time each began.
  std::map<shard_id, timestamp> hand_offs_in_progress() const;
  const std::set<node_identity>& registered() const noexcept { return regions_; }
  /// Shards whose home someone asked for that cannot be answered yet.
  std::vector<shard_id> deferred() const;
  /// Shards with an allocation or release being written.
  std::size_t writes_in_flight() const noexcept { return writes_.size(); }
  const coordinator_settings& settings() const noexcept { return settings_; }

private:
  enum class phase { begin, stopping, releasing };
  struct hand_off_state {
    node_identity from;
    phase at = phase::begin;
    timestamp started{0};
    timestamp stopping_since{-1};   ///< when `stopping` began (-1: not reached)
    timestamp releasing_since{-1};
    timestamp phase_deadline{0};
    std::set<node_identity> awaiting;  ///< begin: regions yet to acknowledge
    std::string how;
  };
  struct write {
    coordinator_event event;
    std::vector<node_identity> reply_to;  ///< allocations: who asked
  };

  void send(const node_identity& to, sharding_message m, coordinator_effects& out);
  void on_get_shard_home(timestamp now, const node_identity& from, shard_id s,
                         coordinator_effects& out);
  void reconcile(const node_identity& region,
                 const std::vector<std::pair<shard_id, std::uint64_t>>& hosted,
                 coordinator_effects& out);
  void allocate(timestamp now, shard_id s, std::vector<node_identity> waiters,
                const node_identity& requester, coordinator_effects& out);
  void release(shard_id s, coordinator_effects& out);
  void write_event(coordinator_event e, std::vector<node_identity> reply_to,
                   coordinator_effects& out);
  void begin_hand_off_of(timestamp now, shard_id s, coordinator_effects& out);
  void advance_hand_off(timestamp now, shard_id s, coordinator_effects& out);
  void finish_hand_off(timestamp now, shard_id s, bool completed, coordinator_effects& out);
  void region_gone(timestamp now, const node_identity& r, coordinator_effects& out);
  void retry_deferred(timestamp now, coordinator_effects& out);
  void maybe_rebalance(timestamp now, coordinator_effects& out);
  shard_map eligible_map() const;
  bool is_gone(const node_identity& r) const;

  node_identity self_;
  coordinator_settings settings_;
  std::unique_ptr<allocation_strategy> strategy_;
  bool started_ = false;
  bool hello_pending_ = false;

  // durable
  std::map<shard_id, allocation> homes_;
  std::map<shard_id, std::uint64_t> last_epoch_;

  // volatile
  std::set<node_identity> regions_;        ///< registered, hosting
  std::set<node_identity> proxies_;        ///< registered, proxy-only
  std::set<node_identity> shutting_down_;  ///< asked for a graceful shutdown
  cluster_snapshot cluster_;
  std::deque<write> writes_;               ///< handed out, not yet durable
  std::set<shard_id> allocating_;          ///< an allocation is being written
  std::set<shard_id> releasing_;           ///< a release is being written
  std::map<shard_id, std::vector<node_identity>> deferred_;  ///< waiting for a home
  std::map<shard_id, hand_off_state> hand_offs_;
  timestamp next_rebalance_{0};
  timestamp next_retry_{0};
};

} // namespace troupe::sharding
