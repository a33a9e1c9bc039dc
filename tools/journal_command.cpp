#include "journal_command.hpp"

#include "journal_db.hpp"

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
    sub->add_option("--db", c.db, "The SQLite journal file")->required()->type_name("FILE");
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
expected<void> resolve_id(journal_db& d, journal_args& c, const output& o) {
  if (!c.id || c.id->find('|') != std::string::npos)
    return {};
  std::vector<std::string> matches;
  auto ok = d.each("SELECT name FROM persistence_ids WHERE substr(name, instr(name, '|') + 1) = ?1 "
                   "AND instr(name, '|') > 0 ORDER BY name",
                   {*c.id}, [&](sqlite3_stmt* s) { matches.push_back(journal_db::column_text(s, 0)); });
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

expected<int> list(journal_db& d, const output& o) {
  auto ok = d.each(sql_ids, [&](sqlite3_stmt* s) {
    if (sqlite3_column_int64(s, 2) == 0)
      return;  // an id with snapshots only
    std::fprintf(o.out, "%s\tevents=%lld\thighest_seq=%s\n", journal_db::shown(s, 0).c_str(),
                 static_cast<long long>(sqlite3_column_int64(s, 1)),
                 journal_db::shown(s, 2).c_str());
  });
  if (!ok)
    return std::move(ok).error();
  return 0;
}

json payload_json(byte_span payload) {
  auto doc = codec_registry::cbor_to_json(payload);
  if (doc)
    return json(*doc);
  return json{{"undecodable", journal_db::hex(payload)}};
}

json tags_json(sqlite3_stmt* s, int i) {
  if (sqlite3_column_type(s, i) != SQLITE_TEXT)
    return sqlite3_column_type(s, i) == SQLITE_NULL ? json::array() : journal_db::column_json(s, i);
  json tags = json::array();
  auto t = journal_db::column_text(s, i);
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
expected<int> events(journal_db& d, const journal_args& c, const output& o) {
  std::string sql =
    "SELECT e.ordering, p.name, e.seq, e.manifest, e.version, e.tags, e.writer, e.timestamp_ms, "
    "e.payload, e.pid FROM events e LEFT JOIN persistence_ids p ON p.id = e.pid "
    "WHERE e.ordering > ?2";
  if (c.id)
    sql += " AND p.name = ?1";
  if (c.tag)
    sql += " AND e.ordering IN (SELECT t.ordering FROM event_tags t JOIN tags g ON g.id = t.tag "
           "WHERE g.name = ?1)";
  sql += c.id ? " ORDER BY e.seq" : " ORDER BY e.ordering";
  if (c.limit >= 0)
    sql += fmt::format(" LIMIT {}", c.limit);
  std::string key = c.id ? *c.id : (c.tag ? *c.tag : std::string{});
  auto ok = d.each(sql.c_str(), {key, c.from_offset}, [&](sqlite3_stmt* s) {
    json j;
    j["offset"] = journal_db::column_json(s, 0);
    j["persistence_id"] = journal_db::column_json(s, 1);
    if (sqlite3_column_type(s, 1) == SQLITE_NULL)
      j["orphaned_pid"] = journal_db::column_json(s, 9);
    j["seq"] = journal_db::column_json(s, 2);
    j["manifest"] = journal_db::column_json(s, 3);
    j["version"] = journal_db::column_json(s, 4);
    j["tags"] = tags_json(s, 5);
    j["writer"] = journal_db::column_json(s, 6);
    j["timestamp_ms"] = journal_db::column_json(s, 7);
    j["payload"] = payload_json(journal_db::column_blob(s, 8));
    std::fprintf(o.out, "%s\n", persistence::dump_json(j).c_str());
  });
  if (!ok)
    return std::move(ok).error();
  return 0;
}

expected<int> stats(journal_db& d, const output& o) {
  json j;
  j["file"] = persistence::escape_invalid_utf8(d.path());
  std::error_code ec;
  j["file_bytes"] = std::filesystem::file_size(d.path(), ec);
  auto wal = std::filesystem::file_size(d.path() + "-wal", ec);
  j["wal_bytes"] = ec ? 0 : wal;
  std::pair<const char*, const char*> scalars[] = {
    {"schema_version", "SELECT max(version) FROM schema_version"},
    {"events", "SELECT count(*) FROM events"},
    {"persistence_ids", "SELECT count(*) FROM persistence_ids p WHERE p.deleted_to > 0 OR "
                        "EXISTS (SELECT 1 FROM events e WHERE e.pid = p.id)"},
    {"snapshots", "SELECT count(*) FROM snapshots"},
    {"event_payload_bytes", "SELECT coalesce(sum(length(payload)), 0) FROM events"},
    {"snapshot_payload_bytes", "SELECT coalesce(sum(length(payload)), 0) FROM snapshots"},
    {"highest_offset", "SELECT value FROM journal_meta WHERE key = 'highest_offset'"},
    {"journal_id", "SELECT value FROM journal_meta WHERE key = 'journal_id'"},
  };
  for (auto [name, sql] : scalars) {
    auto v = d.scalar(sql);
    if (!v)
      return std::move(v).error();
    j[name] = *v;
  }
  json tags = json::object();
  auto ok = d.each("SELECT g.name, count(*) FROM event_tags t JOIN tags g ON g.id = t.tag "
                   "GROUP BY g.name ORDER BY g.name",
                   [&](sqlite3_stmt* s) {
                     tags[journal_db::column_text(s, 0)] = sqlite3_column_int64(s, 1);
                   });
  if (!ok)
    return std::move(ok).error();
  j["tags"] = tags;
  for (auto [name, sql] : {std::pair{"page_size", "PRAGMA page_size"},
                           std::pair{"page_count", "PRAGMA page_count"},
                           std::pair{"freelist_count", "PRAGMA freelist_count"},
                           std::pair{"auto_vacuum", "PRAGMA auto_vacuum"}}) {
    auto v = d.scalar(sql);
    if (!v)
      return std::move(v).error();
    j[name] = *v;
  }
  auto mode = d.text("PRAGMA journal_mode");
  if (!mode)
    return std::move(mode).error();
  j["journal_mode"] = *mode;
  std::fprintf(o.out, "%s\n", persistence::dump_json(j, 2).c_str());
  return 0;
}

/// `create`: a new, empty journal (the explicit creation the node asks for).
int create(const journal_args& c, const output& o) {
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

expected<int> run(journal_db& d, const journal_args& c, const output& o) {
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
  auto* err = o.err;
  // Checks that the file exists and is a troupe journal of a known version, and
  // how it can be read (immutable on read-only storage).
  persistence::sqlite_options opts;
  opts.path = c.db;
  opts.read_only = true;
  auto journal = persistence::sqlite_journal::open(opts);
  if (!journal) {
    std::fprintf(err, "troupe journal: %s\n", journal.error().to_string().c_str());
    return 1;
  }
  auto used = (*journal)->options();
  journal->reset();
  if (used.immutable)
    std::fprintf(err, "troupe journal: note: %s\n",
                 persistence::immutable_mode_note(c.db).c_str());
  auto d = journal_db::open(used);
  auto result = d ? run(**d, c, o) : expected<int>{d.error()};
  if (!result) {
    std::fprintf(err, "troupe journal: %s\n", result.error().to_string().c_str());
    return 1;
  }
  return *result;
}

} // namespace

int journal_command(const std::vector<std::string>& args, std::FILE* out, std::FILE* err) {
  output o{out, err};
  journal_args c;
  CLI::App app{"Inspect a troupe SQLite journal without the entities' types.", "troupe journal"};
  describe(app, c);
  if (auto rc = cli::parse(app, args, out, err))
    return *rc;
  if (c.command == "create")
    return create(c, o);
  return inspect(c, o);
}

} // namespace troupe::tools
