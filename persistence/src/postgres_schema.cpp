// The PostgreSQL journal's schema: creation, migrations and the checks at open.
#include "postgres_impl.hpp"

#include "troupe/persistence/json_text.hpp"

#include <fmt/core.h>

#include <algorithm>
#include <iterator>

namespace troupe::persistence::pg {

namespace {

// Migration i (1-based) lifts the schema from version i - 1 to i. Never edit a
// released step: add a new one.
//
// Why this layout (docs/persistence-storage.md, "PostgreSQL"): as in SQLite, the
// offset (`ordering`) is the events' primary key and always grows, so inserts
// append to the right edge of that b-tree; the unique (pid, seq) index gives
// conflict detection and paged replay, kept small by an integer pid. Tags are
// rows of event_tags, clustered by (tag, ordering): events_by_tag is an index
// range scan, never a scan of the journal. Text keys use the "C" collation so
// their order is the byte order troupe's API promises, whatever the database's
// locale. `highest_offset` in journal_meta is the offset lock (see write path);
// `deletes` counts delete_events_to calls (the writers' deleted_to caches).
// (Step 1 gained the `deletes` row before any release; a schema created earlier
// lacks it, which the write path reads as 0 and delete_events_to creates.)
constexpr const char* migrations[] = {
  // 1: the initial schema.
  R"sql(
CREATE TABLE journal_meta(
  key text COLLATE "C" PRIMARY KEY,
  value bigint NOT NULL
);
INSERT INTO journal_meta(key, value) VALUES
  ('highest_offset', 0),
  ('deletes', 0),
  ('journal_id', 1 + floor(random() * 4611686018427387903)::bigint);
CREATE TABLE persistence_ids(
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  name text COLLATE "C" NOT NULL UNIQUE,
  deleted_to bigint NOT NULL DEFAULT 0
);
CREATE TABLE events(
  ordering bigint PRIMARY KEY,
  pid bigint NOT NULL,
  seq bigint NOT NULL,
  manifest text NOT NULL,
  version bigint NOT NULL,
  payload bytea NOT NULL,
  tags text,
  writer text NOT NULL,
  timestamp_ms bigint NOT NULL
);
CREATE UNIQUE INDEX events_pid_seq ON events(pid, seq);
CREATE TABLE event_tags(
  tag text COLLATE "C" NOT NULL,
  ordering bigint NOT NULL,
  PRIMARY KEY(tag, ordering)
);
CREATE TABLE snapshots(
  pid bigint NOT NULL,
  seq bigint NOT NULL,
  timestamp_ms bigint NOT NULL,
  manifest text NOT NULL,
  version bigint NOT NULL,
  payload bytea NOT NULL,
  PRIMARY KEY(pid, seq)
);
CREATE TABLE fences(
  key text COLLATE "C" PRIMARY KEY,
  epoch bigint NOT NULL
);
)sql",
};
static_assert(std::size(migrations) == schema_version);

/// A constant key for pg_advisory_xact_lock: nodes starting at once migrate one
/// after another ("troupe" in ASCII).
constexpr const char* sql_migration_lock = "SELECT pg_advisory_xact_lock(128034845061221)";

constexpr const char* sql_tables =
  "SELECT count(*), count(*) FILTER (WHERE tablename = 'troupe_schema_version'), "
  "(current_schema() IS NULL)::int4, current_setting('search_path') "
  "FROM pg_tables WHERE schemaname = current_schema()";

/// The stored version, 0 for a schema without tables.
expected<int> current_version(connection& c) {
  auto t = c.exec(sql_tables, {}, "cannot list the tables of the current schema");
  if (!t)
    return std::move(t).error();
  if (t->rows() != 1 || t->int8(0, 2) != 0)
    return error{errc::invalid_config,
                 fmt::format("postgres journal {}: the connection has no current schema: none "
                             "of search_path '{}' exists; create the schema first (CREATE "
                             "SCHEMA) or fix options=-csearch_path%3D... in the URI",
                             c.server(), t->rows() == 1 ? t->text(0, 3) : "")};
  if (t->int8(0, 1) == 0) {
    if (t->int8(0, 0) != 0)
      return error{errc::invalid_config,
                   fmt::format("postgres journal {}: the current schema holds {} table(s) but no "
                               "troupe_schema_version, so it is not a troupe journal; give troupe "
                               "its own schema or database (e.g. options=-csearch_path%3Dtroupe "
                               "in the URI)",
                               c.server(), t->int8(0, 0))};
    return 0;
  }
  auto v = c.exec("SELECT version::bigint FROM troupe_schema_version", {},
                  "cannot read troupe_schema_version");
  if (!v)
    return std::move(v).error();
  if (v->rows() != 1 || v->is_null(0, 0) || v->int8(0, 0) < 1)
    return error{errc::invalid_config,
                 fmt::format("postgres journal {}: troupe_schema_version is damaged ({} row(s)): "
                             "expected one row with a version >= 1",
                             c.server(), v->rows())};
  return static_cast<int>(std::min<std::int64_t>(v->int8(0, 0), 1 << 30));
}

error newer_schema(const connection& c, int version) {
  return error{errc::unsupported_version,
               fmt::format("postgres journal {} has schema version {}; this troupe knows up to {} "
                           "(a newer troupe created or migrated it: use that version; this one "
                           "never guesses at a newer layout)",
                           c.server(), version, schema_version)};
}

expected<void> migrate(connection& c) {
  if (auto ok = c.run("BEGIN ISOLATION LEVEL READ COMMITTED"); !ok)
    return ok;
  auto body = [&]() -> expected<void> {
    if (auto ok = c.exec(sql_migration_lock, {}, "cannot take the migration lock"); !ok)
      return std::move(ok).error();
    auto version = current_version(c);
    if (!version)
      return std::move(version).error();
    if (*version > schema_version)
      return newer_schema(c, *version);
    if (*version == 0)
      if (auto ok = c.run("CREATE TABLE troupe_schema_version(version integer NOT NULL); "
                          "INSERT INTO troupe_schema_version VALUES(0)");
          !ok)
        return ok;
    for (auto v = *version + 1; v <= schema_version; ++v)
      if (auto ok = c.run(migrations[v - 1]); !ok)
        return ok;
    if (*version < schema_version)
      if (auto ok = c.exec("UPDATE troupe_schema_version SET version = $1::bigint",
                           params{}.int8(schema_version), "cannot record the schema version");
          !ok)
        return std::move(ok).error();
    return c.commit();
  };
  auto ok = body();
  if (!ok)
    c.rollback_if_open();
  return ok;
}

} // namespace

expected<schema_info> prepare_schema(connection& c, bool read_only) {
  if (read_only) {
    auto version = current_version(c);
    if (!version)
      return std::move(version).error();
    if (*version == 0)
      return error{errc::not_found,
                   fmt::format("postgres journal {}: the current schema holds no troupe journal",
                               c.server())};
    if (*version > schema_version)
      return newer_schema(c, *version);
    // (Read-only connections run with default_transaction_read_only=on.)
  } else if (auto ok = migrate(c); !ok) {
    return std::move(ok).error();
  }
  schema_info info;
  auto id = c.exec("SELECT value FROM journal_meta WHERE key = 'journal_id'", {},
                   "cannot read the journal id");
  if (!id)
    return std::move(id).error();
  info.journal_id = id->rows() == 1 ? id->int8(0, 0) : 0;
  auto sync = c.exec("SELECT current_setting('synchronous_commit')", {},
                     "cannot read synchronous_commit");
  if (!sync)
    return std::move(sync).error();
  info.synchronous_commit = std::string{sync->text(0, 0)};
  return info;
}

bool storable_text(std::string_view s) {
  return s.find('\0') == std::string_view::npos && is_valid_utf8(s);
}

void join_tags(const std::vector<std::string>& tags, std::string& out) {
  out.clear();
  for (auto& t : tags) {
    if (!out.empty())
      out += '\x1f';
    out += t;
  }
}

void split_tags(std::string_view text, std::vector<std::string>& out) {
  while (!text.empty()) {
    auto end = text.find('\x1f');
    out.emplace_back(text.substr(0, end));
    if (end == std::string_view::npos)
      break;
    text.remove_prefix(end + 1);
  }
}

expected<void> check_text(const atomic_write& w) {
  auto bad = [](std::string_view s) { return !storable_text(s); };
  auto refuse = [&](sequence_nr seq, std::string_view what) -> expected<void> {
    return error{errc::journal_rejected,
                 fmt::format("journal: write of '{}' seq {} rejected: its {} is not valid UTF-8 "
                             "or holds a NUL byte, which PostgreSQL text cannot store",
                             escape_invalid_utf8(w.persistence_id), seq, what)};
  };
  if (bad(w.persistence_id))
    return refuse(w.events.front().seq, "persistence id");
  if (w.fence && bad(w.fence->key))
    return refuse(w.events.front().seq, "fence key");
  for (auto& e : w.events) {
    if (bad(e.manifest))
      return refuse(e.seq, "manifest");
    if (bad(e.writer))
      return refuse(e.seq, "writer");
    if (std::any_of(e.tags.begin(), e.tags.end(), bad))
      return refuse(e.seq, "tag");
  }
  return {};
}

std::int64_t to_db(std::uint64_t x) {
  return static_cast<std::int64_t>(std::min<std::uint64_t>(x, max_sequence_nr));
}

std::int64_t limit_of(std::size_t n) {
  return static_cast<std::int64_t>(std::min<std::size_t>(n, INT64_MAX));
}

} // namespace troupe::persistence::pg
