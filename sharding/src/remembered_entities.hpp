// Internal: remember-entities (sharding_settings::remember_entities) in the journal.
//
// Per shard, the ids of the entities that run in it are stored under the
// persistence id "troupe.sharding-entities|<type>|<shard>" as events of the form
// {"started": [ids], "stopped": [ids]}: an entity started by a command is added, a
// passivated one removed (a hand-off removes nothing: those entities are meant to
// run at the shard's next home). Every `compact_after` such changes the region
// writes the whole set instead ({"set": [ids]}) and then deletes the events before
// it, so what a shard's next home reads stays bounded by the set's size plus
// compact_after changes, however long the shard has run. Writes carry the shard's fence, so a stale owner
// cannot change the set. The region that starts the shard reads the set back and
// starts those entities without waiting for a command, a bounded number per tick.
//
// Thread-safety: load() calls the journal service, which answers on its threads;
// the answer reaches the region as a message.
#pragma once

#include "troupe/persistence/journal.hpp"
#include "troupe/persistence/journal_service.hpp"
#include "troupe/sharding/shard_id.hpp"

#include <caf/actor.hpp>
#include <caf/allowed_unsafe_message_type.hpp>

#include <set>
#include <string>
#include <vector>

namespace troupe::sharding::detail {

/// The persistence id of a shard's remembered entities.
std::string remembered_persistence_id(std::string_view entity_type, shard_id shard);

/// One change of a shard's set as a journal event (sequence nr `seq`).
persistence::event_record remembered_record(std::string persistence_id, persistence::sequence_nr seq,
                                            const std::vector<std::string>& started,
                                            const std::vector<std::string>& stopped);

/// Change events after which the whole set is written (and older events deleted).
inline constexpr std::size_t compact_after = 64;

/// The whole set as one event (a compaction: later folds start from it).
persistence::event_record remembered_set_record(std::string persistence_id,
                                                persistence::sequence_nr seq,
                                                const std::set<std::string>& ids);

struct remembered_fold {
  std::set<std::string> ids;
  std::size_t changes_since_set = 0;  ///< change events after the last whole set
};

/// The set the events describe; decode_failed naming the event if one is damaged.
expected<remembered_fold> fold_remembered(const std::vector<persistence::event_record>& events);

/// The answer to load(): the shard's events and the highest sequence nr.
struct remembered_loaded {
  shard_id shard = 0;
  std::uint64_t epoch = 0;
  expected<std::vector<persistence::event_record>> events;
  persistence::sequence_nr highest = 0;
};

/// The answer to a write of a shard's changes.
struct remembered_written {
  shard_id shard = 0;
  std::uint64_t epoch = 0;
  expected<void> result;
};

/// Reads the shard's events and sends `to` a remembered_loaded.
void load_remembered(persistence::journal_service& journal, std::string persistence_id,
                     shard_id shard, std::uint64_t epoch, caf::actor to);

} // namespace troupe::sharding::detail

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::sharding::detail::remembered_loaded)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::sharding::detail::remembered_written)
