// Internal: the SQLite journal's state (sqlite_journal::impl), its SQL statements and
// its row helpers. Shared by the three files of the backend:
//   sqlite_journal.cpp        opening, the lost-file check, connections and id caches,
//                             the read path
//   sqlite_journal_write.cpp  the write path: group-commit batches, fences, offsets,
//                             deletes
//   sqlite_snapshots.cpp      the snapshot store
#pragma once

#include "troupe/persistence/sqlite_journal.hpp"

#include "journal_identity.hpp"
#include "lost_state.hpp"
#include "sqlite_db.hpp"

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <vector>

namespace troupe::persistence::sqlite {

// -- statements (inline: one address in every file; the connection caches by it) --------

inline constexpr const char* sql_begin = "BEGIN IMMEDIATE";
inline constexpr const char* sql_commit = "COMMIT";
/// The highest offset ever used: the newest event's, or higher where deletes took
/// the newest events away (journal_meta 'highest_offset' keeps that floor; a write
/// does not update it, so a commit dirties one page fewer).
inline constexpr const char* sql_get_offset =
  "SELECT max((SELECT value FROM journal_meta WHERE key = 'highest_offset'), "
  "coalesce((SELECT max(ordering) FROM events), 0))";
/// Before a delete: the floor rises to the newest event's offset, so deleting the
/// newest events never lets a later write reuse their offsets.
inline constexpr const char* sql_keep_offset =
  "UPDATE journal_meta SET value = max(value, coalesce((SELECT max(ordering) FROM events), 0)) "
  "WHERE key = 'highest_offset'";
inline constexpr const char* sql_add_id =
  "INSERT INTO persistence_ids(name) VALUES(?1) ON CONFLICT(name) DO NOTHING";
inline constexpr const char* sql_find_id =
  "SELECT id, deleted_to FROM persistence_ids WHERE name = ?1";
inline constexpr const char* sql_add_tag =
  "INSERT INTO tags(name) VALUES(?1) ON CONFLICT(name) DO NOTHING";
inline constexpr const char* sql_find_tag = "SELECT id FROM tags WHERE name = ?1";
/// The INSERT of `rows` events rows, 9 parameters each (ordering, pid, seq, manifest,
/// version, payload, tags, writer, timestamp_ms); `rows` is 1 or
/// impl::events_per_insert (impl::insert_events). One stable string per size, as
/// connection::prepare requires.
const char* sql_insert_events(std::size_t rows);
/// The keys of the events at offsets ?1 < ordering <= ?2, stored by this transaction
/// (one statement per batch instead of one insert per event: see store_queued).
inline constexpr const char* sql_insert_keys =
  "INSERT INTO recent_keys(pid, seq, ordering) "
  "SELECT pid, seq, ordering FROM events WHERE ordering > ?1 AND ordering <= ?2";
// The lowest seq of pid ?1 in ?2..?3 stored in either key table (NULL: none).
inline constexpr const char* sql_taken_seq =
  "SELECT (SELECT min(seq) FROM event_keys WHERE pid = ?1 AND seq >= ?2 AND seq <= ?3), "
  "(SELECT min(seq) FROM recent_keys WHERE pid = ?1 AND seq >= ?2 AND seq <= ?3)";
// The highest seq of pid ?1 in either key table (NULL: none).
inline constexpr const char* sql_highest_key =
  "SELECT (SELECT max(seq) FROM event_keys WHERE pid = ?1), "
  "(SELECT max(seq) FROM recent_keys WHERE pid = ?1)";
inline constexpr const char* sql_insert_event_tag =
  "INSERT INTO event_tags(tag, ordering) VALUES(?1, ?2)";
inline constexpr const char* sql_get_fence = "SELECT epoch FROM fences WHERE key = ?1";
inline constexpr const char* sql_raise_fence =
  "INSERT INTO fences(key, epoch) VALUES(?1, ?2) "
  "ON CONFLICT(key) DO UPDATE SET epoch = excluded.epoch WHERE excluded.epoch > fences.epoch";

// Event columns in the order row_to_event reads them.
#define TROUPE_EVENT_COLUMNS \
  "e.seq, e.manifest, e.version, e.payload, e.tags, e.writer, e.timestamp_ms, e.ordering"

inline constexpr const char* sql_events_by_tag =
  "SELECT " TROUPE_EVENT_COLUMNS ", p.name FROM event_tags t "
  "JOIN events e ON e.ordering = t.ordering JOIN persistence_ids p ON p.id = e.pid "
  "WHERE t.tag = (SELECT id FROM tags WHERE name = ?1) AND t.ordering > ?2 "
  "ORDER BY t.ordering LIMIT ?3";

/// The reads that find an id's events by key. A writable open always has the
/// current layout (it migrates the file); a read-only open of a version 3 file
/// (the tools, replay) reads it with the version 3 statements.
struct key_reads {
  /// TROUPE_EVENT_COLUMNS of ?1's events with seq in ?2..?3, by seq, at most ?4.
  const char* read_events;
  /// ?1's highest seq: the highest stored or deleted_to, whichever is higher.
  const char* highest_seq;
  /// At most ?2 ids after ?1, by name, that have events or deleted some.
  const char* persistence_ids;
};

// One key table's part of read_events: its keys of the id, joined to their events
// by rowid (a key whose event belongs to another id is skipped, as a gap).
#define TROUPE_KEYED_EVENTS(keys)                                                   \
  "SELECT " TROUPE_EVENT_COLUMNS ", k.seq FROM " keys " k JOIN events e "          \
  "ON e.ordering = k.ordering AND e.pid = k.pid "                                   \
  "WHERE k.pid = (SELECT id FROM persistence_ids WHERE name = ?1) "                 \
  "AND k.seq >= ?2 AND k.seq <= ?3"

/// Version 4: both key tables. SQLite runs the compound as a merge of two
/// co-routines, each walking its table's primary key in seq order, and stops at
/// the LIMIT: a page is streamed, never materialized or sorted.
inline constexpr key_reads v4_reads{
  .read_events = TROUPE_KEYED_EVENTS("event_keys") " UNION ALL " TROUPE_KEYED_EVENTS(
    "recent_keys") " ORDER BY 9 LIMIT ?4",
  .highest_seq =
    "SELECT max(coalesce((SELECT max(seq) FROM event_keys WHERE pid = p.id), 0), "
    "coalesce((SELECT max(seq) FROM recent_keys WHERE pid = p.id), 0), p.deleted_to) "
    "FROM persistence_ids p WHERE p.name = ?1",
  .persistence_ids =
    "SELECT p.name FROM persistence_ids p WHERE p.name > ?1 AND (p.deleted_to > 0 "
    "OR EXISTS (SELECT 1 FROM event_keys k WHERE k.pid = p.id) "
    "OR EXISTS (SELECT 1 FROM recent_keys k WHERE k.pid = p.id)) "
    "ORDER BY p.name LIMIT ?2",
};

/// Versions 1 to 3: the unique index events_pid_seq.
inline constexpr key_reads v3_reads{
  .read_events = "SELECT " TROUPE_EVENT_COLUMNS " FROM events e "
                 "WHERE e.pid = (SELECT id FROM persistence_ids WHERE name = ?1) "
                 "AND e.seq >= ?2 AND e.seq <= ?3 ORDER BY e.seq LIMIT ?4",
  .highest_seq =
    "SELECT max(coalesce((SELECT max(seq) FROM events WHERE pid = p.id), 0), p.deleted_to) "
    "FROM persistence_ids p WHERE p.name = ?1",
  .persistence_ids = "SELECT p.name FROM persistence_ids p WHERE p.name > ?1 "
                     "AND (p.deleted_to > 0 OR EXISTS (SELECT 1 FROM events e WHERE e.pid = p.id)) "
                     "ORDER BY p.name LIMIT ?2",
};

// Deleting an id's events up to ?2: found through their keys (events has no
// (pid, seq) index), deleted before the keys.
#define TROUPE_KEYS_TO(column)                                                       \
  "SELECT " column " FROM event_keys WHERE pid = ?1 AND seq <= ?2 UNION ALL SELECT " \
  column " FROM recent_keys WHERE pid = ?1 AND seq <= ?2"
inline constexpr const char* sql_tagged_to_delete =
  "SELECT ordering, tags FROM events WHERE ordering IN (" TROUPE_KEYS_TO("ordering") ") "
  "AND tags IS NOT NULL";
inline constexpr const char* sql_delete_event_tag =
  "DELETE FROM event_tags WHERE tag = ?1 AND ordering = ?2";
inline constexpr const char* sql_delete_events =
  "DELETE FROM events WHERE ordering IN (" TROUPE_KEYS_TO("ordering") ")";
inline constexpr const char* sql_delete_merged_keys =
  "DELETE FROM event_keys WHERE pid = ?1 AND seq <= ?2";
inline constexpr const char* sql_delete_recent_keys =
  "DELETE FROM recent_keys WHERE pid = ?1 AND seq <= ?2";
inline constexpr const char* sql_set_deleted_to =
  "UPDATE persistence_ids SET deleted_to = ?2 WHERE id = ?1";
inline constexpr const char* sql_save_snapshot =
  "INSERT OR REPLACE INTO snapshots(pid, seq, timestamp_ms, manifest, version, payload) "
  "VALUES(?1, ?2, ?3, ?4, ?5, ?6)";
inline constexpr const char* sql_load_snapshot =
  "SELECT seq, timestamp_ms, manifest, version, payload FROM snapshots "
  "WHERE pid = (SELECT id FROM persistence_ids WHERE name = ?1) "
  "AND seq >= ?2 AND seq <= ?3 AND timestamp_ms >= ?4 AND timestamp_ms <= ?5 "
  "ORDER BY seq DESC LIMIT 1";
inline constexpr const char* sql_delete_snapshots =
  "DELETE FROM snapshots WHERE pid = (SELECT id FROM persistence_ids WHERE name = ?1) "
  "AND seq >= ?2 AND seq <= ?3 AND timestamp_ms >= ?4 AND timestamp_ms <= ?5";

/// A sequence nr or offset as SQLite stores it (capped at max_sequence_nr).
inline std::int64_t to_db(std::uint64_t x) {
  return static_cast<std::int64_t>(std::min<std::uint64_t>(x, max_sequence_nr));
}

/// A LIMIT value.
inline std::int64_t limit_of(std::size_t n) {
  return static_cast<std::int64_t>(std::min<std::size_t>(n, INT64_MAX));
}

/// Joins tags with the separator into `out`; empty when there are none.
void join_tags(const std::vector<std::string>& tags, std::string& out);

/// Appends the tags joined in `text` to `out`.
void split_tags(std::string_view text, std::vector<std::string>& out);

/// An integer column in lo..hi, or nullopt (text, NULL, a blob or out of range).
std::optional<std::int64_t> int_in(const statement& s, int column, std::int64_t lo,
                                   std::int64_t hi);

/// "'<pid>' seq <s> (offset <o>)" for messages about a damaged row.
std::string row_name(const statement& s, std::string_view pid, int seq_col, int offset_col);

/// The error for a row troupe never writes, naming the journal and the row.
error damaged_row(const std::string& path, std::string what);

/// A fence row whose epoch (column 0) is not an integer in 0..max_fence_epoch.
error damaged_fence(const std::string& path, const std::string& key, const statement& s);

/// Reads TROUPE_EVENT_COLUMNS starting at column 0 into `e` (whose persistence_id
/// is set). A value troupe never writes (a sequence nr or version that is not an
/// integer in range) is an error naming the row, never a silently cast number.
expected<void> row_to_event(const statement& s, event_record& e, const std::string& path);

} // namespace troupe::persistence::sqlite

namespace troupe::persistence {

namespace sq = sqlite;

/// Thread-safety: the writer connection and its caches are guarded by writer_mtx
/// (held for a whole write, delete, fence or snapshot save); the reader pool by
/// pool_mtx; the lost state is its own (lost_state.hpp). Read members take a pooled reader
/// connection and may run concurrently with each other and with a write.
struct sqlite_journal::impl {
  impl(sqlite_options o, std::unique_ptr<sq::connection> w,
       std::optional<sq::journal_identity> id, const sq::key_reads* r)
    : opts(std::move(o)), identity(std::move(id)), reads(r), writer(std::move(w)) {
  }

  sqlite_options opts;
  /// The file opened and its journal id; none when opened read-only.
  const std::optional<sq::journal_identity> identity;
  /// The key reads of the file's layout (v4_reads unless read-only on an older file).
  const sq::key_reads* const reads;

  // -- lost: the file is no longer the journal (journal_identity.hpp) -------------------
  lost_state loss;
  error mark_lost(error e) { return loss.mark(std::move(e)); }
  expected<void> check_not_lost() { return loss.check(); }

  /// The identity check on a connection (a no-op read-only); a permanent mismatch
  /// marks the journal lost.
  expected<void> check_identity(sq::connection& c);

  // -- the writer connection and its caches, guarded by writer_mtx ----------------------
  struct id_info {
    std::int64_t id;
    sequence_nr deleted_to;
    /// Every stored key of this id has a seq <= highest_key, as long as
    /// keys_seen == key_view (see there). A write above it needs no lookup of its
    /// seqs; one that rolls back leaves it higher than needed, never too low.
    sequence_nr highest_key = 0;
    std::uint64_t keys_seen = 0;
  };
  std::mutex writer_mtx;
  std::unique_ptr<sq::connection> writer;
  // Name -> row id. Ids never change once created, so entries stay valid; entries
  // made inside a transaction that rolls back are removed again (`provisional`).
  // deleted_to is what this process last saw (see delete_events_to).
  std::unordered_map<std::string, id_info> ids;
  std::unordered_map<std::string, std::int64_t> tag_ids;
  std::vector<std::string> provisional_ids;
  std::vector<std::string> provisional_tags;
  /// The batch's events not inserted yet (queue_event, insert_events).
  struct queued_event {
    const std::string* name;
    const event_record* e;
    std::int64_t pid;
    offset_type offset;
    std::int64_t timestamp_ms;  // the event's, else the batch's
    std::string tags;           // joined; empty: none
  };
  static constexpr std::size_t events_per_insert = 32;
  std::vector<queued_event> queued_events;  // reused
  struct planned_write {
    id_info* id;        // into `ids` (node-based: stable while the entry lives)
    std::size_t index;  // in the batch
  };
  std::vector<planned_write> plan;  // reused: write_batch's storage order
  /// The step of the round the next key merge takes (sqlite_merge.cpp).
  std::int64_t merge_next = 0;
  /// The highest offset after this connection's last commit of events. Keys are
  /// only ever added together with events, which raise the highest offset: while
  /// a write transaction finds it unchanged, no other connection (process) has
  /// stored keys since, and the ids' highest_key entries still hold. Otherwise
  /// key_view moves on, which makes every entry unknown.
  std::optional<offset_type> committed_offset;
  std::uint64_t key_view = 1;
  /// The open batch's events at offsets keys_done < ordering <= keys_to have no
  /// key in recent_keys yet (store_queued stores them).
  offset_type keys_done = 0;
  offset_type keys_to = 0;

  // -- reader connections ---------------------------------------------------------------
  std::mutex pool_mtx;
  std::vector<std::unique_ptr<sq::connection>> idle_readers;

  /// A reader connection, returned to the pool when the lease ends.
  struct reader_lease {
    reader_lease(impl* o, std::unique_ptr<sq::connection> c) : owner(o), conn(std::move(c)) {}
    reader_lease(reader_lease&&) = default;
    reader_lease& operator=(reader_lease&&) = delete;
    impl* owner;
    std::unique_ptr<sq::connection> conn;
    ~reader_lease() {
      if (conn) {
        std::lock_guard<std::mutex> guard{owner->pool_mtx};
        owner->idle_readers.push_back(std::move(conn));
      }
    }
    sq::connection* operator->() { return conn.get(); }
  };

  expected<reader_lease> reader();

  // -- write path -----------------------------------------------------------------------

  error read_only_error() const;

  /// Starts a write transaction (taking the write lock) on the file that is still
  /// the journal: every write, delete and snapshot save begins here.
  expected<void> begin_write();

  /// The frame of every change to the file: under writer_mtx, begin_write, then
  /// `body` (which ends with the commit); if either fails, the transaction is
  /// rolled back and the cache entries it made are forgotten, else they are kept.
  template <class F>
  expected<void> in_write_transaction(F body) {
    std::lock_guard<std::mutex> guard{writer_mtx};
    auto ok = begin_write();
    if (ok)
      ok = body();
    if (!ok) {
      writer->rollback_if_open();
      forget_provisional();
      return ok;
    }
    keep_provisional();
    return ok;
  }

  /// Runs a cached statement without results.
  expected<void> run(const char* sql);

  /// The row id of a persistence id, creating it (provisionally) if needed.
  expected<id_info*> resolve_id(const std::string& name, bool create);

  expected<std::int64_t> resolve_tag(const std::string& name);

  /// Forgets cache entries made by a transaction that did not commit.
  void forget_provisional();

  /// Keeps them: their transaction committed.
  void keep_provisional();

  /// Queues one event for insert_events at `offset` and inserts its tag rows. Its
  /// seq is known to be free (store checked it), so any failure dooms the whole
  /// transaction. `name` and `e` must live until insert_events (the batch does).
  expected<void> queue_event(std::int64_t pid, const std::string& name, const event_record& e,
                             offset_type offset, std::int64_t ts);

  /// Inserts the queued events, events_per_insert rows per statement (one cursor
  /// for many rows: each row's seek continues from the previous, and the
  /// per-statement work is paid once per chunk), the rest one by one.
  expected<void> insert_events();

  /// The fence check's read, inside the open write transaction (of a write or of
  /// advance_fence): refuses `f` with fenced when the key's stored epoch is newer
  /// (`what` names the refused operation); else sets `raise` when the stored
  /// epoch is older than f.epoch (or none is stored), for raise_fence. Returns the
  /// refusal as the inner result, or an error (the outer expected) that dooms the
  /// transaction.
  template <class What>
  expected<write_result> check_fence(const write_fence& f, What what, bool& raise);

  /// Stores f.epoch as the key's epoch (check_fence said it is higher).
  expected<void> raise_fence(const write_fence& f);

  /// The lowest seq of `id` in first..last already taken (stored in either key
  /// table), 0 when none is.
  expected<sequence_nr> taken_seq(std::int64_t id, sequence_nr first, sequence_nr last);

  /// Whether a key of `id` in first..last is stored; the id's highest_key answers
  /// without a lookup when the write is above it. Returns the lowest taken seq, 0
  /// when none is.
  expected<sequence_nr> check_seqs(id_info& id, sequence_nr first, sequence_nr last);

  /// Stores one validated atomic write of the persistence id `id` inside the open
  /// transaction. Every check (fence, deleted or stored seqs) runs before anything
  /// is stored, so a refused write changes nothing and needs no savepoint. Returns
  /// the write's own result, or an error (as the outer expected) that dooms the
  /// batch.
  expected<write_result> store(const atomic_write& w, id_info* id, offset_type& offset,
                               std::int64_t ts);

  /// Inserts the queued events (insert_events), then copies the keys of the
  /// batch's events stored since the last call from their rows into recent_keys in
  /// one INSERT ... SELECT. Runs before anything reads recent_keys in the
  /// transaction (a range lookup, the merge) and before the commit.
  expected<void> store_queued();

  /// One step of the incremental key merge (sqlite_merge.cpp), inside the open
  /// write transaction of a batch that stored events.
  expected<void> merge_keys();

  /// The highest offset used, read inside the open write transaction.
  expected<offset_type> read_offset();

  /// The order in which write_batch stores the batch's valid writes: by persistence
  /// id row, then batch position. recent_keys is then updated in key order, each
  /// insert next to the previous one in the b-tree (as a writer that goes round
  /// its entities would), instead of at random. Offsets follow this order; the batch
  /// commits as a whole, so no reader can tell, and one id's writes keep their order.
  /// A batch with a fenced write keeps its submission order: a fence key spans many
  /// ids (a shard), and which of two writes under one key is refused depends on
  /// their order.
  expected<void> plan_batch(std::span<const atomic_write> batch,
                            const std::vector<write_result>& results);

  /// The batch inside the open transaction, committed; an error means nothing was
  /// stored.
  expected<void> write_batch(std::span<const atomic_write> batch,
                             std::vector<write_result>& results);

  /// journal_backend::write: validates each write, then stores the valid ones in one
  /// transaction (all fail with journal_failure if it does not commit).
  std::vector<write_result> write(std::span<const atomic_write> batch);

  /// journal_backend::delete_events_to, in its own transaction.
  expected<void> delete_events_to(const std::string& name, sequence_nr to);

  /// delete_events_to inside the open transaction, committed.
  expected<void> delete_in_transaction(const std::string& name, sequence_nr to);

  expected<void> advance_fence(const std::string& key, std::uint64_t epoch);

  // -- read path ------------------------------------------------------------------------

  /// The highest sequence nr of `name` as seen on connection `c` (0 if unknown).
  expected<sequence_nr> highest_on(sq::connection& c, const std::string& name);

  /// Runs a cached query on a reader connection; `bind` binds the parameters and
  /// `row` consumes each result row.
  template <class Bind, class Row>
  expected<void> query(const char* sql, std::string_view what, Bind bind, Row row) {
    auto c = reader();
    if (!c)
      return std::move(c).error();
    auto s = (*c)->prepare(sql);
    if (!s)
      return std::move(s).error();
    sq::use q{**s};
    bind(*q);
    int rc;
    while ((rc = q->step()) == SQLITE_ROW) {
      if constexpr (std::is_void_v<decltype(row(*q))>) {
        row(*q);
      } else {
        if (auto ok = row(*q); !ok)
          return ok;
      }
    }
    if (rc != SQLITE_DONE)
      return (*c)->fail_from(rc, what);
    return {};
  }
};

} // namespace troupe::persistence
