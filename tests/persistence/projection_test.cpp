// Offset store and projections (projection.hpp) on a real SQLite journal file.
#include "conformance_backends.hpp"

#include "troupe/persistence/projection.hpp"

#include "support/temp_dir.hpp"
#include "support/wait.hpp"

#include <doctest/doctest.h>
#include <sqlite3.h>

#include <atomic>
#include <map>
#include <mutex>

using namespace troupe;
using namespace troupe::persistence;
using namespace troupe::test;
using namespace std::chrono_literals;

namespace {

struct journal_file {
  temp_dir dir;
  sqlite_options opts = [this] {
    sqlite_options o;
    o.path = dir.file("journal.db");
    o.synchronous = sync_mode::off;  // about offsets and transactions, not durability
    o.create_if_missing = true;
    return o;
  }();
  std::shared_ptr<sqlite_journal> journal = *sqlite_journal::open(opts);

  /// Writes events 1..n of `id`, each tagged "proj".
  std::vector<event_record> write_events(const std::string& id, sequence_nr n) {
    std::vector<atomic_write> batch{make_write(id, 1, n, {"proj"})};
    for (auto& r : journal->write(std::span<const atomic_write>{batch}))
      REQUIRE(r);
    return *journal->events_by_tag("proj", 0, 1000);
  }

  std::int64_t count(const std::string& sql) {
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open(opts.path.c_str(), &db) == SQLITE_OK);
    sqlite3_stmt* s = nullptr;
    REQUIRE(sqlite3_prepare_v2(db, sql.c_str(), -1, &s, nullptr) == SQLITE_OK);
    std::int64_t n = -1;
    if (sqlite3_step(s) == SQLITE_ROW)
      n = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    sqlite3_close(db);
    return n;
  }
};

projection_options projection_options_for(std::size_t batch = 4) {
  projection_options o;
  o.name = "read-model";
  o.tag = "proj";
  o.batch_size = batch;
  o.refresh_interval = 1ms;
  return o;
}

/// The exactly-once handler used below: one row per event in a read-model table
/// (whose primary key would reject a second application of an event).
exactly_once_handler insert_row(std::atomic<int>& calls, sequence_nr fail_at = 0) {
  return [&calls, fail_at](projection_session& s, const event_record& e) -> expected<void> {
    calls++;
    if (auto ok = s.exec("CREATE TABLE IF NOT EXISTS seen(pid TEXT, seq INTEGER, "
                         "PRIMARY KEY(pid, seq))");
        !ok)
      return ok;
    if (auto ok = s.exec("INSERT INTO seen(pid, seq) VALUES(?1, ?2)",
                         {e.persistence_id, static_cast<std::int64_t>(e.seq)});
        !ok)
      return ok;
    if (e.seq == fail_at)
      return error{errc::internal, "the read model refused it"};
    return {};
  };
}

} // namespace

TEST_CASE("offset store: load and save per projection and key") {
  journal_file f;
  auto store = sqlite_offset_store::open(f.opts);
  REQUIRE(store);
  auto none = (*store)->load("p", "k");
  REQUIRE(none);
  CHECK_FALSE(none->has_value());
  REQUIRE((*store)->save("p", "k", 42));
  REQUIRE((*store)->save("p", "other", 7));
  REQUIRE((*store)->save("p", "k", 43));
  CHECK((*store)->load("p", "k")->value() == 43);
  CHECK((*store)->load("p", "other")->value() == 7);
  CHECK(f.count("SELECT count(*) FROM projection_offsets WHERE last_updated_ms > 0") == 2);
}

TEST_CASE("projection: exactly-once commits the handler's writes with the offset, a failure "
          "rolls both back and a restart resumes from the stored offset") {
  journal_file f;
  auto events = f.write_events("acct", 10);
  std::atomic<int> calls{0};
  // Batches of 4 events per transaction: 1-4 commit, 5-8 fail at 6 and roll back.
  auto p = run_exactly_once(f.journal, f.opts, projection_options_for(4), insert_row(calls, 6));
  REQUIRE(p);
  REQUIRE(wait_until([&] { return (*p)->failure().has_value(); }));
  CHECK_FALSE((*p)->running());
  CHECK((*p)->failure()->message().find("'acct' seq 6") != std::string::npos);
  CHECK((*p)->offset() == events[3].offset);
  (*p)->stop();
  CHECK(f.count("SELECT count(*) FROM seen") == 4);  // 5 and 6 were rolled back
  auto store = *sqlite_offset_store::open(f.opts);
  CHECK(store->load("read-model", "proj")->value() == events[3].offset);

  // Restart with a working handler: resumes after event 4, each event once.
  std::atomic<int> calls2{0};
  auto again = run_exactly_once(f.journal, f.opts, projection_options_for(4), insert_row(calls2));
  REQUIRE(again);
  REQUIRE(wait_until([&] { return (*again)->offset() == events.back().offset; }));
  (*again)->stop();
  CHECK(calls2.load() == 6);
  CHECK(f.count("SELECT count(*) FROM seen") == 10);
  CHECK(f.count("SELECT count(DISTINCT seq) FROM seen") == 10);
  CHECK(store->load("read-model", "proj")->value() == events.back().offset);
}

TEST_CASE("projection: exactly-once follows events written while it runs") {
  journal_file f;
  f.write_events("a", 3);
  std::atomic<int> calls{0};
  auto p = run_exactly_once(f.journal, f.opts, projection_options_for(2), insert_row(calls));
  REQUIRE(p);
  REQUIRE(wait_until([&] { return calls.load() == 3; }));
  std::vector<atomic_write> more{make_write("b", 1, 5, {"proj"})};
  for (auto& r : f.journal->write(std::span<const atomic_write>{more}))
    REQUIRE(r);
  REQUIRE(wait_until([&] { return f.count("SELECT count(*) FROM seen") == 8; }));
  CHECK((*p)->running());
  (*p)->stop();
}

TEST_CASE("projection: at-least-once saves offsets in batches and resumes from the saved one") {
  journal_file f;
  auto events = f.write_events("acct", 30);
  auto store = *sqlite_offset_store::open(f.opts);
  auto opts = projection_options_for(8);
  opts.save_every = 10;
  opts.save_interval = 1h;  // only the count triggers saves here
  std::mutex mtx;
  std::map<sequence_nr, int> handled;
  auto handler = [&](sequence_nr fail_at) {
    return [&, fail_at](const event_record& e) -> expected<void> {
      if (e.seq == fail_at)
        return error{errc::internal, "crash"};
      std::lock_guard<std::mutex> guard{mtx};
      handled[e.seq]++;
      return {};
    };
  };
  auto p = run_at_least_once(f.journal, store, opts, handler(25));
  REQUIRE(p);
  REQUIRE(wait_until([&] { return (*p)->failure().has_value(); }));
  (*p)->stop();  // a failed projection does not save its unsaved progress
  CHECK(store->load("read-model", "proj")->value() == events[19].offset);

  auto again = run_at_least_once(f.journal, store, opts, handler(0));
  REQUIRE(again);
  REQUIRE(wait_until([&] { return (*again)->offset() == events.back().offset; }));
  (*again)->stop();  // a stop saves the final offset
  CHECK(store->load("read-model", "proj")->value() == events.back().offset);
  std::lock_guard<std::mutex> guard{mtx};
  REQUIRE(handled.size() == 30);  // every event at least once
  for (auto& [seq, n] : handled)
    CHECK(n == (seq >= 21 && seq <= 24 ? 2 : 1));  // redelivered: after the saved offset
}

TEST_CASE("projection: a projection needs a name and a tag") {
  journal_file f;
  projection_options opts;
  auto p = run_at_least_once(f.journal, *sqlite_offset_store::open(f.opts), opts,
                             [](const event_record&) -> expected<void> { return {}; });
  REQUIRE_FALSE(p);
  CHECK(p.error().code() == errc::invalid_argument);
}
