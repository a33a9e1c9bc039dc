// SQL on a journal file through a plain SQLite connection of its own, for tests that
// inspect or damage what troupe stored (open it while no node writes the file, or
// rely on SQLite's locking).
#pragma once

#include <doctest/doctest.h>
#include <sqlite3.h>

#include <string>

namespace troupe::test {

/// Runs `sql` (one or more statements); fails the test on an error.
inline void raw_exec(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
  char* err = nullptr;
  auto rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
  INFO(sql);
  INFO((err ? err : ""));
  sqlite3_free(err);
  sqlite3_close(db);
  REQUIRE(rc == SQLITE_OK);
}

/// The first column of the first row of `sql` as text ("" when there is none).
inline std::string raw_query(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
  sqlite3_stmt* s = nullptr;
  REQUIRE(sqlite3_prepare_v2(db, sql.c_str(), -1, &s, nullptr) == SQLITE_OK);
  std::string result;
  if (sqlite3_step(s) == SQLITE_ROW && sqlite3_column_text(s, 0))
    result = reinterpret_cast<const char*>(sqlite3_column_text(s, 0));
  sqlite3_finalize(s);
  sqlite3_close(db);
  return result;
}

} // namespace troupe::test
