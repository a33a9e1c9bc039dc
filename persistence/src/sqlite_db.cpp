#include "sqlite_db.hpp"

#include "troupe/persistence/sqlite_journal.hpp"

#include <fmt/core.h>

#include <thread>

namespace troupe::persistence::sqlite {

expected<std::unique_ptr<connection>> connection::open(const std::string& path, int flags,
                                                       duration busy_timeout, bool immutable) {
  sqlite3* db = nullptr;
  auto name = immutable ? persistence::immutable_uri(path) : path;
  auto rc = sqlite3_open_v2(name.c_str(), &db,
                            flags | SQLITE_OPEN_NOMUTEX | (immutable ? SQLITE_OPEN_URI : 0),
                            nullptr);
  std::unique_ptr<connection> c{new connection(db, path, busy_timeout)};
  if (rc != SQLITE_OK)
    return c->fail(rc == SQLITE_CANTOPEN ? errc::io_error : errc::journal_failure, "cannot open");
  sqlite3_extended_result_codes(db, 1);
  sqlite3_busy_handler(db, &connection::on_busy, c.get());
  return c;
}

connection::connection(sqlite3* db, std::string path, duration busy_timeout)
  : db_(db), path_(std::move(path)), busy_timeout_(busy_timeout) {
}

connection::~connection() {
  cache_.clear();  // statements before the handle
  sqlite3_close_v2(db_);
}

int connection::on_busy(void* self, int attempts) {
  // Another connection (often another process) holds the write lock. SQLite's own
  // busy_timeout sleeps up to 100 ms between attempts, which lets a busy writer
  // starve the others; retrying every millisecond is fairer.
  auto c = static_cast<connection*>(self);
  auto now = std::chrono::steady_clock::now();
  if (attempts == 0)
    c->busy_since_ = now;
  if (now - c->busy_since_ >= c->busy_timeout_)
    return 0;
  if (attempts < 10)
    std::this_thread::yield();
  else
    std::this_thread::sleep_for(std::chrono::milliseconds{1});
  return 1;
}

expected<statement*> connection::prepare(const char* sql) {
  auto i = cache_.find(sql);
  if (i != cache_.end())
    return i->second.get();
  sqlite3_stmt* s = nullptr;
  auto rc = sqlite3_prepare_v3(db_, sql, -1, SQLITE_PREPARE_PERSISTENT, &s, nullptr);
  if (rc != SQLITE_OK)
    return fail_from(rc, fmt::format("cannot prepare '{}'", sql));
  auto& slot = cache_[sql];
  slot = std::make_unique<statement>(s);
  return slot.get();
}

expected<void> connection::exec(const char* sql) {
  auto rc = sqlite3_exec(db_, sql, nullptr, nullptr, nullptr);
  if (rc != SQLITE_OK)
    return fail_from(rc, fmt::format("'{}' failed", sql));
  return {};
}

expected<std::string> connection::query_text(const char* sql) {
  auto s = prepare(sql);
  if (!s)
    return std::move(s).error();
  use q{**s};
  auto rc = q->step();
  if (rc == SQLITE_ROW)
    return std::string{q->text(0)};
  if (rc == SQLITE_DONE)
    return std::string{};
  return fail_from(rc, fmt::format("'{}' failed", sql));
}

error connection::fail(errc code, std::string_view what) const {
  auto rc = db_ ? sqlite3_extended_errcode(db_) : SQLITE_NOMEM;
  return error{code, fmt::format("journal '{}': {}: {} ({})", path_, what,
                                 db_ ? sqlite3_errmsg(db_) : "out of memory", sqlite3_errstr(rc))};
}

error connection::fail_from(int rc, std::string_view what) const {
  switch (rc & 0xff) {
    case SQLITE_READONLY:
    case SQLITE_CANTOPEN:
    case SQLITE_PERM:
      return fail(errc::io_error, what);
    case SQLITE_NOTADB:
      return error{errc::invalid_config,
                   fmt::format("journal '{}': the file is not a SQLite database, so not a troupe "
                               "journal ({})",
                               path_, what)};
    case SQLITE_CONSTRAINT:
      return fail(errc::journal_rejected, what);
    default:
      return fail(errc::journal_failure, what);
  }
}

void connection::rollback_if_open() {
  if (in_transaction())
    sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
}

} // namespace troupe::persistence::sqlite
