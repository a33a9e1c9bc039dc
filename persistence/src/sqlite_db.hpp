// A thin RAII layer over the SQLite C API for the persistence layer (internal).
//
// connection: one sqlite3 handle, its cached prepared statements and a fair busy
// handler; errors name the file. statement: typed bind/column helpers. A
// connection is used by one thread at a time (opened with SQLITE_OPEN_NOMUTEX);
// the callers (sqlite_journal's writer mutex and reader pool) guarantee that.
#pragma once

#include "troupe/actors/codec.hpp"
#include "troupe/actors/config.hpp"
#include "troupe/actors/expected.hpp"

#include <sqlite3.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>

namespace troupe::persistence::sqlite {

class statement {
public:
  explicit statement(sqlite3_stmt* s) : s_(s) {}
  statement(const statement&) = delete;
  statement& operator=(const statement&) = delete;
  ~statement() { sqlite3_finalize(s_); }

  // Text and blobs are bound SQLITE_STATIC: the caller keeps them alive until the
  // statement is reset (use the `use` guard below).
  void bind(int i, std::int64_t x) { sqlite3_bind_int64(s_, i, x); }
  void bind(int i, std::uint64_t x) { sqlite3_bind_int64(s_, i, static_cast<std::int64_t>(x)); }
  void bind(int i, std::uint32_t x) { sqlite3_bind_int64(s_, i, x); }
  void bind(int i, std::string_view x) {
    sqlite3_bind_text(s_, i, x.data(), static_cast<int>(x.size()), SQLITE_STATIC);
  }
  void bind_blob(int i, byte_span x) {
    // A zero-length blob, not NULL, also for an empty payload.
    sqlite3_bind_blob(s_, i, x.empty() ? "" : static_cast<const void*>(x.data()),
                      static_cast<int>(x.size()), SQLITE_STATIC);
  }
  void bind_null(int i) { sqlite3_bind_null(s_, i); }

  /// SQLITE_ROW, SQLITE_DONE or an error code (extended codes are enabled).
  int step() { return sqlite3_step(s_); }
  void reset() {
    sqlite3_reset(s_);
    sqlite3_clear_bindings(s_);
  }
  /// Reset for a statement whose every parameter is bound before each step.
  void reset_keep_bindings() { sqlite3_reset(s_); }

  std::int64_t int64(int i) const { return sqlite3_column_int64(s_, i); }
  std::uint64_t uint64(int i) const { return static_cast<std::uint64_t>(sqlite3_column_int64(s_, i)); }
  bool is_null(int i) const { return sqlite3_column_type(s_, i) == SQLITE_NULL; }
  std::string_view text(int i) const {
    auto p = reinterpret_cast<const char*>(sqlite3_column_text(s_, i));
    return p ? std::string_view{p, static_cast<std::size_t>(sqlite3_column_bytes(s_, i))}
             : std::string_view{};
  }
  byte_span blob(int i) const {
    auto p = static_cast<const std::uint8_t*>(sqlite3_column_blob(s_, i));
    return p ? byte_span{p, static_cast<std::size_t>(sqlite3_column_bytes(s_, i))} : byte_span{};
  }

  sqlite3_stmt* handle() const noexcept { return s_; }

private:
  sqlite3_stmt* s_;
};

/// Resets a statement when leaving the scope, also on early returns, so that a
/// cached statement never holds a read transaction open or dangling bindings.
class use {
public:
  explicit use(statement& s) : s_(s) {}
  ~use() { s_.reset(); }
  use(const use&) = delete;
  use& operator=(const use&) = delete;
  statement* operator->() { return &s_; }
  statement& operator*() { return s_; }

private:
  statement& s_;
};

class connection {
public:
  /// Opens `path` with SQLite `flags` (SQLITE_OPEN_NOMUTEX is added), with a busy
  /// handler that retries for `busy_timeout`. `immutable` opens it through a URI
  /// with immutable=1 (read-only media: no locks, no -shm, the -wal is not read).
  /// Errors name the path.
  static expected<std::unique_ptr<connection>> open(const std::string& path, int flags,
                                                    duration busy_timeout,
                                                    bool immutable = false);
  ~connection();
  connection(const connection&) = delete;
  connection& operator=(const connection&) = delete;

  sqlite3* handle() const noexcept { return db_; }
  const std::string& path() const noexcept { return path_; }

  /// The statement for `sql`, prepared on first use. `sql` must be a string with
  /// static storage (the cache is keyed by its address).
  expected<statement*> prepare(const char* sql);

  /// Runs one or more statements without results.
  expected<void> exec(const char* sql);
  /// Runs a single-value query (e.g. a PRAGMA) and returns its first column as text.
  expected<std::string> query_text(const char* sql);

  /// "journal '<path>': <what>: <sqlite message> (<code name>)" as `code`.
  error fail(errc code, std::string_view what) const;
  /// Like fail(), choosing the code from the last SQLite result: journal_failure
  /// for a full disk or I/O error, io_error for read-only/cannot open, ...
  error fail_from(int rc, std::string_view what) const;

  /// True while a transaction is open.
  bool in_transaction() const { return sqlite3_get_autocommit(db_) == 0; }
  /// Rolls back an open transaction, if any (after an error).
  void rollback_if_open();

private:
  connection(sqlite3* db, std::string path, duration busy_timeout);
  static int on_busy(void* self, int attempts);

  sqlite3* db_;
  std::string path_;
  std::chrono::nanoseconds busy_timeout_;
  std::chrono::steady_clock::time_point busy_since_;
  std::unordered_map<const char*, std::unique_ptr<statement>> cache_;
};

} // namespace troupe::persistence::sqlite
