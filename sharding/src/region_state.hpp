// Internal: the state of a shard region actor (region_actor.cpp) and the
// functions over it that the region's source files share.
//
// The region is one actor; its work is split by concept over these files:
// region_actor.cpp (its behaviour: the message handlers, carrying out what
// region_core decides, starting and stopping shards), region_delivery.cpp
// (commands to local entities and to other nodes' regions), region_entities.cpp
// (the entities' lifecycle: started on demand, passivated, stopped for a
// hand-off) and region_remembered.cpp (remember_entities: the journal's set of a
// shard's entities). The declarations below are grouped by the file that
// defines them; each function's whole contract is at its definition.
//
// Thread-safety: none; the region actor's state, used on its own thread.
#pragma once

#include "entity_slots.hpp"
#include "remembered_entities.hpp"
#include "remote_commands.hpp"

#include "troupe/actors/node_context.hpp"
#include "troupe/actors/remote/transport.hpp"
#include "troupe/membership/cluster.hpp"
#include "troupe/persistence/journal.hpp"
#include "troupe/persistence/journal_service.hpp"
#include "troupe/sharding/region_core.hpp"
#include "troupe/sharding/sharding.hpp"

#include <caf/response_promise.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/system_messages.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace troupe::sharding::detail {

/// A batch of forwarded commands or answers is sent once it holds this much (or
/// at the end of the region's worker burst, whichever comes first; less if the
/// transport's frames are smaller). About 30 small commands: enough to keep the
/// frames few, small enough that the destination starts while the origin is
/// still queueing (docs/sharding.md, "Forwarding in batches").
inline constexpr std::size_t default_batch_bytes = 2 * 1024;

/// The time region_core is given: the slot clock since its epoch.
inline timestamp now() {
  return std::chrono::duration_cast<timestamp>(slot_clock::now().time_since_epoch());
}

/// A shard's remembered entities (remember_entities), once loaded.
struct remembered_shard {
  std::uint64_t epoch = 0;
  std::set<std::string> ids;
  persistence::sequence_nr next_seq = 1;
  bool writing = false;
  bool writing_set = false;            ///< the write in flight holds the whole set
  std::size_t changes_since_set = 0;  ///< change events stored after the last set
  std::vector<std::string> started;  ///< changes not written yet
  std::vector<std::string> stopped;
  std::deque<std::string> to_start;  ///< remembered, not started yet
};

struct region_state {
  node_context* ctx = nullptr;
  /// The region's gauges, registered once at start: apply() sets them after every
  /// routed command, and looking them up in the registry each time (by name and
  /// labels, under its lock) held entity_ask_remote at 0.49-0.51 instead of 0.54-0.59.
  gauge_metric* buffered_gauge = nullptr;
  gauge_metric* shards_gauge = nullptr;
  gauge_metric* entities_gauge = nullptr;
  counter_metric* forwarded_batches = nullptr;   ///< counted per flush, registered once too
  counter_metric* forwarded_commands = nullptr;
  std::shared_ptr<const entity_type_spec> spec;
  std::unique_ptr<region_core> core;
  region_effects fx;
  std::shared_ptr<remote::transport> transport;
  std::shared_ptr<membership::cluster> cluster;
  /// Set first when the region stops: answers owed to other nodes are dropped
  /// (their deadlines answer them there), no flush is scheduled any more.
  bool stopped = false;
  remote::transport::subscription packets = 0;
  remote::transport::subscription peers = 0;
  std::string channel;  ///< region_channel of the type
  /// Commands forwarded to other nodes' regions, answers owed to them.
  remote_commands forwarded{default_batch_bytes};
  message_token next_token = 1;
  std::unordered_map<message_token, pending> tokens;
  std::unordered_map<std::string, entity_slot> entities;
  /// The slot of each incarnation, by its actor id (for its down message).
  std::unordered_map<caf::actor_id, entity_slot*> by_actor;
  std::map<shard_id, shard_members> by_shard;
  /// Running entities, most recently used first (for max_active_entities).
  lru_list lru;
  std::size_t stopping_entities = 0;
  /// Entities marked stopping whose stop request waits for a free slot (id and
  /// the incarnation's actor id), and the stop requests in flight.
  std::deque<std::pair<std::string, caf::actor_id>> stop_queue;
  std::size_t stops_in_flight = 0;
  std::set<shard_id> stopping;
  std::shared_ptr<persistence::journal_service> journal;
  std::map<shard_id, remembered_shard> remembered;
  std::vector<caf::response_promise> leave_waiters;
};

/// The region actor, as its functions take it.
using region_self = caf::stateful_actor<std::shared_ptr<region_state>>*;

/// Completes `p` with `r` (a one-way command has no one to tell).
inline void complete(pending& p, expected<reply_box> r) {
  if (p.done)
    p.done(std::move(r));
}

// ---- region_actor.cpp

/// Carries out the effects region_core left in the state (messages to
/// coordinators, shards to start and stop, deliveries) until none are left.
void apply(region_self self);

// ---- region_delivery.cpp

/// A message for an entity: routed by region_core (delivered, buffered or
/// refused); the effects are applied.
void route(region_self self, pending p);
/// Delivers `p` where region_core routed it: the local shard or another region.
void deliver(region_self self, const routing& where, pending p);
/// Asks the local entity of `shard`; the token's entry is consumed.
void deliver_local(region_self self, shard_id shard, pending p);
/// Sends what remote_commands queued (flush_forwarded_atom).
void flush_forwarded(region_self self);
/// A batch of commands from another node's region.
void receive_commands(region_self self, const remote::packet& pk);
/// A batch of answers to commands this region forwarded.
void receive_answers(region_self self, const remote::packet& pk);
/// A peer's connection changed: what was forwarded to a lost peer fails.
void peer_changed(region_self self, const remote::peer_event& e);

// ---- region_entities.cpp

/// The entity's slot, its incarnation started if it has none.
expected<entity_slot*> slot_for(region_self self, const std::string& id, shard_id shard);
/// Stops an entity the way a hand-off needs (stop_and_hand_back).
void stop_entity(region_self self, const std::string& id, entity_slot& slot);
/// An entity's actor ended (the region's down handler).
void entity_down(region_self self, const caf::down_msg& dm);
/// Fails held messages past their deadline and passivates idle entities.
void expire_and_passivate(region_self self);

// ---- region_remembered.cpp

/// Records an entity's start (or passivation) in its shard's remembered set.
void remember(region_self self, shard_id s, const std::string& id, bool started);
/// The remembered entities of a starting shard were read.
void remembered_loaded_for(region_self self, remembered_loaded& m);
/// A write of a shard's remembered entities finished.
void remembered_written_for(region_self self, remembered_written& m);
/// Starts remembered entities of active shards, a few per tick.
void start_remembered(region_self self);

} // namespace troupe::sharding::detail
