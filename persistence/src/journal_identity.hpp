// The identity of an open SQLite journal (internal): which files the process opened
// (device and inode of the journal's path, and in WAL mode of its -wal and -shm
// files) and the journal id stored in it.
//
// A journal deleted, renamed away or replaced under a running process keeps
// working from SQLite's point of view (it writes into the unlinked inode, or the
// new file), so commits would be acknowledged into a file that is no longer the
// journal. The same holds for the -wal file alone: every commit since the last
// checkpoint lives only there, so with `rm j.db-wal` the node went on acknowledging
// into an unlinked file that a crash then threw away. And for the -shm file (the
// WAL index, which also holds the WAL's locks): a process that opens the journal
// after it was deleted creates a new one, so its locks and index are not this
// process's, and both write the -wal at the same offsets; acknowledged commits of
// one are overwritten by the other's. (With a single process nothing is lost then:
// the frames are in the -wal and the index is rebuilt at the next open; the check
// cannot know that no other process will open the file, so it stops either way.)
//
// SQLite creates the -wal and -shm files when the first connection opens the
// journal in WAL mode and deletes them only when the last one closes (after a
// checkpoint); checkpoints reuse or truncate the -wal in place. So while this
// process has the journal open, the paths name the files it opened, and anything
// else means someone else deleted or replaced them. In another journal mode
// (rollback: DELETE, TRUNCATE, ...; troupe always opens for writing in WAL mode,
// sqlite_schema.cpp) there is no -wal or -shm file to check, and the rollback
// journal comes and goes with every transaction: only the main file is checked.
//
// The write path calls check() inside every write transaction, after it took the
// write lock: one statx() per file (three in WAL mode; the inode only, see
// identity_of in the .cpp for why not stat()) and one indexed read of the
// id, a few microseconds per group commit. Kept apart from the write path on
// purpose: a redesigned write path (or layout) calls the same check per batch.
//
// Thread-safety: immutable after capture(); check() may run concurrently on
// different connections.
#pragma once

#include "sqlite_db.hpp"

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace troupe::persistence::sqlite {

/// Reads the journal id of the file behind `c` (journal_meta 'journal_id');
/// nullopt when the row is missing or not an integer.
expected<std::optional<std::int64_t>> read_journal_id(connection& c);

class journal_identity {
public:
  /// Records the files `c.path()` names now (with the -wal and -shm files when `c`
  /// is in WAL mode) and the id `c` reads from it. Call right after opening the
  /// primary connection (it has the -wal and -shm files open by then).
  static expected<journal_identity> capture(connection& c);

  /// Ok while the paths still name the captured files and `c` reads the captured
  /// id. Otherwise a journal_failure saying which file changed and what to do, with
  /// `*lost` set: the condition is permanent. (A failure to read the id, e.g. an
  /// I/O error, is returned as is and leaves `*lost` false.)
  expected<void> check(connection& c, bool* lost) const;

  std::int64_t id() const noexcept { return id_; }

private:
  /// One file of the journal: its path and the file it named at capture().
  struct file {
    std::string path;
    const char* role;  ///< nullptr for the journal file, else "WAL file", "WAL index"
    bool holds_commits;  ///< false for the WAL index: SQLite rebuilds it from the -wal
    dev_t dev;
    ino_t ino;
  };

  journal_identity(std::vector<file> files, std::int64_t id)
    : files_(std::move(files)), id_(id) {}

  error lost(std::string_view what, const file& f) const;
  /// Ok while `f.path` names the captured file; else the loss (or a failed stat).
  expected<void> check_file(const file& f, bool* lost_now) const;

  std::vector<file> files_;  ///< the journal file first
  std::int64_t id_;
};

} // namespace troupe::persistence::sqlite
