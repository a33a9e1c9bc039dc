#include "journal_command.hpp"

#include "troupe/actors/codec.hpp"
#include "troupe/persistence/sqlite_journal.hpp"

#include <fmt/core.h>
#include <nlohmann/json.hpp>
#include <sqlite3.h>

#include <cstdio>
#include <filesystem>
#include <map>
#include <optional>

namespace troupe::tools {

namespace {

using json = nlohmann::ordered_json;

struct cli {
  std::string command;
  std::string db;
  std::optional<std::string> id;
  std::optional<std::string> tag;
  std::int64_t from_offset = 0;
  std::int64_t limit = -1;
};

int usage(const std::string& why) {
  std::fprintf(stderr, "troupe journal: %s\nusage: troupe journal list|events|verify|stats --db FILE "
                       "[--id ID] [--tag T] [--from-offset N] [--limit N]\n",
               why.c_str());
  return 2;
}

std::optional<cli> parse(const std::vector<std::string>& args, int& status) {
  cli c;
  if (args.empty()) {
    status = usage("no command");
    return std::nullopt;
  }
  c.command = args[0];
  for (std::size_t i = 1; i < args.size(); ++i) {
    auto value = [&]() -> std::optional<std::string> {
      if (i + 1 >= args.size())
        return std::nullopt;
      return args[++i];
    };
    auto& a = args[i];
    std::optional<std::string> v;
    if (a == "--db" || a == "--id" || a == "--tag" || a == "--from-offset" || a == "--limit") {
      v = value();
      if (!v) {
        status = usage(a + " needs a value");
        return std::nullopt;
      }
    } else {
      status = usage("unknown argument '" + a + "'");
      return std::nullopt;
    }
    try {
      if (a == "--db")
        c.db = *v;
      else if (a == "--id")
        c.id = *v;
      else if (a == "--tag")
        c.tag = *v;
      else if (a == "--from-offset")
        c.from_offset = std::stoll(*v);
      else
        c.limit = std::stoll(*v);
    } catch (const std::exception&) {
      status = usage(a + " needs a number (got '" + *v + "')");
      return std::nullopt;
    }
  }
  if (c.db.empty()) {
    status = usage("--db FILE is required");
    return std::nullopt;
  }
  return c;
}

/// A read-only connection and a tiny query helper.
class db {
public:
  explicit db(const std::string& path) : path_(path) {
    sqlite3_open_v2(path.c_str(), &h_, SQLITE_OPEN_READONLY, nullptr);
  }
  ~db() { sqlite3_close(h_); }
  const std::string& path() const { return path_; }

  /// Runs `sql` and calls `row` for every result row.
  template <class Row>
  void each(const char* sql, Row row, std::int64_t p1 = 0, bool bind = false,
            const std::string* text = nullptr) {
    sqlite3_stmt* s = nullptr;
    if (sqlite3_prepare_v2(h_, sql, -1, &s, nullptr) != SQLITE_OK)
      throw std::runtime_error(fmt::format("journal '{}': {}", path_, sqlite3_errmsg(h_)));
    if (text)
      sqlite3_bind_text(s, 1, text->c_str(), -1, SQLITE_TRANSIENT);
    if (bind)
      sqlite3_bind_int64(s, text ? 2 : 1, p1);
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW)
      row(s);
    sqlite3_finalize(s);
    if (rc != SQLITE_DONE)
      throw std::runtime_error(fmt::format("journal '{}': {}", path_, sqlite3_errmsg(h_)));
  }
  std::int64_t scalar(const char* sql) {
    std::int64_t v = 0;
    each(sql, [&](sqlite3_stmt* s) { v = sqlite3_column_int64(s, 0); });
    return v;
  }
  std::string text(const char* sql) {
    std::string v;
    each(sql, [&](sqlite3_stmt* s) { v = column_text(s, 0); });
    return v;
  }

  static std::string column_text(sqlite3_stmt* s, int i) {
    auto p = sqlite3_column_text(s, i);
    return p ? std::string{reinterpret_cast<const char*>(p),
                           static_cast<std::size_t>(sqlite3_column_bytes(s, i))}
             : std::string{};
  }
  static byte_span column_blob(sqlite3_stmt* s, int i) {
    auto p = static_cast<const std::uint8_t*>(sqlite3_column_blob(s, i));
    return p ? byte_span{p, static_cast<std::size_t>(sqlite3_column_bytes(s, i))} : byte_span{};
  }

private:
  std::string path_;
  sqlite3* h_ = nullptr;
};

std::string hex(byte_span b, std::size_t max = 32) {
  std::string out;
  for (std::size_t i = 0; i < b.size() && i < max; ++i)
    out += fmt::format("{:02x}", b[i]);
  if (b.size() > max)
    out += "...";
  return out;
}

// Highest seq per id: the max stored seq, or what was deleted (never lower).
constexpr const char* sql_ids =
  "SELECT p.name, (SELECT count(*) FROM events e WHERE e.pid = p.id), "
  "max(coalesce((SELECT max(seq) FROM events e WHERE e.pid = p.id), 0), p.deleted_to) "
  "FROM persistence_ids p ORDER BY p.name";

int list(db& d) {
  d.each(sql_ids, [](sqlite3_stmt* s) {
    if (sqlite3_column_int64(s, 2) == 0)
      return;  // an id with snapshots only
    std::printf("%s\tevents=%lld\thighest_seq=%lld\n", db::column_text(s, 0).c_str(),
                static_cast<long long>(sqlite3_column_int64(s, 1)),
                static_cast<long long>(sqlite3_column_int64(s, 2)));
  });
  return 0;
}

json payload_json(byte_span payload) {
  auto doc = codec_registry::cbor_to_json(payload);
  if (doc)
    return json::parse(doc->dump());
  return json{{"undecodable", hex(payload)}};
}

int events(db& d, const cli& c) {
  std::string sql =
    "SELECT e.ordering, p.name, e.seq, e.manifest, e.version, e.tags, e.writer, e.timestamp_ms, "
    "e.payload FROM events e JOIN persistence_ids p ON p.id = e.pid WHERE e.ordering > ?2";
  if (c.id)
    sql += " AND p.name = ?1";
  if (c.tag)
    sql += " AND e.ordering IN (SELECT t.ordering FROM event_tags t JOIN tags g ON g.id = t.tag "
           "WHERE g.name = ?1)";
  sql += c.id ? " ORDER BY e.seq" : " ORDER BY e.ordering";
  if (c.limit >= 0)
    sql += fmt::format(" LIMIT {}", c.limit);
  const std::string* key = c.id ? &*c.id : (c.tag ? &*c.tag : nullptr);
  if (c.id && c.tag) {
    std::fprintf(stderr, "troupe journal: use either --id or --tag\n");
    return 2;
  }
  std::string empty;
  d.each(
    sql.c_str(),
    [](sqlite3_stmt* s) {
      json j;
      j["offset"] = sqlite3_column_int64(s, 0);
      j["persistence_id"] = db::column_text(s, 1);
      j["seq"] = sqlite3_column_int64(s, 2);
      j["manifest"] = db::column_text(s, 3);
      j["version"] = sqlite3_column_int64(s, 4);
      json tags = json::array();
      auto t = db::column_text(s, 5);
      for (std::size_t start = 0; !t.empty() && start <= t.size();) {
        auto end = t.find('\x1f', start);
        tags.push_back(t.substr(start, end - start));
        if (end == std::string::npos)
          break;
        start = end + 1;
      }
      j["tags"] = tags;
      j["writer"] = db::column_text(s, 6);
      j["timestamp_ms"] = sqlite3_column_int64(s, 7);
      j["payload"] = payload_json(db::column_blob(s, 8));
      std::printf("%s\n", j.dump().c_str());
    },
    c.from_offset, true, key ? key : &empty);
  return 0;
}

int verify(db& d) {
  std::vector<std::string> problems;
  std::int64_t events = 0;
  d.each("PRAGMA quick_check", [&](sqlite3_stmt* s) {
    auto r = db::column_text(s, 0);
    if (r != "ok")
      problems.push_back("integrity: " + r);
  });
  // One pass over the events in (pid, seq) order: gaps and undecodable payloads.
  d.each("SELECT p.name, e.seq, LAG(e.seq) OVER (PARTITION BY e.pid ORDER BY e.seq), "
         "p.deleted_to, e.ordering, e.payload FROM events e JOIN persistence_ids p ON p.id = e.pid "
         "ORDER BY e.pid, e.seq",
         [&](sqlite3_stmt* s) {
           ++events;
           auto name = db::column_text(s, 0);
           auto seq = sqlite3_column_int64(s, 1);
           auto expected_seq = sqlite3_column_type(s, 2) == SQLITE_NULL
                                 ? sqlite3_column_int64(s, 3) + 1
                                 : sqlite3_column_int64(s, 2) + 1;
           if (seq > expected_seq)
             problems.push_back(fmt::format("gap: '{}' seq {}..{} missing (not deleted)", name,
                                            expected_seq, seq - 1));
           auto payload = db::column_blob(s, 5);
           if (auto doc = codec_registry::cbor_to_json(payload); !doc)
             problems.push_back(fmt::format("undecodable event: '{}' seq {} offset {}: payload "
                                            "is not CBOR ({})",
                                            name, seq, sqlite3_column_int64(s, 4),
                                            hex(payload, 8)));
         });
  std::map<std::string, std::int64_t> highest;
  d.each(sql_ids, [&](sqlite3_stmt* s) {
    highest[db::column_text(s, 0)] = sqlite3_column_int64(s, 2);
  });
  std::int64_t snapshots = 0;
  d.each("SELECT p.name, s.seq, s.payload FROM snapshots s JOIN persistence_ids p ON p.id = s.pid "
         "ORDER BY p.name, s.seq",
         [&](sqlite3_stmt* s) {
           ++snapshots;
           auto name = db::column_text(s, 0);
           auto seq = sqlite3_column_int64(s, 1);
           auto h = highest[name];
           if (h == 0)
             problems.push_back(
               fmt::format("orphaned snapshot: '{}' seq {}: the id has no events", name, seq));
           else if (seq > h)
             problems.push_back(fmt::format(
               "orphaned snapshot: '{}' seq {} is above the highest seq {}", name, seq, h));
           if (auto doc = codec_registry::cbor_to_json(db::column_blob(s, 2)); !doc)
             problems.push_back(fmt::format(
               "undecodable snapshot: '{}' seq {}: payload is not CBOR", name, seq));
         });
  d.each("SELECT p.name, s.seq, count(*) FROM snapshots s JOIN persistence_ids p ON p.id = s.pid "
         "GROUP BY s.pid, s.seq HAVING count(*) > 1",
         [&](sqlite3_stmt* s) {
           problems.push_back(fmt::format("duplicate snapshot: '{}' seq {} stored {} times",
                                          db::column_text(s, 0), sqlite3_column_int64(s, 1),
                                          sqlite3_column_int64(s, 2)));
         });
  auto beyond = d.scalar("SELECT count(*) FROM events WHERE ordering > "
                         "(SELECT value FROM journal_meta WHERE key = 'highest_offset')");
  if (beyond > 0)
    problems.push_back(fmt::format("offsets: {} events have an offset above the recorded "
                                   "highest offset (new events could reuse offsets)",
                                   beyond));
  for (auto& p : problems)
    std::printf("%s\n", p.c_str());
  if (!problems.empty()) {
    std::printf("verify: %zu problem(s) in '%s'\n", problems.size(), d.path().c_str());
    return 1;
  }
  std::printf("verify: ok (%lld events, %zu persistence ids, %lld snapshots)\n",
              static_cast<long long>(events), highest.size(), static_cast<long long>(snapshots));
  return 0;
}

int stats(db& d) {
  json j;
  j["file"] = d.path();
  std::error_code ec;
  j["file_bytes"] = std::filesystem::file_size(d.path(), ec);
  auto wal = std::filesystem::file_size(d.path() + "-wal", ec);
  j["wal_bytes"] = ec ? 0 : wal;
  j["schema_version"] = d.scalar("SELECT max(version) FROM schema_version");
  j["events"] = d.scalar("SELECT count(*) FROM events");
  j["persistence_ids"] =
    d.scalar("SELECT count(*) FROM persistence_ids p WHERE p.deleted_to > 0 OR EXISTS "
             "(SELECT 1 FROM events e WHERE e.pid = p.id)");
  j["snapshots"] = d.scalar("SELECT count(*) FROM snapshots");
  j["event_payload_bytes"] = d.scalar("SELECT coalesce(sum(length(payload)), 0) FROM events");
  j["snapshot_payload_bytes"] = d.scalar("SELECT coalesce(sum(length(payload)), 0) FROM snapshots");
  j["highest_offset"] = d.scalar("SELECT value FROM journal_meta WHERE key = 'highest_offset'");
  json tags = json::object();
  d.each("SELECT g.name, count(*) FROM event_tags t JOIN tags g ON g.id = t.tag GROUP BY g.name "
         "ORDER BY g.name",
         [&](sqlite3_stmt* s) { tags[db::column_text(s, 0)] = sqlite3_column_int64(s, 1); });
  j["tags"] = tags;
  j["page_size"] = d.scalar("PRAGMA page_size");
  j["page_count"] = d.scalar("PRAGMA page_count");
  j["freelist_count"] = d.scalar("PRAGMA freelist_count");
  j["journal_mode"] = d.text("PRAGMA journal_mode");
  j["auto_vacuum"] = d.scalar("PRAGMA auto_vacuum");
  std::printf("%s\n", j.dump(2).c_str());
  return 0;
}

} // namespace

int journal_command(const std::vector<std::string>& args) {
  int status = 0;
  auto c = parse(args, status);
  if (!c)
    return status;
  if (c->command != "list" && c->command != "events" && c->command != "verify"
      && c->command != "stats")
    return usage("unknown command '" + c->command + "'");
  // Checks that the file exists and is a troupe journal of a known version.
  persistence::sqlite_options opts;
  opts.path = c->db;
  opts.read_only = true;
  auto journal = persistence::sqlite_journal::open(opts);
  if (!journal) {
    std::fprintf(stderr, "troupe journal: %s\n", journal.error().to_string().c_str());
    return 1;
  }
  try {
    db d{c->db};
    if (c->command == "list")
      return list(d);
    if (c->command == "events")
      return events(d, *c);
    if (c->command == "verify")
      return verify(d);
    return stats(d);
  } catch (const std::exception& ex) {
    std::fprintf(stderr, "troupe journal: %s\n", ex.what());
    return 1;
  }
}

} // namespace troupe::tools
