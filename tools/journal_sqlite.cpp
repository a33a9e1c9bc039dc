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
/// (A damaged seq that is not an integer does not count; verify reports it.)
constexpr journal_dialect sqlite_dialect{
  .ids = "SELECT p.name, (SELECT count(*) FROM events e WHERE e.pid = p.id), "
         "max(coalesce((SELECT max(seq) FROM events e WHERE e.pid = p.id AND typeof(e.seq) = "
         "'integer'), 0), p.deleted_to) FROM persistence_ids p ORDER BY p.name",
  .ids_of_entity = "SELECT name FROM persistence_ids WHERE substr(name, instr(name, '|') + 1) = "
                   "?1 AND instr(name, '|') > 0 ORDER BY name",
  .tagged = "e.ordering IN (SELECT t.ordering FROM event_tags t JOIN tags g ON g.id = t.tag "
            "WHERE g.name = ?1)",
  .tag_counts = "SELECT g.name, count(*) FROM event_tags t JOIN tags g ON g.id = t.tag "
                "GROUP BY g.name ORDER BY g.name",
  .schema_version = "SELECT max(version) FROM schema_version",
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
