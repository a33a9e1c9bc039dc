// sqlite_journal: the embedded default journal + snapshot store, one SQLite file.
//
// - WAL mode; `synchronous` FULL by default (see sync_mode for what each loses).
// - The schema is created and migrated through a `schema_version` table; a newer
//   schema than this build knows is refused, never guessed at.
// - One writer connection, used under a mutex (in practice only by the
//   journal_service's writer thread); a pool of reader connections, one per
//   concurrent reader, so reads never wait behind a write batch.
// - Several processes can share one file: writers take SQLite's write lock per
//   batch (BEGIN IMMEDIATE) and wait up to `busy_timeout` for it.
// - Offsets are assigned inside the write transaction from a high-water mark
//   stored in the file, under SQLite's exclusive write lock, so they are strictly
//   increasing in commit order and never reused, even after deletes.
// - Identity: the file carries a journal id, created with it. Every write
//   transaction first checks that the path still names the file opened (device and
//   inode) and that the file still holds that id. When it does not (the file was
//   deleted, renamed away or replaced under the process), the journal is *lost*:
//   that write and every later call fail with journal_failure naming the path, and
//   the on_lost handler runs once. Nothing is acknowledged into a file that no
//   longer is the journal.
// - Creation is explicit: a missing or empty file (0 bytes, or SQLite without
//   tables) is an error unless create_if_missing is set.
//
// Layout (docs/persistence-storage.md has the measurements behind it):
//   events(ordering INTEGER PRIMARY KEY = the offset, pid INTEGER, seq, manifest,
//          version, payload BLOB, tags, writer, timestamp_ms), append-only
//   event_keys(pid, seq, ordering), recent_keys(pid, seq, ordering) WITHOUT ROWID,
//          PK (pid, seq): every event's key is in exactly one of them (version 4)
//   persistence_ids(id INTEGER PRIMARY KEY, name UNIQUE, deleted_to)
//   tags(id, name UNIQUE), event_tags(tag, ordering) WITHOUT ROWID
//   snapshots(pid, seq, timestamp_ms, manifest, version, payload), PK (pid, seq)
//   projection_offsets(projection, key, offset, last_updated_ms)
//   journal_meta(key, value): highest_offset (the floor deletes leave), journal_id
//   fences(key TEXT PRIMARY KEY, epoch INTEGER) WITHOUT ROWID (schema version 3)
//
// Thread-safety: every member may be called concurrently.
#pragma once

#include "troupe/actors/config.hpp"
#include "troupe/persistence/journal.hpp"

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

namespace troupe::persistence {

/// SQLite's `synchronous` setting for the journal, by what each can lose.
enum class sync_mode {
  /// fsync of the WAL at every commit: an acknowledged write survives a process
  /// crash (kill -9) and an OS crash or power loss. The default.
  full,
  /// fsync only at checkpoints: survives a process crash; an OS crash or power
  /// loss can lose the last acknowledged commits (the database stays consistent).
  normal,
  /// no fsync at all: survives a process crash (the OS still has the data); an OS
  /// crash or power loss can lose acknowledged writes and may corrupt the file.
  off,
};

std::string_view to_string(sync_mode mode) noexcept;
/// Parses "full" | "normal" | "off" (any case).
expected<sync_mode> parse_sync_mode(std::string_view text);

struct sqlite_options {
  std::string path;
  sync_mode synchronous = sync_mode::full;
  /// How long a writer waits for another connection (or process) that holds the
  /// write lock before the write fails with journal_failure.
  duration busy_timeout = std::chrono::seconds{5};
  /// Create a new journal when the file does not exist or holds no database (0
  /// bytes, or SQLite without tables); the directory must exist. Off (the default):
  /// such a file is not_found naming the path, so a journal deleted or truncated
  /// by accident is never silently replaced by an empty one.
  bool create_if_missing = false;
  /// Caps the file at this many pages (PRAGMA max_page_count; 0: no cap). A write
  /// that would grow the file beyond it fails with journal_failure ("disk full"),
  /// storing nothing of its batch.
  std::int64_t max_page_count = 0;
  /// Open for reading only (tools): nothing is created, migrated or written; the
  /// write members fail with journal_rejected.
  bool read_only = false;
  /// With read_only: open through SQLite's immutable mode (no locks, no -shm file;
  /// the -wal file is not read). open() sets it when the file is on read-only
  /// storage (a read-only mount or directory, where SQLite cannot create the -shm
  /// file) and no -wal file with commits exists; options() then reports it. Only
  /// safe while no process writes the file.
  bool immutable = false;
};

/// The name SQLite opens (with SQLITE_OPEN_URI) for `path` in immutable mode:
/// "file:<path, escaped>?immutable=1".
std::string immutable_uri(const std::string& path);

/// The note a tool prints (on stderr, after its own prefix) when open() fell back
/// to immutable mode for `path` (options().immutable): what it did and what that
/// means. `troupe journal` and replay_main print the same one.
std::string immutable_mode_note(const std::string& path);

/// The schema version this build creates and reads.
inline constexpr int sqlite_schema_version = 4;

class sqlite_journal final : public journal_backend, public snapshot_backend {
public:
  /// Opens (and creates/migrates) the journal. Errors name the path: io_error for
  /// a missing directory, a read-only file or directory; not_found for a missing
  /// or empty file when create_if_missing is false; invalid_config for a file that
  /// is not a troupe journal; unsupported_version for a newer schema (or damaged
  /// schema metadata).
  static expected<std::shared_ptr<sqlite_journal>> open(sqlite_options opts);

  ~sqlite_journal() override;

  /// The options it was opened with (`immutable` set if open() fell back to it).
  const sqlite_options& options() const noexcept;

  /// The journal id stored in the file (0 when opened read-only on a file written
  /// before ids existed).
  std::int64_t journal_id() const noexcept;

  void on_lost(std::function<void(const error&)> handler) override;

  // -- journal_backend ---------------------------------------------------------------
  std::vector<write_result> write(std::span<const atomic_write> batch) override;
  expected<std::vector<event_record>> read_events(const std::string& persistence_id,
                                                  sequence_nr from, sequence_nr to,
                                                  std::size_t max_events) override;
  expected<void> read_events_into(const std::string& persistence_id, sequence_nr from,
                                  sequence_nr to, std::size_t max_events,
                                  std::vector<event_record>& out) override;
  expected<sequence_nr> highest_sequence_nr(const std::string& persistence_id) override;
  expected<void> delete_events_to(const std::string& persistence_id, sequence_nr to) override;
  expected<std::vector<event_record>> events_by_tag(const std::string& tag, offset_type after,
                                                    std::size_t max_events) override;
  expected<std::vector<std::string>> persistence_ids(const std::string& after,
                                                     std::size_t max) override;
  expected<offset_type> highest_offset() override;
  expected<void> advance_fence(const std::string& key, std::uint64_t epoch) override;
  expected<std::uint64_t> fence_epoch(const std::string& key) override;

  // -- snapshot_backend --------------------------------------------------------------
  expected<void> save(const snapshot_record& snapshot) override;
  expected<std::optional<snapshot_record>> load(const std::string& persistence_id,
                                                const snapshot_criteria& criteria) override;
  expected<void> delete_matching(const std::string& persistence_id,
                                 const snapshot_criteria& criteria) override;

  struct impl;

private:
  explicit sqlite_journal(std::unique_ptr<impl> p);
  std::unique_ptr<impl> impl_;
};

} // namespace troupe::persistence
