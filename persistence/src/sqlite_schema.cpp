#include "sqlite_schema.hpp"

#include <fmt/core.h>

#include <algorithm>
#include <cctype>
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

} // namespace troupe::persistence

namespace troupe::persistence::sqlite {

namespace {

namespace fs = std::filesystem;

// Migration i (1-based) lifts the schema from version i - 1 to i. Never edit a
// released step: add a new one.
//
// Why this layout: see docs/persistence-storage.md. In short, a rowid table whose
// rowid is the global offset makes appends cheap (always at the end of the
// table's b-tree), and the unique (pid INTEGER, seq) index gives conflict
// detection and paged replay; an INTEGER pid keeps that index small.
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
};
static_assert(std::size(migrations) == sqlite_schema_version);

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
  auto v = c.query_text("SELECT coalesce(max(version), 0) FROM schema_version");
  if (!v)
    return std::move(v).error();
  return std::stoi(*v);
}

expected<void> migrate(connection& c) {
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
                      fmt::format("journal '{}' has schema version {}; this troupe knows up to {}",
                                  c.path(), *version, sqlite_schema_version)});
  if (*version == 0)
    if (auto ok = c.exec("CREATE TABLE schema_version(version INTEGER NOT NULL)"); !ok)
      return fail(std::move(ok).error());
  for (auto v = *version + 1; v <= sqlite_schema_version; ++v) {
    if (auto ok = c.exec(migrations[v - 1]); !ok)
      return fail(std::move(ok).error());
  }
  if (*version < sqlite_schema_version) {
    auto sql = fmt::format("DELETE FROM schema_version; INSERT INTO schema_version VALUES({})",
                           sqlite_schema_version);
    if (sqlite3_exec(c.handle(), sql.c_str(), nullptr, nullptr, nullptr) != SQLITE_OK)
      return fail(c.fail(errc::journal_failure, "cannot record the schema version"));
  }
  if (auto ok = c.exec("COMMIT"); !ok)
    return fail(std::move(ok).error());
  return {};
}

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
  if (!fs::exists(p, ec) && (opts.read_only || !opts.create_if_missing))
    return error{errc::not_found,
                 fmt::format("journal '{}': the file does not exist{}", opts.path,
                             opts.read_only ? ""
                                            : " (persistence.journal.create-if-missing is off)")};
  return {};
}

int open_flags(const sqlite_options& opts) {
  if (opts.read_only)
    return SQLITE_OPEN_READONLY;
  return SQLITE_OPEN_READWRITE | (opts.create_if_missing ? SQLITE_OPEN_CREATE : 0);
}

} // namespace

expected<std::unique_ptr<connection>> open_secondary(const sqlite_options& opts) {
  auto c = connection::open(opts.path, open_flags(opts), opts.busy_timeout);
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

expected<std::unique_ptr<connection>> open_primary(const sqlite_options& opts) {
  if (auto ok = check_path(opts); !ok)
    return std::move(ok).error();
  auto c = open_secondary(opts);
  if (!c)
    return c;
  auto& db = **c;
  if (opts.read_only) {
    auto version = current_version(db);
    if (!version)
      return std::move(version).error();
    if (*version == 0)
      return error{errc::invalid_config,
                   fmt::format("journal '{}': the file is empty, not a troupe journal", opts.path)};
    if (*version != sqlite_schema_version)
      return error{errc::unsupported_version,
                   fmt::format("journal '{}' has schema version {}; this troupe reads version {}",
                               opts.path, *version, sqlite_schema_version)};
    return c;
  }
  if (sqlite3_db_readonly(db.handle(), "main") == 1)
    return error{errc::io_error,
                 fmt::format("journal '{}': the file is read-only; troupe must be able to write "
                             "it (check its permissions and the file system)",
                             opts.path)};
  auto mode = db.query_text("PRAGMA journal_mode=WAL");
  if (!mode)
    return std::move(mode).error();
  if (*mode != "wal")
    return error{errc::io_error,
                 fmt::format("journal '{}': cannot switch to WAL mode (got '{}'); is the "
                             "directory writable?",
                             opts.path, *mode)};
  if (auto ok = migrate(db); !ok)
    return std::move(ok).error();
  return c;
}

} // namespace troupe::persistence::sqlite
