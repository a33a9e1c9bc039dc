// `troupe journal` on a SQLite file: a read-only handle with raw SQL, and faithful
// renderings of whatever a row holds (the file may be damaged: any column can hold
// any SQLite type and any bytes).
#include "journal_verify.hpp"

#include "troupe/persistence/sqlite_journal.hpp"

#include <sqlite3.h>

#include <filesystem>

namespace troupe::tools {

namespace {

class sqlite_row final : public journal_row {
public:
  explicit sqlite_row(sqlite3_stmt* s) : s_(s) {}
  bool is_null(int i) const override { return type(i) == SQLITE_NULL; }
  bool is_integer(int i) const override { return type(i) == SQLITE_INTEGER; }
  bool is_text(int i) const override { return type(i) == SQLITE_TEXT; }
  std::int64_t integer(int i) const override { return sqlite3_column_int64(s_, i); }
  std::string text(int i) const override {
    auto p = sqlite3_column_text(s_, i);
    return p ? std::string{reinterpret_cast<const char*>(p),
                           static_cast<std::size_t>(sqlite3_column_bytes(s_, i))}
             : std::string{};
  }
  byte_span blob(int i) const override {
    auto p = static_cast<const std::uint8_t*>(sqlite3_column_blob(s_, i));
    return p ? byte_span{p, static_cast<std::size_t>(sqlite3_column_bytes(s_, i))} : byte_span{};
  }
  json value(int i) const override {
    switch (type(i)) {
      case SQLITE_INTEGER: return integer(i);
      case SQLITE_FLOAT: return sqlite3_column_double(s_, i);
      case SQLITE_TEXT: return text(i);
      case SQLITE_BLOB: return json{{"hex", hex(blob(i), SIZE_MAX)}};
      default: return nullptr;
    }
  }

private:
  int type(int i) const { return sqlite3_column_type(s_, i); }
  sqlite3_stmt* s_;
};

/// The highest seq per id: the max stored seq, or what was deleted (never lower).
/// (A damaged seq that is not an integer does not count; verify reports it.) One
/// pass over the events, grouped: since version 4 they have no (pid, seq) index,
/// so a subquery per id would scan them once per id. The tool reads the events as
/// stored, not through their keys, so version 3 and 4 files read alike.
constexpr journal_dialect sqlite_dialect{
  .ids = "SELECT p.name, coalesce(c.n, 0), max(coalesce(c.hi, 0), p.deleted_to) "
         "FROM persistence_ids p LEFT JOIN (SELECT pid, count(*) AS n, "
         "max(CASE WHEN typeof(seq) = 'integer' THEN seq END) AS hi FROM events GROUP BY pid) c "
         "ON c.pid = p.id ORDER BY p.name",
  .ids_of_entity = "SELECT name FROM persistence_ids WHERE substr(name, instr(name, '|') + 1) = "
                   "?1 AND instr(name, '|') > 0 ORDER BY name",
  .tagged = "e.ordering IN (SELECT t.ordering FROM event_tags t JOIN tags g ON g.id = t.tag "
            "WHERE g.name = ?1)",
  .tag_counts = "SELECT g.name, count(*) FROM event_tags t JOIN tags g ON g.id = t.tag "
                "GROUP BY g.name ORDER BY g.name",
  .schema_version = "SELECT max(version) FROM schema_version",
  // journal_meta's highest_offset is the floor deletes leave; the newest event's
  // offset counts too (docs/persistence-storage.md, "Offsets"). A version 3 file
  // kept the whole highest offset there, which the same statement reads.
  .highest_offset = "SELECT max((SELECT value FROM journal_meta WHERE key = 'highest_offset'), "
                    "coalesce((SELECT max(ordering) FROM events), 0))",
};

class sqlite_source final : public journal_source {
public:
  /// Opens the file the way sqlite_journal::open found it readable (`opts` as it
  /// returned them: read_only, perhaps immutable).
  static expected<std::unique_ptr<journal_source>> open(const persistence::sqlite_options& opts) {
    std::unique_ptr<sqlite_source> d{new sqlite_source{opts.path}};
    auto name = opts.immutable ? persistence::immutable_uri(opts.path) : opts.path;
    if (sqlite3_open_v2(name.c_str(), &d->h_, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI, nullptr)
        != SQLITE_OK)
      return d->fail("cannot open");
    return std::unique_ptr<journal_source>{std::move(d)};
  }
  ~sqlite_source() override { sqlite3_close(h_); }

  const std::string& name() const override { return path_; }
  const journal_dialect& dialect() const override { return sqlite_dialect; }

  using journal_source::each;
  expected<void> each(const std::string& sql, const std::vector<sql_param>& params,
                      const row_fn& row) override {
    sqlite3_stmt* s = nullptr;
    if (sqlite3_prepare_v2(h_, sql.c_str(), -1, &s, nullptr) != SQLITE_OK)
      return fail("cannot query");
    for (std::size_t i = 0; i < params.size(); ++i) {
      auto index = static_cast<int>(i + 1);
      if (auto* x = std::get_if<std::int64_t>(&params[i]))
        sqlite3_bind_int64(s, index, *x);
      else
        sqlite3_bind_text(s, index, std::get<std::string>(params[i]).c_str(), -1,
                          SQLITE_TRANSIENT);
    }
    int rc;
    sqlite_row r{s};
    while ((rc = sqlite3_step(s)) == SQLITE_ROW)
      row(r);
    sqlite3_finalize(s);
    if (rc != SQLITE_DONE)
      return fail("cannot query");
    return {};
  }

  expected<void> location_stats(json& j) override {
    j["file"] = persistence::escape_invalid_utf8(path_);
    std::error_code ec;
    j["file_bytes"] = std::filesystem::file_size(path_, ec);
    auto wal = std::filesystem::file_size(path_ + "-wal", ec);
    j["wal_bytes"] = ec ? 0 : wal;
    return {};
  }

  expected<void> store_stats(json& j) override {
    if (auto version = scalar(sqlite_dialect.schema_version); !version) {
      return std::move(version).error();
    } else if (*version >= 4) {
      // The keys not merged yet (docs/persistence-storage.md, "The write path").
      auto recent = scalar("SELECT count(*) FROM recent_keys");
      if (!recent)
        return std::move(recent).error();
      j["recent_keys"] = *recent;
    }
    for (auto name : {"page_size", "page_count", "freelist_count", "auto_vacuum"}) {
      auto v = scalar(fmt::format("PRAGMA {}", name));
      if (!v)
        return std::move(v).error();
      j[name] = *v;
    }
    return each("PRAGMA journal_mode",
                [&](const journal_row& r) { j["journal_mode"] = r.text(0); });
  }

  /// SQLite's own integrity check, the metadata's types, and tag rows (tags are
  /// rows of `tags` here, referenced by id).
  expected<void> store_checks(verify_report& v) override {
    auto ok = each("PRAGMA quick_check", [&](const journal_row& r) {
      if (r.text(0) != "ok")
        v.problems.push_back("integrity: " + r.text(0));
    });
    if (!ok)
      return ok;
    ok = each("SELECT (SELECT typeof(value) FROM journal_meta WHERE key = 'highest_offset'), "
              "(SELECT typeof(value) FROM journal_meta WHERE key = 'journal_id'), "
              "(SELECT max(version) FROM schema_version)",
              [&](const journal_row& r) {
                if (r.text(0) != "integer")
                  v.problem("metadata: journal_meta 'highest_offset' is missing or not an "
                            "integer");
                if (r.integer(2) >= 2 && r.text(1) != "integer")
                  v.problem("metadata: journal_meta 'journal_id' is missing or not an integer");
              });
    if (!ok)
      return ok;
    if (auto keys = key_checks(v); !keys)
      return keys;
    return each(
      "SELECT t.tag, count(*), g.id IS NULL FROM event_tags t LEFT JOIN tags g ON g.id = t.tag "
      "WHERE g.id IS NULL OR NOT EXISTS (SELECT 1 FROM events e WHERE e.ordering = t.ordering) "
      "GROUP BY t.tag",
      [&](const journal_row& r) {
        v.problem("orphaned tag rows: {} event_tags row(s) of tag row {} point to {}",
                  r.integer(1), r.integer(0),
                  r.integer(2) != 0 ? "a missing tag" : "missing events");
      });
  }

private:
  explicit sqlite_source(std::string path) : path_(std::move(path)) {}

  /// Version 4: every event has exactly one key, in event_keys or recent_keys, and
  /// every key names an event of its id and seq. Recovery and highest_sequence_nr
  /// find events only through their keys.
  expected<void> key_checks(verify_report& v) {
    auto version = scalar(sqlite_dialect.schema_version);
    if (!version)
      return std::move(version).error();
    if (*version < 4)
      return {};
    auto ok = each(
      "SELECT p.name, e.seq, e.ordering, e.pid FROM events e LEFT JOIN persistence_ids p "
      "ON p.id = e.pid WHERE NOT EXISTS (SELECT 1 FROM event_keys k WHERE k.pid = e.pid "
      "AND k.seq = e.seq AND k.ordering = e.ordering) AND NOT EXISTS (SELECT 1 FROM "
      "recent_keys k WHERE k.pid = e.pid AND k.seq = e.seq AND k.ordering = e.ordering) "
      "ORDER BY e.ordering",
      [&](const journal_row& r) {
        v.problem("missing key: the event of {} seq {} (offset {}) has no key in event_keys or "
                  "recent_keys: recovery does not see it",
                  shown_id(r, 0, 3), r.shown(1), r.shown(2));
      });
    if (!ok)
      return ok;
    ok = each("SELECT p.name, k.seq, k.ordering, r.ordering, k.pid FROM event_keys k "
              "JOIN recent_keys r ON r.pid = k.pid AND r.seq = k.seq "
              "LEFT JOIN persistence_ids p ON p.id = k.pid ORDER BY k.pid, k.seq",
              [&](const journal_row& r) {
                v.problem("duplicate key: {} seq {} has a key in event_keys (offset {}) and one "
                          "in recent_keys (offset {})",
                          shown_id(r, 0, 4), r.shown(1), r.shown(2), r.shown(3));
              });
    if (!ok)
      return ok;
    return each(
      "SELECT p.name, k.seq, k.ordering, k.pid, k.keys, e.ordering IS NULL, e.pid, e.seq "
      "FROM (SELECT pid, seq, ordering, 'event_keys' AS keys FROM event_keys UNION ALL "
      "SELECT pid, seq, ordering, 'recent_keys' FROM recent_keys) k "
      "LEFT JOIN events e ON e.ordering = k.ordering LEFT JOIN persistence_ids p ON p.id = k.pid "
      "WHERE e.ordering IS NULL OR e.pid IS NOT k.pid OR e.seq IS NOT k.seq "
      "ORDER BY k.pid, k.seq",
      [&](const journal_row& r) {
        auto what = r.integer(5) != 0
                      ? std::string{"which holds no event"}
                      : fmt::format("whose event is persistence id row {} seq {}", r.shown(6),
                                    r.shown(7));
        v.problem("dangling key: {} seq {} (in {}) points to offset {}, {}", shown_id(r, 0, 3),
                  r.shown(1), r.text(4), r.shown(2), what);
      });
  }

  /// "'name'", or "persistence id row N" when the id's row is missing.
  static std::string shown_id(const journal_row& r, int name, int pid) {
    return r.is_null(name) ? fmt::format("persistence id row {}", r.shown(pid))
                           : fmt::format("'{}'", r.shown(name));
  }

  error fail(std::string_view what) const {
    return error{errc::journal_failure, fmt::format("journal '{}': {}: {}", path_, what,
                                                    h_ ? sqlite3_errmsg(h_) : "out of memory")};
  }

  std::string path_;
  sqlite3* h_ = nullptr;
};

} // namespace

expected<std::unique_ptr<journal_source>> open_sqlite_source(const std::string& path,
                                                             std::FILE* err) {
  // Checks that the file exists and is a troupe journal of a known version, and
  // how it can be read (immutable on read-only storage).
  persistence::sqlite_options opts;
  opts.path = path;
  opts.read_only = true;
  auto journal = persistence::sqlite_journal::open(opts);
  if (!journal)
    return std::move(journal).error();
  auto used = (*journal)->options();
  journal->reset();
  if (used.immutable)
    std::fprintf(err, "troupe journal: note: %s\n", persistence::immutable_mode_note(path).c_str());
  return sqlite_source::open(used);
}

} // namespace troupe::tools
