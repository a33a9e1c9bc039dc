// What the raw-SQLite baselines of the persistence benchmarks share: a connection
// with the journal's durability settings, prepared inserts of events into the
// journal's schema (version 4: the events, their keys into recent_keys, a lookup
// of each key in event_keys for conflicts, and the keys merged into event_keys in
// one sorted pass every 100,000 rows), and the SELECT that reads one id's events
// back through both key tables. A baseline does the storage work troupe does, with
// nothing on top (troupe merges one range of ids per transaction instead).
#pragma once

#include "harness.hpp"

#include "troupe/persistence/journal.hpp"
#include "troupe/persistence/sqlite_journal.hpp"

#include <fmt/core.h>
#include <sqlite3.h>

#include <cstdint>
#include <string>
#include <vector>

namespace troupe::bench {

/// A connection in WAL mode with synchronous=FULL (troupe's default durability).
/// Statements it prepared are finalized with it.
struct raw_db {
  explicit raw_db(const std::string& path) {
    if (sqlite3_open(path.c_str(), &db) != SQLITE_OK)
      die("cannot open " + path);
    exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;");
  }
  ~raw_db() {
    for (auto* s : statements)
      sqlite3_finalize(s);
    sqlite3_close(db);
  }
  raw_db(const raw_db&) = delete;
  raw_db& operator=(const raw_db&) = delete;
  void exec(const char* sql) {
    if (sqlite3_exec(db, sql, nullptr, nullptr, nullptr) != SQLITE_OK)
      die(fmt::format("'{}': {}", sql, sqlite3_errmsg(db)));
  }
  sqlite3_stmt* prepare(const char* sql) {
    sqlite3_stmt* s = nullptr;
    if (sqlite3_prepare_v2(db, sql, -1, &s, nullptr) != SQLITE_OK)
      die(fmt::format("'{}': {}", sql, sqlite3_errmsg(db)));
    statements.push_back(s);
    return s;
  }
  sqlite3* db = nullptr;
  std::vector<sqlite3_stmt*> statements;
};

/// Creates the journal schema at `path` the way troupe does, then closes it.
inline void create_journal_schema(const std::string& path) {
  persistence::sqlite_options o;
  o.path = path;
  o.create_if_missing = true;
  if (auto j = persistence::sqlite_journal::open(o); !j)
    die(j.error().to_string());
}

/// The columns of every event row the raw writer inserts.
struct raw_event_shape {
  std::string manifest;
  std::vector<std::uint8_t> payload;
  std::string writer;
};

/// Inserts events round-robin over `ids` (registered first, ids 1..n), in durable
/// transactions of a given size, into a journal whose schema troupe created, as the
/// SQLite backend writes them.
class raw_event_writer {
public:
  /// The keys move from recent_keys to event_keys, all at once, in the first
  /// transaction that ends at least this many rows after the last move.
  static constexpr std::int64_t merge_every_rows = 100'000;

  raw_event_writer(const std::string& path, const std::vector<std::string>& ids,
                   raw_event_shape shape)
    : db_{path}, shape_{std::move(shape)}, next_seq_(ids.size(), 1) {
    db_.exec("BEGIN");
    auto add = db_.prepare("INSERT INTO persistence_ids(id, name) VALUES(?1, ?2)");
    for (std::size_t i = 0; i < ids.size(); ++i) {
      sqlite3_bind_int64(add, 1, static_cast<std::int64_t>(i) + 1);
      sqlite3_bind_text(add, 2, ids[i].c_str(), -1, SQLITE_TRANSIENT);
      if (sqlite3_step(add) != SQLITE_DONE)
        die(sqlite3_errmsg(db_.db));
      sqlite3_reset(add);
    }
    db_.exec("COMMIT");
    insert_ = db_.prepare(
      "INSERT INTO events(ordering, pid, seq, manifest, version, payload, tags, writer, "
      "timestamp_ms) VALUES(?1, ?2, ?3, ?4, 1, ?5, NULL, ?6, ?7)");
    key_ = db_.prepare("INSERT INTO recent_keys(pid, seq, ordering) VALUES(?1, ?2, ?3)");
    taken_ = db_.prepare("SELECT 1 FROM event_keys WHERE pid = ?1 AND seq = ?2");
  }

  /// One durable transaction of `rows` inserts.
  void transaction(int rows) {
    db_.exec("BEGIN IMMEDIATE");
    auto ts = persistence::now_ms();
    for (int k = 0; k < rows; ++k) {
      auto i = cursor_++ % next_seq_.size();
      sqlite3_bind_int64(insert_, 1, ++ordering_);
      sqlite3_bind_int64(insert_, 2, static_cast<std::int64_t>(i) + 1);
      sqlite3_bind_int64(insert_, 3, next_seq_[i]++);
      sqlite3_bind_text(insert_, 4, shape_.manifest.c_str(), -1, SQLITE_STATIC);
      sqlite3_bind_blob(insert_, 5, shape_.payload.data(),
                        static_cast<int>(shape_.payload.size()), SQLITE_STATIC);
      sqlite3_bind_text(insert_, 6, shape_.writer.c_str(), -1, SQLITE_STATIC);
      sqlite3_bind_int64(insert_, 7, ts);
      if (sqlite3_step(insert_) != SQLITE_DONE)
        die(sqlite3_errmsg(db_.db));
      sqlite3_reset(insert_);
      sqlite3_bind_int64(taken_, 1, static_cast<std::int64_t>(i) + 1);
      sqlite3_bind_int64(taken_, 2, next_seq_[i] - 1);
      if (sqlite3_step(taken_) != SQLITE_DONE)
        die("raw writer: a seq is taken");
      sqlite3_reset(taken_);
      sqlite3_bind_int64(key_, 1, static_cast<std::int64_t>(i) + 1);
      sqlite3_bind_int64(key_, 2, next_seq_[i] - 1);
      sqlite3_bind_int64(key_, 3, ordering_);
      if (sqlite3_step(key_) != SQLITE_DONE)
        die(sqlite3_errmsg(db_.db));
      sqlite3_reset(key_);
    }
    if ((unmerged_ += rows) >= merge_every_rows) {
      db_.exec("INSERT INTO event_keys(pid, seq, ordering) SELECT pid, seq, ordering FROM "
               "recent_keys ORDER BY pid, seq; DELETE FROM recent_keys;");
      unmerged_ = 0;
    }
    db_.exec("COMMIT");
  }

private:
  raw_db db_;
  raw_event_shape shape_;
  sqlite3_stmt* insert_ = nullptr;
  sqlite3_stmt* key_ = nullptr;
  sqlite3_stmt* taken_ = nullptr;
  std::vector<std::int64_t> next_seq_;
  std::size_t cursor_ = 0;
  std::int64_t ordering_ = 0;
  std::int64_t unmerged_ = 0;
};

/// Reads one id's events in seq order with one SELECT (its keys from both key
/// tables, merged by seq, the events by rowid), touching every column a replay
/// returns.
class raw_event_reader {
public:
  struct totals {
    std::uint64_t rows = 0;
    std::size_t payload_bytes = 0;
  };

  explicit raw_event_reader(const std::string& path)
    : db_{path},
      select_{db_.prepare(
        "SELECT e.seq, e.manifest, e.version, e.payload, e.tags, e.writer, e.timestamp_ms, "
        "e.ordering, k.seq FROM event_keys k JOIN events e ON e.ordering = k.ordering "
        "AND e.pid = k.pid WHERE k.pid = (SELECT id FROM persistence_ids WHERE name = ?1) "
        "UNION ALL "
        "SELECT e.seq, e.manifest, e.version, e.payload, e.tags, e.writer, e.timestamp_ms, "
        "e.ordering, k.seq FROM recent_keys k JOIN events e ON e.ordering = k.ordering "
        "AND e.pid = k.pid WHERE k.pid = (SELECT id FROM persistence_ids WHERE name = ?1) "
        "ORDER BY 9")} {}

  totals read(const std::string& persistence_id) {
    totals t;
    sqlite3_bind_text(select_, 1, persistence_id.c_str(), -1, SQLITE_STATIC);
    while (sqlite3_step(select_) == SQLITE_ROW) {
      t.payload_bytes += static_cast<std::size_t>(sqlite3_column_bytes(select_, 3));
      (void) sqlite3_column_blob(select_, 3);
      (void) sqlite3_column_text(select_, 1);
      (void) sqlite3_column_text(select_, 5);
      (void) sqlite3_column_int64(select_, 0);
      (void) sqlite3_column_int64(select_, 2);
      (void) sqlite3_column_int64(select_, 6);
      (void) sqlite3_column_int64(select_, 7);
      ++t.rows;
    }
    sqlite3_reset(select_);
    return t;
  }

private:
  raw_db db_;
  sqlite3_stmt* select_;
};

} // namespace troupe::bench
