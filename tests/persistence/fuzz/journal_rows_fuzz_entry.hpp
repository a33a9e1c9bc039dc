// The fuzz entry point for every reader of journal rows: the SQLite backend
// (recovery's reads, queries), replay_main (typed decode and fold, `replay
// --verify`) and `troupe journal list|events|verify|stats`. Used by the libFuzzer
// target (journal_rows_fuzz.cpp, `make fuzz-journal`, clang) and by the corpus
// replay test (journal_fuzz_corpus_test.cpp, part of ctest with the normal
// compiler and under ASan/UBSan).
//
// An input is a list of SQLite values, each `type byte, length byte, bytes`
// (type % 5: 0 integer from up to 8 little-endian bytes, 1 text, 2 blob, 3 null,
// 4 real); a missing value is NULL. They are written, bypassing troupe's
// validation, as a damaged or hostile file would hold them:
//   schema_version, journal_meta 'highest_offset', journal_meta 'journal_id',
//   one persistence id row (name, deleted_to),
//   one snapshot (seq, manifest, version, payload),
//   then event rows until the input ends (pid row, seq, manifest, version, payload,
//   tags, writer, timestamp) and a tag row per event tagged "t".
// Rows SQLite refuses (NOT NULL, UNIQUE) are skipped. Then every reader runs over
// the file. Any crash, sanitizer report, abort or uncaught exception is a finding;
// errors (returned as values) are the expected outcome of bad rows.
#pragma once

#include "journal_command.hpp"

#include "troupe/persistence/detail/entity_model.hpp"
#include "troupe/persistence/json_text.hpp"
#include "troupe/persistence/replay.hpp"
#include "troupe/persistence/replay_tool.hpp"
#include "troupe/persistence/sqlite_journal.hpp"

#include <nlohmann/json.hpp>
#include <sqlite3.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <sstream>
#include <string>
#include <variant>
#include <vector>

namespace troupe::test {

namespace fuzz_rows {

using persistence::done;

// The entity replay_main folds: its manifests are the ones the seeds use.
struct text_event {
  std::string s;
};
struct number_event {
  std::int64_t n = 0;
};
struct list_event {
  std::vector<std::string> items;
};
struct noop {
  using reply = done;
};
struct state {
  std::string last;
  std::int64_t total = 0;
  std::vector<std::string> items;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(text_event, s)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(number_event, n)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(list_event, items)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(state, last, total, items)

struct entity {
  static constexpr std::string_view entity_type = "acct";
  using command = std::variant<noop>;
  using event = std::variant<text_event, number_event, list_event>;
  using state = fuzz_rows::state;
  using effect = persistence::effect<entity>;
  static effect on_command(const state&, const noop&) { return effect::none(); }
  static state on_event(state s, const text_event& e) {
    s.last = e.s;
    return s;
  }
  static state on_event(state s, const number_event& e) {
    // Stored numbers are arbitrary: add without signed overflow (UB).
    s.total = static_cast<std::int64_t>(static_cast<std::uint64_t>(s.total)
                                        + static_cast<std::uint64_t>(e.n));
    return s;
  }
  static state on_event(state s, const list_event& e) {
    s.items.insert(s.items.end(), e.items.begin(), e.items.end());
    if (s.items.size() > 64)
      s.items.resize(64);
    return s;
  }
};

inline std::shared_ptr<codec_registry> codec() {
  static auto c = [] {
    auto r = std::make_shared<codec_registry>();
    (void) r->add<text_event>("fuzz.text");
    (void) r->add<number_event>("fuzz.number");
    (void) r->add<list_event>("fuzz.list");
    (void) r->add<state>("fuzz.state");
    return r;
  }();
  return c;
}

/// Reads the input as SQLite values.
class cursor {
public:
  cursor(const std::uint8_t* data, std::size_t size) : p_(data), end_(data + size) {}
  bool done() const { return p_ >= end_; }

  /// Binds the next value to parameter `i` of `s`.
  void bind_next(sqlite3_stmt* s, int i) {
    if (end_ - p_ < 2) {
      p_ = end_;
      sqlite3_bind_null(s, i);
      return;
    }
    auto type = p_[0] % 5;
    auto len = std::min<std::size_t>(p_[1], static_cast<std::size_t>(end_ - p_ - 2));
    const auto* bytes = p_ + 2;
    p_ += 2 + len;
    switch (type) {
      case 0: sqlite3_bind_int64(s, i, integer(bytes, len)); break;
      case 1:
        sqlite3_bind_text(s, i, reinterpret_cast<const char*>(bytes), static_cast<int>(len),
                          SQLITE_TRANSIENT);
        break;
      case 2: sqlite3_bind_blob(s, i, len ? bytes : p_, static_cast<int>(len), SQLITE_TRANSIENT); break;
      case 3: sqlite3_bind_null(s, i); break;
      default: {
        double d = 0;
        std::memcpy(&d, bytes, std::min<std::size_t>(len, sizeof d));
        sqlite3_bind_double(s, i, d);
      }
    }
  }

private:
  static std::int64_t integer(const std::uint8_t* b, std::size_t len) {
    std::uint64_t x = 0;
    for (std::size_t i = 0; i < len && i < 8; ++i)
      x |= std::uint64_t{b[i]} << (8 * i);
    return static_cast<std::int64_t>(x);
  }
  const std::uint8_t* p_;
  const std::uint8_t* end_;
};

/// A journal file made once per process, emptied and refilled per input.
class scratch_journal {
public:
  scratch_journal() {
    dir_ = std::filesystem::temp_directory_path()
           / ("troupe-fuzz-rows-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
    path_ = (dir_ / "j.db").string();
    persistence::sqlite_options opts;
    opts.path = path_;
    opts.create_if_missing = true;
    if (!persistence::sqlite_journal::open(opts))
      std::abort();  // the fuzzer's own setup
    if (sqlite3_open(path_.c_str(), &db_) != SQLITE_OK)
      std::abort();
    // Hostile rows, written as a damaged file would hold them: without the
    // triggers that keep persistence id rows.
    sqlite3_exec(db_,
                 "PRAGMA synchronous=OFF; DROP TRIGGER persistence_ids_kept; "
                 "DROP TRIGGER persistence_ids_fixed",
                 nullptr, nullptr, nullptr);
    devnull_ = std::fopen("/dev/null", "w");
  }
  ~scratch_journal() {
    sqlite3_close(db_);
    if (devnull_)
      std::fclose(devnull_);
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  const std::string& path() const { return path_; }
  std::FILE* devnull() const { return devnull_; }

  void exec(const char* sql) { sqlite3_exec(db_, sql, nullptr, nullptr, nullptr); }

  /// Runs `sql` once with the next `params` values of the input; refusals are fine.
  void insert(const char* sql, int params, cursor& in) {
    sqlite3_stmt* s = nullptr;
    if (sqlite3_prepare_v2(db_, sql, -1, &s, nullptr) != SQLITE_OK)
      return;
    for (int i = 1; i <= params; ++i)
      in.bind_next(s, i);
    sqlite3_step(s);
    sqlite3_finalize(s);
  }

private:
  std::filesystem::path dir_;
  std::string path_;
  sqlite3* db_ = nullptr;
  std::FILE* devnull_ = nullptr;
};

inline void fill(scratch_journal& j, cursor& in) {
  j.exec("BEGIN; DELETE FROM events; DELETE FROM event_keys; DELETE FROM recent_keys; "
         "DELETE FROM event_tags; DELETE FROM tags; "
         "DELETE FROM snapshots; DELETE FROM persistence_ids; DELETE FROM schema_version;"
         "DELETE FROM journal_meta");
  j.insert("INSERT INTO schema_version VALUES(?1)", 1, in);
  j.insert("INSERT INTO journal_meta VALUES('highest_offset', ?1)", 1, in);
  j.insert("INSERT INTO journal_meta VALUES('journal_id', ?1)", 1, in);
  j.insert("INSERT INTO persistence_ids(id, name, deleted_to) VALUES(1, ?1, ?2)", 2, in);
  j.insert("INSERT INTO snapshots VALUES(1, ?1, 0, ?2, ?3, ?4)", 4, in);
  j.exec("INSERT OR IGNORE INTO tags(id, name) VALUES(1, 't')");
  for (int row = 0; row < 16 && !in.done(); ++row) {
    j.insert("INSERT INTO events(pid, seq, manifest, version, payload, tags, writer, "
             "timestamp_ms) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
             8, in);
    j.exec("INSERT OR IGNORE INTO event_tags SELECT 1, max(ordering) FROM events");
    // Its key, as the journal writes it (a row of a seq already keyed has none).
    j.exec("INSERT OR IGNORE INTO event_keys SELECT pid, seq, ordering FROM events "
           "WHERE ordering = (SELECT max(ordering) FROM events)");
  }
  j.exec("COMMIT");
}

/// The persistence ids the readers look at: the stored one and a fixed one.
inline std::vector<std::string> ids_of(persistence::journal_backend& j) {
  std::vector<std::string> ids{"acct|a"};
  if (auto page = j.persistence_ids("", 16))
    ids.insert(ids.end(), page->begin(), page->end());
  return ids;
}

inline void read_back(const std::string& path) {
  persistence::sqlite_options opts;
  opts.path = path;
  opts.read_only = true;
  auto j = persistence::sqlite_journal::open(opts);
  if (!j)
    return;  // damaged metadata: an error, as required
  auto& b = **j;
  for (auto& id : ids_of(b)) {
    (void) b.highest_sequence_nr(id);
    if (auto events = b.read_events(id, 1, persistence::max_sequence_nr, 64))
      for (auto& e : *events)
        (void) persistence::dump_json(nlohmann::json{{"m", e.manifest}, {"w", e.writer}});
    (void) b.load(id, persistence::snapshot_criteria::latest());
    (void) persistence::for_each_event(b, id, [](const persistence::event_record&) {
      return expected<void>{};
    });
  }
  (void) b.events_by_tag("t", 0, 64);
  (void) b.highest_offset();
}

inline void replay(const std::string& path, std::vector<std::string> args) {
  args.insert(args.begin(), "replay");
  args.insert(args.end(), {"--db", path});
  std::vector<const char*> argv;
  for (auto& a : args)
    argv.push_back(a.c_str());
  std::ostringstream out, err;
  (void) persistence::replay_main<entity>(static_cast<int>(argv.size()), argv.data(), codec(),
                                          out, err);
}

} // namespace fuzz_rows

/// One input; always returns 0 (libFuzzer's convention).
inline int fuzz_journal_rows_one_input(const std::uint8_t* data, std::size_t size) {
  static fuzz_rows::scratch_journal journal;
  fuzz_rows::cursor in{data, size};
  fuzz_rows::fill(journal, in);
  auto& path = journal.path();
  fuzz_rows::read_back(path);
  fuzz_rows::replay(path, {"acct|a"});
  fuzz_rows::replay(path, {"--verify"});
  for (auto command : {"list", "events", "verify", "stats"})
    (void) tools::journal_command({command, "--db", path}, journal.devnull(), journal.devnull());
  return 0;
}

} // namespace troupe::test
