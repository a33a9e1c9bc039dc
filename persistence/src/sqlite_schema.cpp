#include "sqlite_schema.hpp"

#include <fmt/core.h>

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <climits>
#include <cstring>
#include <filesystem>

namespace troupe::persistence {

std::string_view to_string(sync_mode mode) noexcept {
  switch (mode) {
    case sync_mode::full: return "full";
    case sync_mode::normal: return "normal";
    case sync_mode::off: return "off";
  }
  return "?";
}

expected<sync_mode> parse_sync_mode(std::string_view text) {
  std::string lower{text};
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (lower == "full")
    return sync_mode::full;
  if (lower == "normal")
    return sync_mode::normal;
  if (lower == "off")
    return sync_mode::off;
  return error{errc::invalid_config,
               fmt::format("journal: synchronous must be full, normal or off (got '{}')", text)};
}

std::string immutable_uri(const std::string& path) {
  // RFC 3986 as SQLite reads it: '%', '?' and '#' end or escape the path.
  std::string uri = "file:";
  for (char c : path) {
    if (c == '%' || c == '?' || c == '#')
      uri += fmt::format("%{:02X}", static_cast<unsigned char>(c));
    else
      uri += c;
  }
  return uri + "?immutable=1";
}

std::string immutable_mode_note(const std::string& path) {
  return fmt::format("'{}' is on read-only storage; opened it with SQLite's immutable mode (no "
                     "locks; it has no -wal file, so nothing is missed, but do not run this "
                     "while a process writes the file)",
                     path);
}

} // namespace troupe::persistence

namespace troupe::persistence::sqlite {

namespace {

namespace fs = std::filesystem;

// Migration i (1-based) lifts the schema from version i - 1 to i. Never edit a
// released step: add a new one.
//
// Why this layout: see docs/persistence-storage.md. In short, a rowid table whose
// rowid is the global offset makes appends cheap (always at the end of the
// table's b-tree). Since version 4 the (pid, seq) keys are kept out of it: a
// write adds its keys to the small recent_keys table, and each write transaction
// moves the keys of one range of pids into event_keys in one sorted pass
// (sqlite_merge.cpp); both give conflict detection and paged replay.
constexpr const char* migrations[] = {
  // 1: the initial schema.
  R"sql(
CREATE TABLE journal_meta(
  key TEXT PRIMARY KEY,
  value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO journal_meta(key, value) VALUES('highest_offset', 0);
CREATE TABLE persistence_ids(
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  deleted_to INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE events(
  ordering INTEGER PRIMARY KEY,
  pid INTEGER NOT NULL,
  seq INTEGER NOT NULL,
  manifest TEXT NOT NULL,
  version INTEGER NOT NULL,
  payload BLOB NOT NULL,
  tags TEXT,
  writer TEXT NOT NULL,
  timestamp_ms INTEGER NOT NULL
);
CREATE UNIQUE INDEX events_pid_seq ON events(pid, seq);
CREATE TABLE tags(
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL UNIQUE
);
CREATE TABLE event_tags(
  tag INTEGER NOT NULL,
  ordering INTEGER NOT NULL,
  PRIMARY KEY(tag, ordering)
) WITHOUT ROWID;
CREATE TABLE snapshots(
  pid INTEGER NOT NULL,
  seq INTEGER NOT NULL,
  timestamp_ms INTEGER NOT NULL,
  manifest TEXT NOT NULL,
  version INTEGER NOT NULL,
  payload BLOB NOT NULL,
  PRIMARY KEY(pid, seq)
);
CREATE TABLE projection_offsets(
  projection TEXT NOT NULL,
  key TEXT NOT NULL,
  "offset" INTEGER NOT NULL,
  last_updated_ms INTEGER NOT NULL,
  PRIMARY KEY(projection, key)
) WITHOUT ROWID;
)sql",
  // 2: the journal id, created once with the file (journal_identity.hpp): a
  // random positive 63-bit number. A persistence id row is never deleted,
  // renumbered or renamed: its events would be orphaned and the entity would
  // silently recover without them (troupe itself never does either).
  R"sql(
INSERT INTO journal_meta(key, value) VALUES('journal_id', (random() & 9223372036854775807) | 1);
CREATE TRIGGER persistence_ids_kept BEFORE DELETE ON persistence_ids
BEGIN
  SELECT RAISE(ABORT, 'troupe journal: a persistence id row is never deleted: its events would be orphaned and the entity would recover without them');
END;
CREATE TRIGGER persistence_ids_fixed BEFORE UPDATE OF id, name ON persistence_ids
BEGIN
  SELECT RAISE(ABORT, 'troupe journal: a persistence id row is never renumbered or renamed: its events would be orphaned');
END;
)sql",
  // 3: write fences (journal.hpp, write_fence): the newest epoch per key (a
  // shard). A write under an older epoch is refused in its own transaction.
  R"sql(
CREATE TABLE fences(
  key TEXT PRIMARY KEY,
  epoch INTEGER NOT NULL
) WITHOUT ROWID;
)sql",
  // 4: the keys leave the events table (an append-only heap since): event_keys
  // holds the merged (pid, seq) -> ordering keys, recent_keys those written since
  // their range of pids was last merged (sqlite_merge.cpp). journal_meta's
  // highest_offset is from now on the floor that deletes leave (the highest offset
  // is the greater of it and the newest event's); a version 3 file's value is
  // already that. Its keys all go to event_keys, in key order, in the migration's
  // one transaction.
  R"sql(
CREATE TABLE event_keys(
  pid INTEGER NOT NULL,
  seq INTEGER NOT NULL,
  ordering INTEGER NOT NULL,
  PRIMARY KEY(pid, seq)
) WITHOUT ROWID;
CREATE TABLE recent_keys(
  pid INTEGER NOT NULL,
  seq INTEGER NOT NULL,
  ordering INTEGER NOT NULL,
  PRIMARY KEY(pid, seq)
) WITHOUT ROWID;
INSERT INTO event_keys(pid, seq, ordering) SELECT pid, seq, ordering FROM events ORDER BY pid, seq;
DROP INDEX events_pid_seq;
)sql",
};
static_assert(std::size(migrations) == sqlite_schema_version);

/// The version number stored in schema_version, 0 for a database without tables.
/// Damaged metadata (no row, several rows, text, out of range) is an error naming
/// what was found, never an exception.
expected<int> current_version(connection& c) {
  auto has_table =
    c.query_text("SELECT count(*) FROM sqlite_master WHERE type='table' AND name='schema_version'");
  if (!has_table)
    return std::move(has_table).error();
  if (*has_table == "0") {
    auto tables = c.query_text("SELECT count(*) FROM sqlite_master");
    if (!tables)
      return std::move(tables).error();
    if (*tables != "0")
      return error{errc::invalid_config,
                   fmt::format("journal '{}': the file is a SQLite database but not a troupe "
                               "journal (it has no schema_version table)",
                               c.path())};
    return 0;
  }
  auto rows = c.query_text("SELECT count(*) FROM schema_version");
  if (!rows)
    return std::move(rows).error();
  auto v = c.query_text("SELECT quote(version) FROM schema_version");
  if (!v)
    return std::move(v).error();
  int version = 0;
  auto [end, ec] = std::from_chars(v->data(), v->data() + v->size(), version);
  if (*rows != "1" || ec != std::errc{} || end != v->data() + v->size() || version < 1)
    return error{errc::invalid_config,
                 fmt::format("journal '{}': its schema_version table is damaged ({} row(s), "
                             "version {}): expected one row with a version number 1..{}",
                             c.path(), *rows, v->empty() ? "none" : *v, INT_MAX)};
  return version;
}

error no_journal(const sqlite_options& opts, std::string_view what) {
  return error{errc::not_found,
               fmt::format("journal '{}': {}, so there is no journal to open. If this is a new "
                           "deployment, create it once with persistence.journal.create-if-missing"
                           "=true (or `troupe journal create --db FILE`); if a journal was here, "
                           "restore it: a new empty journal would silently lose every "
                           "acknowledged event",
                           opts.path, what)};
}

/// Creates the schema, or lifts it to version `target` (sqlite_schema_version but
/// in tests), in one transaction.
expected<void> migrate(connection& c, const sqlite_options& opts,
                       int target = sqlite_schema_version) {
  if (auto ok = c.exec("BEGIN IMMEDIATE"); !ok)
    return ok;
  auto fail = [&](error e) -> expected<void> {
    c.rollback_if_open();
    return e;
  };
  auto version = current_version(c);
  if (!version)
    return fail(std::move(version).error());
  if (*version > sqlite_schema_version)
    return fail(error{errc::unsupported_version,
                      fmt::format("journal '{}' has schema version {}; this troupe knows up to {} "
                                  "(a newer troupe created or migrated the file: open it with "
                                  "that version; this one never guesses at a newer layout)",
                                  c.path(), *version, sqlite_schema_version)});
  if (*version == 0 && !opts.create_if_missing)
    return fail(no_journal(opts, "the file holds no database (it is empty)"));
  if (*version == 0)
    if (auto ok = c.exec("CREATE TABLE schema_version(version INTEGER NOT NULL)"); !ok)
      return fail(std::move(ok).error());
  for (auto v = *version + 1; v <= target; ++v) {
    if (auto ok = c.exec(migrations[v - 1]); !ok)
      return fail(std::move(ok).error());
  }
  if (*version < target) {
    auto sql = fmt::format("DELETE FROM schema_version; INSERT INTO schema_version VALUES({})",
                           target);
    if (sqlite3_exec(c.handle(), sql.c_str(), nullptr, nullptr, nullptr) != SQLITE_OK)
      return fail(c.fail(errc::journal_failure, "cannot record the schema version"));
  }
  if (auto ok = c.exec("COMMIT"); !ok)
    return fail(std::move(ok).error());
  return {};
}

error read_only_file(const sqlite_options& opts, std::string_view why) {
  return error{errc::io_error,
               fmt::format("journal '{}': the file is read-only ({}); troupe must be able to "
                           "write it (check its permissions and the file system)",
                           opts.path, why)};
}

/// What the file system says before SQLite opens anything, so that errors name the
/// real cause ("unable to open database file" names none).
expected<void> check_path(const sqlite_options& opts) {
  if (opts.path.empty())
    return error{errc::invalid_config, "journal: no path given (persistence.journal.path)"};
  std::error_code ec;
  auto p = fs::path{opts.path};
  auto dir = p.has_parent_path() ? p.parent_path() : fs::path{"."};
  if (!fs::is_directory(dir, ec))
    return error{errc::io_error, fmt::format("journal '{}': the directory '{}' does not exist",
                                             opts.path, dir.string())};
  if (fs::is_directory(p, ec))
    return error{errc::io_error,
                 fmt::format("journal '{}': the path is a directory, not a file", opts.path)};
  bool exists = fs::exists(p, ec);
  if (!exists && opts.read_only)
    return error{errc::not_found, fmt::format("journal '{}': the file does not exist", opts.path)};
  if (!exists && !opts.create_if_missing)
    return no_journal(opts, "the file does not exist");
  // (A 0-byte file with a -wal file is left to the schema check, which reads both.)
  if (exists && !opts.read_only && !opts.create_if_missing && fs::file_size(p, ec) == 0 && !ec
      && !fs::exists(opts.path + "-wal", ec))
    return no_journal(opts, "the file is empty (0 bytes)");
  if (opts.read_only)
    return {};
  if (exists && ::access(opts.path.c_str(), W_OK) != 0)
    return read_only_file(opts, errno == EROFS ? "read-only file system" : std::strerror(errno));
  if (::access(dir.c_str(), W_OK) != 0)
    return error{errc::io_error,
                 fmt::format("journal '{}': the directory '{}' is not writable ({}); SQLite's "
                             "WAL mode creates '{}-wal' and '{}-shm' next to the journal",
                             opts.path, dir.string(),
                             errno == EROFS ? "read-only file system" : std::strerror(errno),
                             p.filename().string(), p.filename().string())};
  return {};
}

int open_flags(const sqlite_options& opts) {
  if (opts.read_only)
    return SQLITE_OPEN_READONLY;
  return SQLITE_OPEN_READWRITE | (opts.create_if_missing ? SQLITE_OPEN_CREATE : 0);
}

/// A read-only open checks that the file is a troupe journal of this version.
expected<void> check_readable(connection& db, const sqlite_options& opts) {
  auto version = current_version(db);
  if (!version)
    return std::move(version).error();
  if (*version == 0)
    return error{errc::invalid_config,
                 fmt::format("journal '{}': the file is empty, not a troupe journal", opts.path)};
  if (*version > sqlite_schema_version)
    return error{errc::unsupported_version,
                 fmt::format("journal '{}' has schema version {}; this troupe reads up to {}",
                             opts.path, *version, sqlite_schema_version)};
  return {};
}

bool cannot_open(const error& e) {
  return e.code() == errc::io_error;
}

/// Read-only storage: SQLite cannot create the -shm file that WAL mode reads
/// through, and fails with "unable to open database file". Immutable mode needs no
/// -shm but does not read the -wal file either, so it is only used when there is
/// no -wal file with commits in it.
expected<std::unique_ptr<connection>> open_read_only(sqlite_options& opts) {
  auto c = open_secondary(opts);
  if (c) {
    auto ok = check_readable(**c, opts);
    if (ok)
      return c;
    if (!cannot_open(ok.error()) || opts.immutable)
      return std::move(ok).error();
  } else if (!cannot_open(c.error()) || opts.immutable) {
    return c;
  }
  std::error_code ec;
  auto wal = fs::file_size(opts.path + "-wal", ec);
  if (!ec && wal > 0)
    return error{errc::io_error,
                 fmt::format("journal '{}': cannot open it read-only: its storage is read-only "
                             "(SQLite cannot create '{}-shm'), and its -wal file holds {} bytes "
                             "of commits that only a normal open reads. Copy '{}' and '{}-wal' "
                             "to writable storage and open the copy",
                             opts.path, opts.path, wal, opts.path, opts.path)};
  opts.immutable = true;
  c = open_secondary(opts);
  if (!c)
    return c;
  if (auto ok = check_readable(**c, opts); !ok)
    return std::move(ok).error();
  return c;
}

} // namespace

expected<int> stored_schema_version(connection& c) {
  return current_version(c);
}

expected<void> create_older_schema(connection& c, int version) {
  if (version < 1 || version > sqlite_schema_version)
    return error{errc::invalid_argument, fmt::format("no schema version {}", version)};
  sqlite_options opts;
  opts.path = c.path();
  opts.create_if_missing = true;
  return migrate(c, opts, version);
}

expected<std::unique_ptr<connection>> open_secondary(const sqlite_options& opts) {
  auto c = connection::open(opts.path, open_flags(opts), opts.busy_timeout,
                            opts.read_only && opts.immutable);
  if (!c)
    return c;
  if (opts.read_only)
    return c;
  auto pragmas = fmt::format("PRAGMA synchronous={};", to_string(opts.synchronous));
  if (opts.max_page_count > 0)
    pragmas += fmt::format("PRAGMA max_page_count={};", opts.max_page_count);
  if (auto rc = sqlite3_exec((*c)->handle(), pragmas.c_str(), nullptr, nullptr, nullptr);
      rc != SQLITE_OK)
    return (*c)->fail_from(rc, "cannot set the connection's pragmas");
  return c;
}

expected<std::unique_ptr<connection>> open_primary(sqlite_options& opts) {
  if (auto ok = check_path(opts); !ok)
    return std::move(ok).error();
  if (opts.read_only)
    return open_read_only(opts);
  auto c = open_secondary(opts);
  if (!c)
    return c;
  auto& db = **c;
  if (sqlite3_db_readonly(db.handle(), "main") == 1)
    return read_only_file(opts, "SQLite opened it read-only");
  auto mode = db.query_text("PRAGMA journal_mode=WAL");
  if (!mode)
    return std::move(mode).error();
  if (*mode != "wal")
    return error{errc::io_error,
                 fmt::format("journal '{}': cannot switch to WAL mode (got '{}'); is the "
                             "directory writable?",
                             opts.path, *mode)};
  if (auto ok = migrate(db, opts); !ok)
    return std::move(ok).error();
  return c;
}

} // namespace troupe::persistence::sqlite
