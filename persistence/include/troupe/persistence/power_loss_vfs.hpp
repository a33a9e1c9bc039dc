// power_loss_vfs: fault injection for durability. An SQLite VFS that wraps the
// default one and simulates losing power, for tests of what a journal promises
// after an OS crash or power loss (a kill -9 cannot show it: the kernel keeps
// every write the process made).
//
// - While the power is on, every call reaches the real file, so SQLite and the
//   process see what they would see on a real machine (the page cache serves
//   unsynced data). For the main database, WAL and rollback-journal files the VFS
//   records every write, truncation and sync, and counts them as operations.
// - The power goes off at a chosen operation (cut_after) or at once (cut_now): that
//   operation and every later read, write, truncation, sync and delete fail with an
//   SQLite I/O error, so nothing can be acknowledged as durable after the cut.
// - Once every connection to the files is closed (stop the node), restore() is the
//   reboot: each file is rewound to its content at its last sync, then each write
//   since that sync is lost, kept, or torn (kept for some of its sectors only), and
//   each truncation since that sync is kept or undone, in order, each choice drawn
//   from the given seed; the same seed and the same operations give the same files.
//   restore_losing_unsynced() loses every unsynced write (the worst case). Then the
//   power is on again.
//
// The model: a disk that persists whole sectors of a write (`sector_size`) and
// nothing outside the range written (SQLite's "powersafe overwrite", which its unix
// VFS assumes), in any order until a sync, and everything before a completed sync.
// File creation and deletion are durable at once (SQLite syncs what a delete
// depends on first). The WAL index (-shm) is not tracked: SQLite rebuilds it when
// the first connection opens the database after the reboot. Temporary files are
// passed through.
//
// The VFS is process-wide (SQLite's VFS registry is): install() registers it, as
// SQLite's default by default, so every connection opened afterwards without an
// explicit VFS uses it (the journal's, the `troupe journal` tool's in-process
// functions). Destroy it only after every connection using it is closed.
//
// Thread-safety: every member may be called from any thread; SQLite calls the VFS
// from the threads of all its connections.
#pragma once

#include "troupe/actors/expected.hpp"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace troupe::persistence {

class power_loss_vfs {
public:
  struct options {
    /// The name the VFS is registered under (unique in the process).
    std::string name = "troupe-power-loss";
    /// Make it SQLite's default VFS (connections opened without a VFS use it).
    bool make_default = true;
    /// Granularity of a torn write, in bytes (a power of two).
    std::size_t sector_size = 512;
    /// Also fsync the real file at each sync. Off by default: durability is what
    /// the VFS simulates, and skipping the real fsync keeps many runs fast.
    bool real_sync = false;
  };

  /// What a restore did to the files.
  struct restore_report {
    std::size_t files = 0;             ///< files with operations since their last sync
    std::size_t writes_lost = 0;       ///< unsynced writes dropped entirely
    std::size_t writes_kept = 0;       ///< unsynced writes that reached the disk
    std::size_t writes_torn = 0;       ///< unsynced writes kept for some sectors only
    std::size_t truncations_kept = 0;
    std::size_t truncations_undone = 0;
  };

  /// Registers the VFS around the current default VFS. Fails with
  /// invalid_argument when a VFS of that name exists or the sector size is not a
  /// power of two, with io_error when SQLite has no default VFS.
  static expected<std::unique_ptr<power_loss_vfs>> install(options opts);
  static expected<std::unique_ptr<power_loss_vfs>> install();

  /// Unregisters the VFS (the previous default becomes the default again).
  ~power_loss_vfs();
  power_loss_vfs(const power_loss_vfs&) = delete;
  power_loss_vfs& operator=(const power_loss_vfs&) = delete;

  /// Writes, truncations, syncs and deletes of tracked files so far.
  std::uint64_t operations() const;

  /// The `n`-th operation from now (1: the next one) finds the power off.
  void cut_after(std::uint64_t n);
  /// Turns the power off now.
  void cut_now();
  /// True once a cut happened (until the next restore).
  bool power_off() const;

  /// Simulates the reboot after the power loss (turning the power off first if a
  /// cut did not): rewrites every tracked file as described above, with the
  /// choices drawn from `seed`, then turns the power on. Fails with
  /// invalid_argument naming a file that a connection still has open, and with
  /// io_error naming the file it could not rewrite.
  expected<restore_report> restore(std::uint64_t seed);
  /// Like restore(), but every write since a file's last sync is lost.
  expected<restore_report> restore_losing_unsynced();

  struct state;

private:
  explicit power_loss_vfs(std::unique_ptr<state> s);
  std::unique_ptr<state> state_;
};

} // namespace troupe::persistence
