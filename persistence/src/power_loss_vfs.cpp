// The power-loss VFS (power_loss_vfs.hpp). Each tracked file keeps, since its last
// sync, an undo log (the bytes and size each write or truncation replaced) and the
// operations themselves. restore() applies the undo log backwards, which gives the
// file as of its last sync, then replays a seeded subset of the operations in order.
// One mutex guards the records and serializes tracked writes (SQLite's own locks
// serialize them anyway); reads only check the power flag.
#include "troupe/persistence/power_loss_vfs.hpp"

#include <fmt/core.h>
#include <sqlite3.h>

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <limits>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <vector>

namespace troupe::persistence {

namespace {

using byte_vector = std::vector<std::uint8_t>;

/// One write or truncation since the file's last sync.
struct file_op {
  bool truncation = false;
  sqlite3_int64 offset = 0;  ///< where the write starts, or the size truncated to
  byte_vector data;         ///< what the write wrote
};

/// What one file_op replaced: the file's size before it and its bytes from `offset`.
struct undo_entry {
  sqlite3_int64 offset = 0;
  sqlite3_int64 old_size = 0;
  byte_vector old;
};

struct file_record {
  int handles = 0;  ///< open connections' handles
  std::vector<undo_entry> undo;
  std::vector<file_op> ops;
};

constexpr int tracked_kinds = SQLITE_OPEN_MAIN_DB | SQLITE_OPEN_WAL | SQLITE_OPEN_MAIN_JOURNAL;

} // namespace

struct power_loss_vfs::state {
  options opts;
  sqlite3_vfs vfs{};
  sqlite3_vfs* base = nullptr;
  sqlite3_io_methods methods{};

  std::mutex mtx;
  std::map<std::string, file_record> files;  ///< by full path; nodes are stable
  std::atomic<bool> off{false};
  std::uint64_t ops = 0;
  std::uint64_t cut_at = 0;  ///< 0: no cut armed

  /// Counts one operation; true if it finds the power off. Requires mtx.
  bool power_fails() {
    if (off)
      return true;
    ++ops;
    if (cut_at != 0 && ops >= cut_at)
      off = true;
    return off;
  }

  expected<restore_report> restore(std::optional<std::uint64_t> seed);
};

namespace {

using state = power_loss_vfs::state;

/// Our sqlite3_file; the wrapped VFS's file object follows it in the same block.
struct shim_file {
  sqlite3_file base;
  state* st;
  file_record* rec;  ///< nullptr for untracked (temporary) files
};

constexpr std::size_t real_offset = (sizeof(shim_file) + 15) / 16 * 16;

sqlite3_file* real(sqlite3_file* f) {
  return reinterpret_cast<sqlite3_file*>(reinterpret_cast<char*>(f) + real_offset);
}
shim_file* shim(sqlite3_file* f) {
  return reinterpret_cast<shim_file*>(f);
}
state* owner(sqlite3_vfs* v) {
  return static_cast<state*>(v->pAppData);
}

/// Records an operation on a tracked file before it runs: the file's size and
/// the bytes in [offset, end) it replaces (those below the size). Requires mtx.
int record(sqlite3_file* f, file_record& rec, sqlite3_int64 offset, sqlite3_int64 end,
           file_op op) {
  undo_entry u{offset, 0, {}};
  if (auto rc = f->pMethods->xFileSize(f, &u.old_size); rc != SQLITE_OK)
    return rc;
  end = std::min(end, u.old_size);
  if (end > offset) {
    u.old.resize(static_cast<std::size_t>(end - offset));
    if (auto rc = f->pMethods->xRead(f, u.old.data(), static_cast<int>(u.old.size()), offset);
        rc != SQLITE_OK)
      return rc;
  }
  rec.undo.push_back(std::move(u));
  rec.ops.push_back(std::move(op));
  return SQLITE_OK;
}

// -- io methods ------------------------------------------------------------------------

int x_close(sqlite3_file* f) {
  auto s = shim(f);
  auto rc = real(f)->pMethods ? real(f)->pMethods->xClose(real(f)) : SQLITE_OK;
  if (s->rec) {
    std::lock_guard<std::mutex> guard{s->st->mtx};
    --s->rec->handles;
  }
  return rc;
}

int x_read(sqlite3_file* f, void* buf, int n, sqlite3_int64 offset) {
  auto s = shim(f);
  if (s->rec && s->st->off)
    return SQLITE_IOERR_READ;
  return real(f)->pMethods->xRead(real(f), buf, n, offset);
}

/// A write, truncation or sync: untracked files pass through; on a tracked one it
/// counts as an operation, fails with `ioerr` once the power is off, and otherwise
/// runs `fn(shim, real file)` under the mutex.
template <class Pass, class Fn>
int operation(sqlite3_file* f, int ioerr, Pass pass, Fn fn) {
  auto s = shim(f);
  if (!s->rec)
    return pass(real(f));
  std::lock_guard<std::mutex> guard{s->st->mtx};
  if (s->st->power_fails())
    return ioerr;
  return fn(*s, real(f));
}

int x_write(sqlite3_file* f, const void* buf, int n, sqlite3_int64 offset) {
  auto write = [&](sqlite3_file* r) { return r->pMethods->xWrite(r, buf, n, offset); };
  return operation(f, SQLITE_IOERR_WRITE, write, [&](shim_file& s, sqlite3_file* r) {
    auto bytes = static_cast<const std::uint8_t*>(buf);
    file_op op{false, offset, byte_vector(bytes, bytes + n)};
    auto rc = record(r, *s.rec, offset, offset + n, std::move(op));
    return rc == SQLITE_OK ? write(r) : rc;
  });
}

int x_truncate(sqlite3_file* f, sqlite3_int64 size) {
  auto truncate = [&](sqlite3_file* r) { return r->pMethods->xTruncate(r, size); };
  return operation(f, SQLITE_IOERR_TRUNCATE, truncate, [&](shim_file& s, sqlite3_file* r) {
    auto to_end = std::numeric_limits<sqlite3_int64>::max();
    auto rc = record(r, *s.rec, size, to_end, file_op{true, size, {}});
    return rc == SQLITE_OK ? truncate(r) : rc;
  });
}

int x_sync(sqlite3_file* f, int flags) {
  auto sync = [&](sqlite3_file* r) { return r->pMethods->xSync(r, flags); };
  return operation(f, SQLITE_IOERR_FSYNC, sync, [&](shim_file& s, sqlite3_file* r) {
    if (s.st->opts.real_sync)
      if (auto rc = sync(r); rc != SQLITE_OK)
        return rc;
    s.rec->undo.clear();
    s.rec->ops.clear();
    return SQLITE_OK;
  });
}

int x_file_size(sqlite3_file* f, sqlite3_int64* size) {
  return real(f)->pMethods->xFileSize(real(f), size);
}
int x_lock(sqlite3_file* f, int level) {
  return real(f)->pMethods->xLock(real(f), level);
}
int x_unlock(sqlite3_file* f, int level) {
  return real(f)->pMethods->xUnlock(real(f), level);
}
int x_check_reserved_lock(sqlite3_file* f, int* out) {
  return real(f)->pMethods->xCheckReservedLock(real(f), out);
}
int x_file_control(sqlite3_file* f, int op, void* arg) {
  return real(f)->pMethods->xFileControl(real(f), op, arg);
}
int x_sector_size(sqlite3_file* f) {
  return real(f)->pMethods->xSectorSize(real(f));
}
int x_device_characteristics(sqlite3_file* f) {
  return real(f)->pMethods->xDeviceCharacteristics(real(f));
}
int x_shm_map(sqlite3_file* f, int page, int page_size, int extend, void volatile** p) {
  return real(f)->pMethods->xShmMap(real(f), page, page_size, extend, p);
}
int x_shm_lock(sqlite3_file* f, int offset, int n, int flags) {
  return real(f)->pMethods->xShmLock(real(f), offset, n, flags);
}
void x_shm_barrier(sqlite3_file* f) {
  real(f)->pMethods->xShmBarrier(real(f));
}
int x_shm_unmap(sqlite3_file* f, int delete_flag) {
  return real(f)->pMethods->xShmUnmap(real(f), delete_flag);
}

// -- vfs methods -----------------------------------------------------------------------

int x_open(sqlite3_vfs* v, sqlite3_filename name, sqlite3_file* f, int flags, int* out_flags) {
  auto st = owner(v);
  auto s = shim(f);
  s->st = st;
  s->rec = nullptr;
  s->base.pMethods = nullptr;
  real(f)->pMethods = nullptr;
  auto rc = st->base->xOpen(st->base, name, real(f), flags, out_flags);
  // SQLite closes a file whose xOpen failed only if pMethods is set.
  if (real(f)->pMethods)
    s->base.pMethods = &st->methods;
  if (rc == SQLITE_OK && name && (flags & tracked_kinds) != 0) {
    std::lock_guard<std::mutex> guard{st->mtx};
    s->rec = &st->files[name];
    ++s->rec->handles;
  }
  return rc;
}

int x_delete(sqlite3_vfs* v, const char* name, int sync_dir) {
  auto st = owner(v);
  std::lock_guard<std::mutex> guard{st->mtx};
  auto i = st->files.find(name);
  if (i != st->files.end() ? st->power_fails() : st->off.load())
    return SQLITE_IOERR_DELETE;
  auto rc = st->base->xDelete(st->base, name, sync_dir);
  if (rc == SQLITE_OK && i != st->files.end()) {
    if (i->second.handles == 0) {
      st->files.erase(i);
    } else {
      i->second.undo.clear();
      i->second.ops.clear();
    }
  }
  return rc;
}

int x_access(sqlite3_vfs* v, const char* name, int flags, int* out) {
  return owner(v)->base->xAccess(owner(v)->base, name, flags, out);
}
int x_full_pathname(sqlite3_vfs* v, const char* name, int n, char* out) {
  return owner(v)->base->xFullPathname(owner(v)->base, name, n, out);
}
void* x_dl_open(sqlite3_vfs* v, const char* name) {
  return owner(v)->base->xDlOpen(owner(v)->base, name);
}
void x_dl_error(sqlite3_vfs* v, int n, char* out) {
  owner(v)->base->xDlError(owner(v)->base, n, out);
}
void (*x_dl_sym(sqlite3_vfs* v, void* handle, const char* symbol))(void) {
  return owner(v)->base->xDlSym(owner(v)->base, handle, symbol);
}
void x_dl_close(sqlite3_vfs* v, void* handle) {
  owner(v)->base->xDlClose(owner(v)->base, handle);
}
int x_randomness(sqlite3_vfs* v, int n, char* out) {
  return owner(v)->base->xRandomness(owner(v)->base, n, out);
}
int x_sleep(sqlite3_vfs* v, int microseconds) {
  return owner(v)->base->xSleep(owner(v)->base, microseconds);
}
int x_current_time(sqlite3_vfs* v, double* out) {
  return owner(v)->base->xCurrentTime(owner(v)->base, out);
}
int x_get_last_error(sqlite3_vfs* v, int n, char* out) {
  return owner(v)->base->xGetLastError(owner(v)->base, n, out);
}
int x_current_time_int64(sqlite3_vfs* v, sqlite3_int64* out) {
  return owner(v)->base->xCurrentTimeInt64(owner(v)->base, out);
}
int x_set_system_call(sqlite3_vfs* v, const char* name, sqlite3_syscall_ptr p) {
  return owner(v)->base->xSetSystemCall(owner(v)->base, name, p);
}
sqlite3_syscall_ptr x_get_system_call(sqlite3_vfs* v, const char* name) {
  return owner(v)->base->xGetSystemCall(owner(v)->base, name);
}
const char* x_next_system_call(sqlite3_vfs* v, const char* name) {
  return owner(v)->base->xNextSystemCall(owner(v)->base, name);
}

void fill_methods(state& st) {
  auto& m = st.methods;
  // Version 2: no xFetch, so SQLite never reads through a memory map we cannot see.
  m.iVersion = 2;
  m.xClose = x_close;
  m.xRead = x_read;
  m.xWrite = x_write;
  m.xTruncate = x_truncate;
  m.xSync = x_sync;
  m.xFileSize = x_file_size;
  m.xLock = x_lock;
  m.xUnlock = x_unlock;
  m.xCheckReservedLock = x_check_reserved_lock;
  m.xFileControl = x_file_control;
  m.xSectorSize = x_sector_size;
  m.xDeviceCharacteristics = x_device_characteristics;
  m.xShmMap = x_shm_map;
  m.xShmLock = x_shm_lock;
  m.xShmBarrier = x_shm_barrier;
  m.xShmUnmap = x_shm_unmap;

  auto& v = st.vfs;
  v.iVersion = std::min(st.base->iVersion, 3);
  v.szOsFile = static_cast<int>(real_offset) + st.base->szOsFile;
  v.mxPathname = st.base->mxPathname;
  v.zName = st.opts.name.c_str();
  v.pAppData = &st;
  v.xOpen = x_open;
  v.xDelete = x_delete;
  v.xAccess = x_access;
  v.xFullPathname = x_full_pathname;
  v.xDlOpen = x_dl_open;
  v.xDlError = x_dl_error;
  v.xDlSym = x_dl_sym;
  v.xDlClose = x_dl_close;
  v.xRandomness = x_randomness;
  v.xSleep = x_sleep;
  v.xCurrentTime = x_current_time;
  v.xGetLastError = x_get_last_error;
  if (v.iVersion >= 2)
    v.xCurrentTimeInt64 = x_current_time_int64;
  if (v.iVersion >= 3) {
    v.xSetSystemCall = x_set_system_call;
    v.xGetSystemCall = x_get_system_call;
    v.xNextSystemCall = x_next_system_call;
  }
}

// -- restore ---------------------------------------------------------------------------

/// A file rewritten with POSIX calls; errors name the path.
class raw_file {
public:
  explicit raw_file(const std::string& path)
    : path_(path), fd_(::open(path.c_str(), O_RDWR)), open_errno_(fd_ < 0 ? errno : 0) {}
  ~raw_file() {
    if (fd_ >= 0)
      ::close(fd_);
  }
  raw_file(const raw_file&) = delete;
  raw_file& operator=(const raw_file&) = delete;

  /// The file was deleted after its last operation (nothing to rewrite).
  bool missing() const { return open_errno_ == ENOENT; }
  expected<void> opened() const {
    if (fd_ < 0)
      return fail("cannot open", open_errno_);
    return {};
  }
  expected<void> write(std::int64_t offset, const std::uint8_t* p, std::size_t n) {
    while (n > 0) {
      auto w = ::pwrite(fd_, p, n, offset);
      if (w < 0 && errno == EINTR)
        continue;
      if (w <= 0)
        return fail("cannot write", errno);
      p += w;
      n -= static_cast<std::size_t>(w);
      offset += w;
    }
    return {};
  }
  expected<void> resize(std::int64_t size) {
    if (::ftruncate(fd_, size) != 0)
      return fail("cannot truncate", errno);
    return {};
  }

private:
  error fail(const char* what, int err) const {
    return error{errc::io_error, fmt::format("power_loss_vfs: {} '{}' to simulate power loss: {}",
                                             what, path_, std::strerror(err))};
  }

  std::string path_;
  int fd_;
  int open_errno_;
};

/// Rewinds `f` to its last sync, then replays what `keep` lets through.
template <class Keep>
expected<void> rewrite(raw_file& f, const file_record& rec, std::size_t sector, Keep keep,
                       power_loss_vfs::restore_report& report) {
  for (auto u = rec.undo.rbegin(); u != rec.undo.rend(); ++u) {
    if (auto r = f.resize(u->old_size); !r)
      return r;
    if (auto r = f.write(u->offset, u->old.data(), u->old.size()); !r)
      return r;
  }
  for (auto& op : rec.ops) {
    if (op.truncation) {
      bool kept = keep(2) == 1;
      ++(kept ? report.truncations_kept : report.truncations_undone);
      if (kept)
        if (auto r = f.resize(op.offset); !r)
          return r;
      continue;
    }
    auto mode = keep(3);  // 0 lost, 1 kept, 2 torn at sector boundaries
    std::size_t kept_pieces = 0, pieces = 0;
    auto end = op.offset + static_cast<std::int64_t>(op.data.size());
    for (auto at = op.offset; at < end;) {
      auto next = std::min(end, (at / static_cast<std::int64_t>(sector) + 1)
                                  * static_cast<std::int64_t>(sector));
      ++pieces;
      if (mode == 1 || (mode == 2 && keep(2) == 1)) {
        ++kept_pieces;
        auto p = op.data.data() + (at - op.offset);
        if (auto r = f.write(at, p, static_cast<std::size_t>(next - at)); !r)
          return r;
      }
      at = next;
    }
    if (kept_pieces == 0)
      ++report.writes_lost;
    else if (kept_pieces == pieces)
      ++report.writes_kept;
    else
      ++report.writes_torn;
  }
  return {};
}

} // namespace

expected<power_loss_vfs::restore_report>
power_loss_vfs::state::restore(std::optional<std::uint64_t> seed) {
  std::lock_guard<std::mutex> guard{mtx};
  for (auto& [path, rec] : files)
    if (rec.handles > 0)
      return error{errc::invalid_argument,
                   fmt::format("power_loss_vfs: '{}' is still open; close every connection "
                               "(stop the node) before restoring",
                               path)};
  off = true;
  std::mt19937_64 rng{seed.value_or(0)};
  auto keep = [&](std::uint64_t choices) -> std::uint64_t {
    return seed ? rng() % choices : 0;
  };
  restore_report report;
  for (auto& [path, rec] : files) {
    if (rec.ops.empty())
      continue;
    ++report.files;
    raw_file f{path};
    if (f.missing())
      continue;
    if (auto r = f.opened(); !r)
      return std::move(r).error();
    if (auto r = rewrite(f, rec, opts.sector_size, keep, report); !r)
      return std::move(r).error();
  }
  files.clear();
  cut_at = 0;
  off = false;
  return report;
}

expected<std::unique_ptr<power_loss_vfs>> power_loss_vfs::install(options opts) {
  if (opts.sector_size == 0 || (opts.sector_size & (opts.sector_size - 1)) != 0)
    return error{errc::invalid_argument,
                 fmt::format("power_loss_vfs: sector_size must be a power of two (got {})",
                             opts.sector_size)};
  if (sqlite3_vfs_find(opts.name.c_str()))
    return error{errc::invalid_argument,
                 fmt::format("power_loss_vfs: an SQLite VFS named '{}' is already registered",
                             opts.name)};
  auto st = std::make_unique<state>();
  st->opts = std::move(opts);
  st->base = sqlite3_vfs_find(nullptr);
  if (!st->base)
    return error{errc::io_error, "power_loss_vfs: SQLite has no default VFS to wrap"};
  fill_methods(*st);
  if (auto rc = sqlite3_vfs_register(&st->vfs, st->opts.make_default ? 1 : 0); rc != SQLITE_OK)
    return error{errc::io_error, fmt::format("power_loss_vfs: cannot register '{}': {}",
                                             st->opts.name, sqlite3_errstr(rc))};
  return std::unique_ptr<power_loss_vfs>{new power_loss_vfs{std::move(st)}};
}

expected<std::unique_ptr<power_loss_vfs>> power_loss_vfs::install() {
  return install(options{});
}

power_loss_vfs::power_loss_vfs(std::unique_ptr<state> s) : state_(std::move(s)) {
}

power_loss_vfs::~power_loss_vfs() {
  sqlite3_vfs_unregister(&state_->vfs);
}

std::uint64_t power_loss_vfs::operations() const {
  std::lock_guard<std::mutex> guard{state_->mtx};
  return state_->ops;
}

void power_loss_vfs::cut_after(std::uint64_t n) {
  std::lock_guard<std::mutex> guard{state_->mtx};
  state_->cut_at = state_->ops + std::max<std::uint64_t>(n, 1);
}

void power_loss_vfs::cut_now() {
  std::lock_guard<std::mutex> guard{state_->mtx};
  state_->off = true;
}

bool power_loss_vfs::power_off() const {
  return state_->off;
}

expected<power_loss_vfs::restore_report> power_loss_vfs::restore(std::uint64_t seed) {
  return state_->restore(seed);
}

expected<power_loss_vfs::restore_report> power_loss_vfs::restore_losing_unsynced() {
  return state_->restore(std::nullopt);
}

} // namespace troupe::persistence
