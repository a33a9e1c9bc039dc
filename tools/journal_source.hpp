// What the `troupe journal` commands read, whatever stores the journal: a SQLite
// file (journal_sqlite.cpp) or a PostgreSQL schema (journal_pg.cpp). Both hold the
// same tables; the commands (journal_command.cpp) and verify (journal_verify.cpp)
// are written once against this interface, so their output and exit codes are the
// same on both. A source is read-only: it never creates, migrates or writes.
#pragma once

#include "troupe/actors/codec.hpp"
#include "troupe/actors/expected.hpp"
#include "troupe/persistence/json_text.hpp"

#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <variant>
#include <vector>

namespace troupe::tools {

using json = nlohmann::ordered_json;
using sql_param = std::variant<std::int64_t, std::string>;

/// One result row. A damaged SQLite file may hold any type and any bytes in any
/// column; PostgreSQL's columns are typed. Accessors never fail.
class journal_row {
public:
  virtual ~journal_row() = default;
  virtual bool is_null(int i) const = 0;
  virtual bool is_integer(int i) const = 0;
  virtual bool is_text(int i) const = 0;
  /// The column as an integer (0 when it is none).
  virtual std::int64_t integer(int i) const = 0;
  /// The column's text (a number in decimal), its bytes as stored.
  virtual std::string text(int i) const = 0;
  virtual byte_span blob(int i) const = 0;
  /// The column as stored: a number, a string, {"hex": "..."} for bytes, or null.
  virtual json value(int i) const = 0;
  /// The column for a message: its text with invalid UTF-8 escaped, or "NULL".
  std::string shown(int i) const {
    return is_null(i) ? std::string{"NULL"} : persistence::escape_invalid_utf8(text(i));
  }
};

using row_fn = std::function<void(const journal_row&)>;

/// The statements whose SQL differs between the stores. Parameters are written
/// ?1, ?2, ... in every statement (the PostgreSQL source passes them as $1, $2).
struct journal_dialect {
  /// name, event count, highest seq (the max stored integer seq or deleted_to),
  /// for every persistence id row, by name.
  const char* ids;
  /// The persistence ids "TYPE|?1", by name.
  const char* ids_of_entity;
  /// A condition on events `e`: tagged ?1.
  const char* tagged;
  /// tag name, number of event_tags rows, by name.
  const char* tag_counts;
  /// The schema version.
  const char* schema_version;
  /// The highest offset used (by a stored or a deleted event).
  const char* highest_offset;
  /// The number of events above the recorded highest offset (a new event could
  /// reuse one), or null where the store records no such bound.
  const char* offsets_beyond_highest = nullptr;
};

class verify_report;

class journal_source {
public:
  virtual ~journal_source() = default;

  /// The journal in messages: its path, or its server (never the password).
  virtual const std::string& name() const = 0;
  virtual const journal_dialect& dialect() const = 0;
  /// Runs `sql` with `params` and calls `row` for each result row.
  virtual expected<void> each(const std::string& sql, const std::vector<sql_param>& params,
                              const row_fn& row) = 0;
  expected<void> each(const std::string& sql, const row_fn& row) { return each(sql, {}, row); }
  /// The first column of the first row as an integer (0 for none).
  expected<std::int64_t> scalar(const std::string& sql) {
    std::int64_t v = 0;
    if (auto ok = each(sql, [&](const journal_row& r) { v = r.integer(0); }); !ok)
      return std::move(ok).error();
    return v;
  }

  /// `stats`: where the journal is (first in the output) and what only this store
  /// has (last: page sizes and WAL, or the server's settings and table sizes).
  virtual expected<void> location_stats(json& j) = 0;
  virtual expected<void> store_stats(json& j) = 0;
  /// `verify`: the checks only this store needs (its integrity check, its own
  /// metadata and tag tables), run first.
  virtual expected<void> store_checks(verify_report& report) = 0;
};

/// Opens a SQLite journal read-only (perhaps in immutable mode, noted on `err`).
expected<std::unique_ptr<journal_source>> open_sqlite_source(const std::string& path,
                                                             std::FILE* err);
/// Connects to a PostgreSQL journal read-only: refuses a schema that holds no troupe
/// journal or a newer one, and reads in one read-only transaction.
expected<std::unique_ptr<journal_source>> open_postgres_source(const std::string& uri);

/// Bytes as lowercase hex, at most `max` of them ("..." after).
inline std::string hex(byte_span b, std::size_t max = 32) {
  std::string out;
  for (std::size_t i = 0; i < b.size() && i < max; ++i)
    out += fmt::format("{:02x}", b[i]);
  if (b.size() > max)
    out += "...";
  return out;
}

/// `verify`: prints each problem and a summary to `out`; 0 ok, 1 problems found.
expected<int> verify_journal(journal_source& s, std::FILE* out);

} // namespace troupe::tools
