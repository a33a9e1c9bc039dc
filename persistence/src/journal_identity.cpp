#include "journal_identity.hpp"

#include <fcntl.h>
#include <fmt/core.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <cerrno>
#include <cstring>

namespace troupe::persistence::sqlite {

namespace {

constexpr const char* sql_journal_id = "SELECT value FROM journal_meta WHERE key = 'journal_id'";

/// The device and inode `path` names (errno set on failure).
///
/// Asks for the inode only. On Linux 6.13 and later (multigrain timestamps), a
/// stat() that returns a file's ctime/mtime flags the inode so that its next
/// write stores a fine-grained timestamp, which dirties the inode: the next
/// fdatasync then also commits the file system's journal. Stat'ing the -wal file
/// in every write transaction made each durable one-event commit about 60 us
/// slower (1-row commits: 130 -> 190 us at the median on ext4; statx without
/// STATX_CTIME/STATX_MTIME: 131 us). stat() is the fallback where statx is
/// unavailable (kernels before 4.11, some seccomp filters).
bool identity_of(const std::string& path, dev_t& dev, ino_t& ino) {
  struct statx sx{};
  auto rc = ::statx(AT_FDCWD, path.c_str(), 0, STATX_INO, &sx);
  if (rc == 0 && (sx.stx_mask & STATX_INO)) {
    dev = makedev(sx.stx_dev_major, sx.stx_dev_minor);
    ino = static_cast<ino_t>(sx.stx_ino);
    return true;
  }
  if (rc != 0 && errno != ENOSYS && errno != EPERM && errno != EINVAL)
    return false;  // e.g. ENOENT: the caller reads errno
  // No statx, or a file system that did not report the inode.
  struct stat st{};
  if (::stat(path.c_str(), &st) != 0)
    return false;
  dev = st.st_dev;
  ino = st.st_ino;
  return true;
}

} // namespace

expected<std::optional<std::int64_t>> read_journal_id(connection& c) {
  auto s = c.prepare(sql_journal_id);
  if (!s)
    return std::move(s).error();
  use q{**s};
  auto rc = q->step();
  if (rc == SQLITE_ROW && sqlite3_column_type(q->handle(), 0) == SQLITE_INTEGER)
    return std::optional<std::int64_t>{q->int64(0)};
  if (rc == SQLITE_ROW || rc == SQLITE_DONE)
    return std::optional<std::int64_t>{};
  return c.fail_from(rc, "cannot read the journal id");
}

expected<journal_identity> journal_identity::capture(connection& c) {
  std::vector<file> files;
  auto add = [&](std::string path, const char* role, bool holds_commits) -> expected<void> {
    dev_t dev{};
    ino_t ino{};
    if (!identity_of(path, dev, ino))
      return error{errc::io_error,
                   role ? fmt::format("journal '{}': cannot stat its {} '{}' right after "
                                      "opening it: {}",
                                      c.path(), role, path, std::strerror(errno))
                        : fmt::format("journal '{}': cannot stat the file: {}", c.path(),
                                      std::strerror(errno))};
    files.push_back(file{std::move(path), role, holds_commits, dev, ino});
    return {};
  };
  if (auto ok = add(c.path(), nullptr, true); !ok)
    return std::move(ok).error();
  // Reading the id also opens the -wal and -shm files in WAL mode (if not yet open).
  auto id = read_journal_id(c);
  if (!id)
    return std::move(id).error();
  if (!*id)
    return error{errc::invalid_config,
                 fmt::format("journal '{}': its journal id (journal_meta 'journal_id') is "
                             "missing or not an integer: the file was damaged",
                             c.path())};
  auto mode = c.query_text("PRAGMA journal_mode");
  if (!mode)
    return std::move(mode).error();
  if (*mode == "wal") {
    if (auto ok = add(c.path() + "-wal", "WAL file", true); !ok)
      return std::move(ok).error();
    if (auto ok = add(c.path() + "-shm", "WAL index", false); !ok)
      return std::move(ok).error();
  }
  return journal_identity{std::move(files), **id};
}

error journal_identity::lost(std::string_view what, const file& f) const {
  auto advice = f.holds_commits
                  ? "Keep the node running and copy the open file back "
                    "(docs/persistence-storage.md, 'A journal lost while open'), then restart it"
                  : "It holds no events (SQLite rebuilds it from the -wal file): restart the "
                    "node (docs/persistence-storage.md, 'A journal lost while open')";
  return error{errc::journal_failure,
               fmt::format("journal '{}' is lost: {}. The node stopped writing to it; nothing "
                           "more is acknowledged. {}",
                           files_.front().path, what, advice)};
}

expected<void> journal_identity::check_file(const file& f, bool* lost_now) const {
  dev_t dev{};
  ino_t ino{};
  if (!identity_of(f.path, dev, ino)) {
    if (errno == ENOENT || errno == ENOTDIR)
      return lost(f.role ? fmt::format("its {} '{}' was deleted or renamed while open", f.role,
                                       f.path)
                         : std::string{"the file was deleted or renamed while open"},
                  f);
    *lost_now = false;  // e.g. EIO or EACCES: not known to be gone
    return error{errc::journal_failure,
                 f.role ? fmt::format("journal '{}': cannot check its {} '{}': {}",
                                      files_.front().path, f.role, f.path, std::strerror(errno))
                        : fmt::format("journal '{}': cannot check the file: {}", f.path,
                                      std::strerror(errno))};
  }
  if (dev != f.dev || ino != f.ino)
    return lost(f.role ? fmt::format("its {} '{}' now names another file (it was replaced "
                                     "while open)",
                                     f.role, f.path)
                       : std::string{"the path now names another file (it was replaced while "
                                     "open)"},
                f);
  return {};
}

expected<void> journal_identity::check(connection& c, bool* lost_now) const {
  *lost_now = true;
  for (auto& f : files_)
    if (auto ok = check_file(f, lost_now); !ok)
      return ok;
  auto id = read_journal_id(c);
  if (!id) {
    *lost_now = false;
    return std::move(id).error();
  }
  auto& main = files_.front();
  if (!*id)
    return lost("its journal id is missing (the file was overwritten or damaged while open)", main);
  if (**id != id_)
    return lost(fmt::format("the file now holds journal id {}, not {} (it was overwritten "
                            "while open)",
                            **id, id_),
                main);
  *lost_now = false;
  return {};
}

} // namespace troupe::persistence::sqlite
