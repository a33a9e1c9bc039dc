// The identity of an open SQLite journal (internal): which file the process opened
// (device and inode of its path) and the journal id stored in it.
//
// A journal deleted, renamed away or replaced under a running process keeps
// working from SQLite's point of view (it writes into the unlinked inode, or the
// new file), so commits would be acknowledged into a file that is no longer the
// journal. The write path calls check() inside every write transaction, after it
// took the write lock: one stat() of the path and one indexed read of the id,
// microseconds per group commit. Kept apart from the write path on purpose: a
// redesigned write path (or layout) calls the same check per batch.
//
// Thread-safety: immutable after capture(); check() may run concurrently on
// different connections.
#pragma once

#include "sqlite_db.hpp"

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>

namespace troupe::persistence::sqlite {

/// Reads the journal id of the file behind `c` (journal_meta 'journal_id');
/// nullopt when the row is missing or not an integer.
expected<std::optional<std::int64_t>> read_journal_id(connection& c);

class journal_identity {
public:
  /// Records the file `c.path()` names now and the id `c` reads from it. Call
  /// right after opening the primary connection.
  static expected<journal_identity> capture(connection& c);

  /// Ok while the path still names the captured file and `c` reads the captured
  /// id. Otherwise a journal_failure saying what changed and what to do, with
  /// `*lost` set: the condition is permanent. (A failure to read the id, e.g. an
  /// I/O error, is returned as is and leaves `*lost` false.)
  expected<void> check(connection& c, bool* lost) const;

  std::int64_t id() const noexcept { return id_; }

private:
  journal_identity(std::string path, dev_t dev, ino_t ino, std::int64_t id)
    : path_(std::move(path)), dev_(dev), ino_(ino), id_(id) {}

  error lost(std::string_view what) const;

  std::string path_;
  dev_t dev_;
  ino_t ino_;
  std::int64_t id_;
};

} // namespace troupe::persistence::sqlite
