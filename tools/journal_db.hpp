// Read-only access to a troupe SQLite journal for the `troupe journal` commands,
// with errors as values and faithful renderings of whatever a row holds (the file
// may be damaged: any column can hold any SQLite type and any bytes).
#pragma once

#include "troupe/actors/codec.hpp"
#include "troupe/actors/expected.hpp"
#include "troupe/persistence/json_text.hpp"
#include "troupe/persistence/sqlite_journal.hpp"

#include <fmt/core.h>
#include <nlohmann/json.hpp>
#include <sqlite3.h>

#include <cstdint>
#include <memory>
#include <string>
#include <variant>
#include <vector>

namespace troupe::tools {

using json = nlohmann::ordered_json;
using sql_param = std::variant<std::int64_t, std::string>;

class journal_db {
public:
  /// Opens the file the way sqlite_journal::open found it readable (`opts` as it
  /// returned them: read_only, perhaps immutable).
  static expected<std::unique_ptr<journal_db>> open(const persistence::sqlite_options& opts) {
    std::unique_ptr<journal_db> d{new journal_db{opts.path}};
    auto name = opts.immutable ? persistence::immutable_uri(opts.path) : opts.path;
    if (sqlite3_open_v2(name.c_str(), &d->h_, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI, nullptr)
        != SQLITE_OK)
      return d->fail("cannot open");
    return d;
  }
  ~journal_db() { sqlite3_close(h_); }
  journal_db(const journal_db&) = delete;
  journal_db& operator=(const journal_db&) = delete;

  const std::string& path() const { return path_; }

  /// Runs `sql` with `params` (?1, ?2, ...) and calls `row` for every result row.
  template <class Row>
  expected<void> each(const char* sql, const std::vector<sql_param>& params, Row row) {
    sqlite3_stmt* s = nullptr;
    if (sqlite3_prepare_v2(h_, sql, -1, &s, nullptr) != SQLITE_OK)
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
    while ((rc = sqlite3_step(s)) == SQLITE_ROW)
      row(s);
    sqlite3_finalize(s);
    if (rc != SQLITE_DONE)
      return fail("cannot query");
    return {};
  }
  template <class Row>
  expected<void> each(const char* sql, Row row) {
    return each(sql, {}, std::move(row));
  }

  /// The first column of the first row as an integer (0 if none or not a number).
  expected<std::int64_t> scalar(const char* sql) {
    std::int64_t v = 0;
    if (auto ok = each(sql, [&](sqlite3_stmt* s) { v = sqlite3_column_int64(s, 0); }); !ok)
      return std::move(ok).error();
    return v;
  }
  expected<std::string> text(const char* sql) {
    std::string v;
    if (auto ok = each(sql, [&](sqlite3_stmt* s) { v = column_text(s, 0); }); !ok)
      return std::move(ok).error();
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
  static bool is_integer(sqlite3_stmt* s, int i) {
    return sqlite3_column_type(s, i) == SQLITE_INTEGER;
  }
  /// A column as stored: a number, a string (rendered faithfully by dump_json),
  /// {"hex": "..."} for a blob, or null.
  static json column_json(sqlite3_stmt* s, int i) {
    switch (sqlite3_column_type(s, i)) {
      case SQLITE_INTEGER: return sqlite3_column_int64(s, i);
      case SQLITE_FLOAT: return sqlite3_column_double(s, i);
      case SQLITE_TEXT: return column_text(s, i);
      case SQLITE_BLOB: return json{{"hex", hex(column_blob(s, i), SIZE_MAX)}};
      default: return nullptr;
    }
  }
  /// A column for a message: its text, with invalid UTF-8 escaped.
  static std::string shown(sqlite3_stmt* s, int i) {
    if (sqlite3_column_type(s, i) == SQLITE_NULL)
      return "NULL";
    return persistence::escape_invalid_utf8(column_text(s, i));
  }

  static std::string hex(byte_span b, std::size_t max = 32) {
    std::string out;
    for (std::size_t i = 0; i < b.size() && i < max; ++i)
      out += fmt::format("{:02x}", b[i]);
    if (b.size() > max)
      out += "...";
    return out;
  }

private:
  explicit journal_db(std::string path) : path_(std::move(path)) {}

  error fail(std::string_view what) const {
    return error{errc::journal_failure, fmt::format("journal '{}': {}: {}", path_, what,
                                                    h_ ? sqlite3_errmsg(h_) : "out of memory")};
  }

  std::string path_;
  sqlite3* h_ = nullptr;
};

/// The highest seq per id: the max stored seq, or what was deleted (never lower).
/// (A damaged seq that is not an integer does not count; verify reports it.)
inline constexpr const char* sql_ids =
  "SELECT p.name, (SELECT count(*) FROM events e WHERE e.pid = p.id), "
  "max(coalesce((SELECT max(seq) FROM events e WHERE e.pid = p.id AND typeof(e.seq) = "
  "'integer'), 0), p.deleted_to) FROM persistence_ids p ORDER BY p.name";

/// `verify`: prints each problem and a summary to `out`; 0 ok, 1 problems found.
expected<int> verify_journal(journal_db& d, std::FILE* out);

} // namespace troupe::tools
