// The journal and snapshot-store SPI: what a storage backend implements.
//
// A backend is synchronous and knows nothing about actors. troupe wraps it in a
// journal_service (journal_service.hpp) that runs writes on one dedicated writer
// thread, grouping the writes of many entities into one backend call (group
// commit), and reads on reader threads, and that calls back when work is done.
// The same conformance suite (tests/persistence/conformance_*.cpp) holds every
// backend to the contracts below: SQLite and the in-memory backend today, a
// PostgreSQL backend later.
//
// Terms:
//   persistence id  "<entity type>|<entity id>", e.g. "account|acct-42"
//   sequence nr     1, 2, 3, ... per persistence id, without gaps
//   offset          a global ordering number assigned by the journal at commit;
//                   strictly increasing in commit order across all ids (the
//                   basis of events_by_tag and projections)
//   writer          the incarnation id of the process/entity that wrote an event
//   fence           a key (e.g. a shard) and an epoch that only grows; a write may
//                   carry one, and the journal refuses it (errc::fenced) when the
//                   key's stored epoch is newer: a newer owner took over
#pragma once

#include "troupe/actors/codec.hpp"
#include "troupe/actors/expected.hpp"

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace troupe::persistence {

using sequence_nr = std::uint64_t;
using offset_type = std::uint64_t;

/// The largest sequence number; "to the end".
inline constexpr sequence_nr max_sequence_nr = ~sequence_nr{0} >> 1;

/// One stored event. In a write request, `persistence_id` may be left empty (it is
/// the atomic_write's id), `offset` is ignored, and a `timestamp_ms` of 0 means
/// "the journal sets the wall-clock time of the write".
struct event_record {
  std::string persistence_id;
  sequence_nr seq = 0;
  std::string manifest;          ///< codec manifest of the payload
  std::uint32_t version = 1;     ///< codec version of the payload
  bytes payload;                 ///< CBOR (codec_registry)
  std::vector<std::string> tags;
  std::string writer;            ///< writer incarnation id
  std::int64_t timestamp_ms = 0; ///< wall clock at write, ms since the epoch
  offset_type offset = 0;        ///< assigned at commit; 0 in a write request
};

/// The largest fence epoch (stored as a signed 64-bit integer by SQLite).
inline constexpr std::uint64_t max_fence_epoch = ~std::uint64_t{0} >> 1;

/// A writer's claim to write under `epoch` of `key` (a shard's allocation).
/// Fencing, not just detection: in the same transaction as the write the journal
/// compares `epoch` with the key's stored epoch. Stored > epoch: the write is
/// refused with errc::fenced and nothing of it is stored. Otherwise the stored
/// epoch becomes max(stored, epoch) and the events are stored. So once a new owner
/// wrote (or called advance_fence) under epoch N, no write under an older epoch
/// lands, whatever the old owner's clock, pauses or network say.
struct write_fence {
  std::string key;          ///< non-empty
  std::uint64_t epoch = 0;  ///< 0..max_fence_epoch
  friend bool operator==(const write_fence&, const write_fence&) = default;
};

/// 1..N events of one persistence id with consecutive sequence numbers, stored
/// all or nothing, optionally under a fence.
struct atomic_write {
  std::string persistence_id;
  std::vector<event_record> events;
  std::optional<write_fence> fence;
};

/// Checks what every backend requires of a write before storing anything: a
/// non-empty id, 1..N events whose ids are empty or equal to the write's id,
/// consecutive sequence numbers in 1..max_sequence_nr, a non-empty manifest, and
/// tags that are non-empty, unique per event and free of control characters.
/// A fence, if present, must have a non-empty key and an epoch <= max_fence_epoch.
/// Fails with journal_rejected naming the persistence id and sequence nr.
expected<void> validate_write(const atomic_write& w);

/// Checks a fence key and epoch (non-empty key, epoch <= max_fence_epoch); fails
/// with journal_rejected naming them.
expected<void> validate_fence(const std::string& key, std::uint64_t epoch);

/// The errc::fenced error every backend returns: names the journal (`where`),
/// what was refused (`what`: "the write of 'account|a1' seq 4..5", "advance_fence"),
/// the key and both epochs.
error fenced_error(std::string_view where, std::string_view what, const std::string& key,
                   std::uint64_t stored, std::uint64_t epoch);

struct snapshot_record;

/// Checks what every snapshot store requires of a save: a persistence id and a
/// seq >= 1. Fails with invalid_argument naming both.
expected<void> validate_snapshot(const snapshot_record& snapshot);

/// Milliseconds since the epoch, the journal's timestamp clock.
std::int64_t now_ms() noexcept;

/// Result of one atomic_write inside a batch.
///   ok                        stored durably
///   errc::sequence_conflict   (id, seq) already exists: nothing stored. The
///                             single-writer guarantee: the writer must stop.
///   errc::journal_rejected    refused before storing (invalid request, too
///                             large, ...): nothing stored
///   errc::fenced              the write's fence epoch is older than the key's
///                             stored epoch: nothing stored. The writer must stop
///                             (a newer owner took over).
///   errc::journal_failure     the store failed; the outcome is unknown
using write_result = expected<void>;

struct snapshot_record {
  std::string persistence_id;
  sequence_nr seq = 0;            ///< the state includes events up to this seq
  std::int64_t timestamp_ms = 0;
  std::string manifest;
  std::uint32_t version = 1;
  bytes payload;
};

/// Which snapshots a load or delete applies to (all bounds inclusive).
struct snapshot_criteria {
  sequence_nr max_seq = max_sequence_nr;
  std::int64_t max_timestamp_ms = INT64_MAX;
  sequence_nr min_seq = 0;
  std::int64_t min_timestamp_ms = 0;

  static snapshot_criteria latest() { return {}; }
  static snapshot_criteria none() { return {0, 0, 1, 1}; }  ///< matches nothing
};

/// Thread-safety of backends: write() and delete_events_to() are only called from
/// one thread at a time (the service's writer thread); every read member may be
/// called concurrently with writes and with other reads. (The SQLite and in-memory
/// backends also tolerate concurrent writers: they serialize them internally.)
class journal_backend {
public:
  virtual ~journal_backend() = default;

  /// Stores a batch of atomic writes, ideally in one durable transaction. Returns
  /// one result per write, in order. A conflict, rejection or fence refusal of one
  /// write must not affect the others. If the transaction as a whole fails, every
  /// write in it gets journal_failure. Assigns offsets in commit order. A fenced
  /// write's check and epoch update happen in the same transaction as its insert,
  /// in batch order (a later write of the batch sees an earlier one's epoch), and
  /// a write that is not stored (conflict, fenced) leaves the epoch unchanged.
  virtual std::vector<write_result> write(std::span<const atomic_write> batch) = 0;

  /// Raises the stored epoch of `key` to `epoch`, durably (a shard's new owner
  /// calls it before starting any entity, so every write of the old owner under an
  /// older epoch is refused from then on). Equal: a no-op success. Fails with
  /// fenced if the stored epoch is newer, journal_rejected for an invalid key or
  /// epoch (validate_fence). Called from the writer thread, like write().
  virtual expected<void> advance_fence(const std::string& key, std::uint64_t epoch) = 0;

  /// The stored epoch of `key`; 0 if it never had one.
  virtual expected<std::uint64_t> fence_epoch(const std::string& key) = 0;

  /// Events of one id with from <= seq <= to, ascending, at most max_events of
  /// them (callers page through long journals; memory is bounded by max_events).
  virtual expected<std::vector<event_record>> read_events(const std::string& persistence_id,
                                                          sequence_nr from, sequence_nr to,
                                                          std::size_t max_events) = 0;

  /// read_events into `out`, replacing what it held. A backend may refill the
  /// records already in `out` in place (reusing their strings' and payloads'
  /// capacity) instead of allocating new ones: the journal service hands it pages
  /// a replay gave back (journal_service::recycle). On failure `out` holds
  /// unspecified records. The default calls read_events.
  virtual expected<void> read_events_into(const std::string& persistence_id, sequence_nr from,
                                          sequence_nr to, std::size_t max_events,
                                          std::vector<event_record>& out);

  /// The highest sequence number ever written for the id (0 if none). Never
  /// decreases, also not after delete_events_to.
  virtual expected<sequence_nr> highest_sequence_nr(const std::string& persistence_id) = 0;

  /// Deletes events with seq <= to (inclusive) of one id.
  virtual expected<void> delete_events_to(const std::string& persistence_id, sequence_nr to) = 0;

  /// Events carrying `tag` with offset > after, ascending by offset, at most max.
  virtual expected<std::vector<event_record>> events_by_tag(const std::string& tag,
                                                            offset_type after,
                                                            std::size_t max_events) = 0;

  /// Persistence ids that have ever had events (also when all of them were deleted),
  /// ascending, starting after `after` ("" for the first page), at most max.
  virtual expected<std::vector<std::string>> persistence_ids(const std::string& after,
                                                             std::size_t max) = 0;

  /// The highest offset committed so far (0 if the journal is empty).
  virtual expected<offset_type> highest_offset() = 0;

  /// Registers who to tell when the backend finds it can no longer store anything
  /// safely until the process restarts (the SQLite backend: its file was deleted
  /// or replaced while open). The backend then fails every call with
  /// journal_failure naming the cause, and calls `handler` once, on the thread that
  /// found it (keep it short: log, mark the node unhealthy). install_journal
  /// registers one; an empty handler unregisters. Backends without such a
  /// condition ignore it.
  virtual void on_lost(std::function<void(const error&)> handler) { (void) handler; }
};

/// Thread-safety: every member may be called concurrently.
class snapshot_backend {
public:
  virtual ~snapshot_backend() = default;

  /// Saves (or replaces) the snapshot at (id, seq).
  virtual expected<void> save(const snapshot_record& snapshot) = 0;

  /// The snapshot with the highest seq matching the criteria, if any. A snapshot
  /// that cannot be read is an error, never "none".
  virtual expected<std::optional<snapshot_record>> load(const std::string& persistence_id,
                                                        const snapshot_criteria& criteria) = 0;

  /// Deletes every snapshot of the id matching the criteria.
  virtual expected<void> delete_matching(const std::string& persistence_id,
                                         const snapshot_criteria& criteria) = 0;
};

} // namespace troupe::persistence
