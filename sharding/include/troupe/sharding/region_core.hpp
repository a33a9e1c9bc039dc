// troupe::sharding::region_core: the shard region of one entity type on one node,
// as a deterministic state machine.
//
// It routes each message for an entity to where the entity's shard lives: a shard
// this node hosts (local), another node's region (remote), or, while the home is
// unknown or the shard is being handed off, a bounded buffer flushed in order once
// the home is known (to the new home after a hand-off: nothing is dropped to keep
// order, Akka's P3). It asks the coordinator for unknown homes, hosts the shards
// the coordinator gives it (fencing the journal with the shard's epoch first, via
// the shell), stops them when asked to hand them off, and drops homes on nodes that
// membership reports gone (never because a message was lost).
//
// Messages are opaque tokens here: the shell keeps their bodies and carries out the
// routing decisions and deliveries.
//
// Thread-safety: none; one region is driven by one actor.
#pragma once

#include "troupe/sharding/coordinator_core.hpp"
#include "troupe/sharding/protocol.hpp"

#include <deque>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace troupe::sharding {

using message_token = std::uint64_t;

struct region_settings {
  std::uint32_t number_of_shards = 100;
  bool proxy_only = false;
  std::size_t buffer_size = 100000;  ///< messages held in total (all shards)
  duration retry_interval = std::chrono::seconds{1};
  /// The region registers again this often, telling the coordinator what it hosts.
  duration register_interval = std::chrono::seconds{5};
  int max_hops = 3;  ///< forwards between regions before a home is asked anew
};

struct routing {
  enum class kind { local, remote, buffered, refused };
  kind what = kind::buffered;
  shard_id shard = 0;
  std::uint64_t epoch = 0;  ///< local
  node_identity region;     ///< remote
  std::string reason;       ///< refused
};

/// Buffered messages of one shard that can go now, in their order.
struct delivery_batch {
  routing destination;  ///< local or remote
  std::vector<message_token> tokens;
};

struct region_effects {
  std::vector<sharding_envelope> messages;  ///< to the coordinator
  /// Host these: fence the journal with the epoch, start the shard, then call
  /// shard_started (or shard_start_failed).
  std::vector<std::pair<shard_id, std::uint64_t>> start_shards;
  /// Stop these shards' entities (each finishes its persist in flight), then call
  /// shard_stopped_locally.
  std::vector<shard_id> stop_shards;
  std::vector<delivery_batch> deliveries;

  void clear() {
    messages.clear();
    start_shards.clear();
    stop_shards.clear();
    deliveries.clear();
  }
};

class region_core {
public:
  region_core(node_identity self, region_settings settings);

  routing route(timestamp now, std::string_view entity_id, message_token token,
                region_effects& out, int hops = 0);

  /// Where the coordinator runs now (nullopt: unknown); the region registers there.
  void coordinator_moved(timestamp now, std::optional<node_identity> coordinator,
                         region_effects& out);
  void members_changed(timestamp now, const cluster_snapshot& s, region_effects& out);
  void receive(timestamp now, const sharding_envelope& m, region_effects& out);
  void shard_started(timestamp now, shard_id s, region_effects& out);
  void shard_start_failed(timestamp now, shard_id s, region_effects& out);
  void shard_stopped_locally(timestamp now, shard_id s, region_effects& out);
  /// Messages an entity of shard `s` still held when it stopped for a hand-off go
  /// back to the front of the shard's buffer, ahead of what arrived since.
  void requeue_front(timestamp now, shard_id s, const std::vector<message_token>& tokens,
                     region_effects& out);
  void tick(timestamp now, region_effects& out);
  /// This node leaves: ask the coordinator to hand every local shard off.
  void graceful_shutdown(timestamp now, region_effects& out);

  enum class shard_state { starting, active, stopping };
  struct local_shard {
    std::uint64_t epoch = 0;
    shard_state state = shard_state::starting;
  };
  const std::map<shard_id, local_shard>& local_shards() const noexcept { return local_; }
  const std::map<shard_id, allocation>& homes() const noexcept { return homes_; }
  std::size_t buffered() const noexcept { return buffered_; }
  /// Shards with messages waiting, and how many each.
  std::map<shard_id, std::size_t> buffered_shards() const;
  std::uint64_t refused() const noexcept { return refused_; }
  bool registered() const noexcept { return registered_; }
  const node_identity& self() const noexcept { return self_; }

private:
  void send_to_coordinator(sharding_message m, region_effects& out);
  void request_home(timestamp now, shard_id s, region_effects& out, bool force = false);
  routing hold(timestamp now, shard_id s, message_token t, region_effects& out);
  void flush(shard_id s, region_effects& out);
  std::optional<routing> destination(shard_id s) const;

  node_identity self_;
  region_settings settings_;
  std::optional<node_identity> coordinator_;
  bool registered_ = false;
  bool shutting_down_ = false;
  timestamp next_register_{0};
  timestamp next_reregister_{0};
  std::map<shard_id, allocation> homes_;
  std::map<shard_id, std::uint64_t> epochs_seen_;  ///< the highest epoch heard per shard
  std::map<shard_id, local_shard> local_;
  std::set<shard_id> handing_off_;
  std::map<shard_id, timestamp> requested_;  ///< get_shard_home sent at
  std::map<shard_id, std::deque<message_token>> buffers_;
  std::size_t buffered_ = 0;
  std::uint64_t refused_ = 0;
};

} // namespace troupe::sharding
