#include "journal_command.hpp"

#include "journal_source.hpp"

#include "troupe/persistence/postgres_journal.hpp"
#include "troupe/persistence/sqlite_journal.hpp"

#include "troupe/cli/command_line.hpp"

#include <fmt/ranges.h>

#include <filesystem>
#include <limits>
#include <optional>

namespace troupe::tools {

namespace {

struct journal_args {
  std::string command;
  std::string db;
  std::optional<std::string> id;
  std::optional<std::string> tag;
  std::int64_t from_offset = 0;
  std::int64_t limit = -1;
};

struct output {
  std::FILE* out;
  std::FILE* err;
};

constexpr std::int64_t int64_max = std::numeric_limits<std::int64_t>::max();

/// The `troupe journal` command line; fills `c` when parsed.
void describe(CLI::App& app, journal_args& c) {
  cli::apply_conventions(app);
  app.require_subcommand(1);
  app.footer("Every command but create opens the journal read-only. Exit codes: 0 ok, "
             "1 failure (or problems found by verify), 2 usage error.");
  auto add = [&](const char* name, const char* help) {
    auto* sub = app.add_subcommand(name, help);
    sub->add_option("--db", c.db,
                    "The SQLite journal file, or a PostgreSQL connection URI "
                    "(postgresql://user:password@host:port/db?options=-csearch_path%3Dschema)")
      ->required()
      ->type_name("FILE|URI");
    sub->parse_complete_callback([&c, name] { c.command = name; });
    return sub;
  };
  add("list", "Persistence ids with event counts and highest sequence number");
  auto* events = add("events", "Events as JSON lines (payloads rendered from CBOR)");
  events->add_option("--id", c.id,
                     "Only this entity: its id (cart-1) or persistence id (cart|cart-1)");
  events->add_option("--tag", c.tag, "Only events with this tag")->excludes("--id");
  cli::add_integer(*events, "--from-offset", c.from_offset, 0, int64_max,
                   "Only events after this offset");
  cli::add_integer(*events, "--limit", c.limit, 0, int64_max, "At most this many events");
  add("verify", "Sequence gaps, orphaned events and snapshots, damaged or undecodable rows, "
                "invalid UTF-8; exit 1 when problems exist");
  add("stats", "Counts, sizes, ids, tags, page size, WAL settings");
  add("create", "A new, empty journal (the explicit creation a node needs before its first "
                "start)");
}

/// `--id X` names a persistence id "TYPE|X" or, with a '|', one persistence id.
/// An entity id matching several types is ambiguous; the id used is reported.
expected<void> resolve_id(journal_source& d, journal_args& c, const output& o) {
  if (!c.id || c.id->find('|') != std::string::npos)
    return {};
  std::vector<std::string> matches;
  auto ok = d.each(d.dialect().ids_of_entity, {*c.id},
                   [&](const journal_row& r) { matches.push_back(r.text(0)); });
  if (!ok)
    return ok;
  if (matches.size() > 1)
    return error{errc::invalid_argument,
                 fmt::format("--id '{}' is ambiguous: {}; give the persistence id TYPE|ID", *c.id,
                             fmt::join(matches, ", "))};
  if (matches.empty()) {
    std::fprintf(o.err, "troupe journal: note: no persistence id '{TYPE}|%s' in the journal\n",
                 c.id->c_str());
    return {};
  }
  std::fprintf(o.err, "troupe journal: note: --id '%s' is persistence id '%s'\n", c.id->c_str(),
               matches.front().c_str());
  c.id = matches.front();
  return {};
}

expected<int> list(journal_source& d, const output& o) {
  auto ok = d.each(d.dialect().ids, [&](const journal_row& r) {
    if (r.integer(2) == 0)
      return;  // an id with snapshots only
    std::fprintf(o.out, "%s\tevents=%lld\thighest_seq=%s\n", r.shown(0).c_str(),
                 static_cast<long long>(r.integer(1)), r.shown(2).c_str());
  });
  if (!ok)
    return std::move(ok).error();
  return 0;
}

json payload_json(byte_span payload) {
  auto doc = codec_registry::cbor_to_json(payload);
  if (doc)
    return json(*doc);
  return json{{"undecodable", hex(payload)}};
}

/// The events.tags column: tag names joined by \x1f.
json tags_json(const journal_row& r, int i) {
  if (!r.is_text(i))
    return r.is_null(i) ? json::array() : r.value(i);
  json tags = json::array();
  auto t = r.text(i);
  for (std::size_t start = 0; !t.empty() && start <= t.size();) {
    auto end = t.find('\x1f', start);
    tags.push_back(t.substr(start, end - start));
    if (end == std::string::npos)
      break;
    start = end + 1;
  }
  return tags;
}

/// One JSON line per event: every column as stored (text that is not UTF-8
/// rendered with \xNN escapes), the payload rendered from CBOR. Events whose
/// persistence id row is missing show "persistence_id": null and their row number.
expected<int> events(journal_source& d, const journal_args& c, const output& o) {
  std::string sql =
    "SELECT e.ordering, p.name, e.seq, e.manifest, e.version, e.tags, e.writer, e.timestamp_ms, "
    "e.payload, e.pid FROM events e LEFT JOIN persistence_ids p ON p.id = e.pid "
    "WHERE e.ordering > ?2";
  if (c.id)
    sql += " AND p.name = ?1";
  if (c.tag)
    sql += fmt::format(" AND {}", d.dialect().tagged);
  sql += c.id ? " ORDER BY e.seq" : " ORDER BY e.ordering";
  if (c.limit >= 0)
    sql += fmt::format(" LIMIT {}", c.limit);
  std::string key = c.id ? *c.id : (c.tag ? *c.tag : std::string{});
  auto ok = d.each(sql, {key, c.from_offset}, [&](const journal_row& r) {
    json j;
    j["offset"] = r.value(0);
    j["persistence_id"] = r.value(1);
    if (r.is_null(1))
      j["orphaned_pid"] = r.value(9);
    j["seq"] = r.value(2);
    j["manifest"] = r.value(3);
    j["version"] = r.value(4);
    j["tags"] = tags_json(r, 5);
    j["writer"] = r.value(6);
    j["timestamp_ms"] = r.value(7);
    j["payload"] = payload_json(r.blob(8));
    std::fprintf(o.out, "%s\n", persistence::dump_json(j).c_str());
  });
  if (!ok)
    return std::move(ok).error();
  return 0;
}

/// Where the journal is, the counts both stores have, then the store's own figures.
expected<int> stats(journal_source& d, const output& o) {
  json j;
  if (auto ok = d.location_stats(j); !ok)
    return std::move(ok).error();
  std::pair<const char*, const char*> scalars[] = {
    {"schema_version", d.dialect().schema_version},
    {"events", "SELECT count(*) FROM events"},
    // (One pass over the events: a SQLite journal's events have no pid index.)
    {"persistence_ids", "SELECT count(*) FROM persistence_ids p WHERE p.deleted_to > 0 OR "
                        "p.id IN (SELECT pid FROM events)"},
    {"snapshots", "SELECT count(*) FROM snapshots"},
    {"event_payload_bytes", "SELECT coalesce(sum(length(payload)), 0) FROM events"},
    {"snapshot_payload_bytes", "SELECT coalesce(sum(length(payload)), 0) FROM snapshots"},
    {"highest_offset", d.dialect().highest_offset},
    {"journal_id", "SELECT value FROM journal_meta WHERE key = 'journal_id'"},
  };
  for (auto [name, sql] : scalars) {
    auto v = d.scalar(sql);
    if (!v)
      return std::move(v).error();
    j[name] = *v;
  }
  json tags = json::object();
  auto ok = d.each(d.dialect().tag_counts,
                   [&](const journal_row& r) { tags[r.text(0)] = r.integer(1); });
  if (!ok)
    return std::move(ok).error();
  j["tags"] = tags;
  if (auto more = d.store_stats(j); !more)
    return std::move(more).error();
  std::fprintf(o.out, "%s\n", persistence::dump_json(j, 2).c_str());
  return 0;
}

/// `create`: a new, empty journal (the explicit creation the node asks for).
int create(const journal_args& c, const output& o) {
  if (persistence::is_postgres_uri(c.db)) {
    std::fprintf(o.err, "troupe journal: create makes SQLite journals; a PostgreSQL journal's "
                        "tables are created by the first node that opens it\n");
    return 1;
  }
  std::error_code ec;
  if (std::filesystem::exists(c.db, ec) && std::filesystem::file_size(c.db, ec) > 0) {
    std::fprintf(o.err, "troupe journal: '%s' exists and is not empty; create makes new journals "
                        "only\n",
                 c.db.c_str());
    return 1;
  }
  persistence::sqlite_options opts;
  opts.path = c.db;
  opts.create_if_missing = true;
  auto j = persistence::sqlite_journal::open(opts);
  if (!j) {
    std::fprintf(o.err, "troupe journal: %s\n", j.error().to_string().c_str());
    return 1;
  }
  std::fprintf(o.out, "created journal '%s' (journal id %lld)\n", c.db.c_str(),
               static_cast<long long>((*j)->journal_id()));
  return 0;
}

expected<int> run(journal_source& d, const journal_args& c, const output& o) {
  if (c.command == "list")
    return list(d, o);
  if (c.command == "events") {
    auto resolved = c;
    if (auto ok = resolve_id(d, resolved, o); !ok)
      return std::move(ok).error();
    return events(d, resolved, o);
  }
  if (c.command == "verify")
    return verify_journal(d, o.out);
  return stats(d, o);
}

/// Every command but create: opens the journal read-only.
int inspect(const journal_args& c, const output& o) {
  auto d = persistence::is_postgres_uri(c.db) ? open_postgres_source(c.db)
                                              : open_sqlite_source(c.db, o.err);
  auto result = d ? run(**d, c, o) : expected<int>{d.error()};
  if (!result) {
    std::fprintf(o.err, "troupe journal: %s\n", result.error().to_string().c_str());
    return 1;
  }
  return *result;
}

} // namespace

int journal_command(const std::vector<std::string>& args, std::FILE* out, std::FILE* err) {
  output o{out, err};
  journal_args c;
  CLI::App app{"Inspect a troupe journal (SQLite or PostgreSQL) without the entities' types.",
               "troupe journal"};
  describe(app, c);
  if (auto rc = cli::parse(app, args, out, err))
    return *rc;
  if (c.command == "create")
    return create(c, o);
  return inspect(c, o);
}

} // namespace troupe::tools
