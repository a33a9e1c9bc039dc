// The SQLite journal's layout (schema version 4): keys in recent_keys and
// event_keys, the incremental merge and its bound, conflicts found in either
// table (also for another connection's writes), and the migration of older files.
#include "conformance_backends.hpp"
#include "raw_sql.hpp"
#include "sqlite_v3_journal.hpp"
#include "troupe_tool.hpp"

#include "support/temp_dir.hpp"

#include <doctest/doctest.h>

using namespace troupe;
using namespace troupe::persistence;
using namespace troupe::test;

namespace {

/// merge_ranges in persistence/src/sqlite_merge.cpp: one round of merges over all
/// ids takes this many event-writing transactions.
constexpr int merge_ranges = 32;

sqlite_options unsynced_options(const std::string& path) {
  sqlite_options o;
  o.path = path;
  o.create_if_missing = true;
  o.synchronous = sync_mode::off;  // contracts, not durability
  return o;
}

std::int64_t count(const std::string& path, const std::string& sql) {
  return std::stoll(raw_query(path, sql));
}

std::vector<sequence_nr> stored_seqs(journal_backend& j, const std::string& id) {
  auto events = j.read_events(id, 1, max_sequence_nr, 1000);
  REQUIRE(events);
  std::vector<sequence_nr> seqs;
  for (auto& e : *events)
    seqs.push_back(e.seq);
  return seqs;
}

std::vector<sequence_nr> range(sequence_nr from, sequence_nr to) {
  std::vector<sequence_nr> seqs;
  for (auto s = from; s <= to; ++s)
    seqs.push_back(s);
  return seqs;
}

} // namespace

TEST_CASE("sqlite layout: recent_keys holds at most the keys of the last merge_ranges + 1 "
          "batches, and every event stays readable") {
  temp_dir dir;
  auto path = dir.file("journal.db");
  auto j = sqlite_journal::open(unsynced_options(path));
  REQUIRE(j);
  constexpr int ids = 300;
  constexpr int batches = 3 * merge_ranges;
  std::vector<offset_type> last_offset;  // after each batch
  std::vector<sequence_nr> next(ids, 1);
  for (int b = 0; b < batches; ++b) {
    std::vector<atomic_write> batch;
    for (int i = 0; i < ids; i += 1 + b % 3) {  // batches of varying size
      batch.push_back(make_write(id_of("id-", i), next[i], next[i] + b % 2));
      next[i] += 1 + b % 2;
    }
    for (auto& r : write_all(**j, batch))
      REQUIRE(r);
    last_offset.push_back(*(*j)->highest_offset());
    if (b > merge_ranges) {
      // The keys stored merge_ranges + 1 batches ago (and before) are all merged.
      auto old = last_offset[static_cast<std::size_t>(b - merge_ranges - 1)];
      INFO("batch " << b);
      CHECK(count(path, fmt::format("SELECT count(*) FROM recent_keys WHERE ordering <= {}", old))
            == 0);
    }
  }
  CHECK(count(path, "SELECT count(*) FROM recent_keys") > 0);
  CHECK(count(path, "SELECT count(*) FROM event_keys") > 0);
  auto keys = count(path, "SELECT count(*) FROM recent_keys")
              + count(path, "SELECT count(*) FROM event_keys");
  CHECK(keys == count(path, "SELECT count(*) FROM events"));
  // Each id's events in seq order, from both tables, also paged.
  for (int i : {0, 1, 2, 150, 299}) {
    INFO("id " << i);
    auto expected = range(1, next[i] - 1);
    CHECK(stored_seqs(**j, id_of("id-", i)) == expected);
    auto page = (*j)->read_events(id_of("id-", i), expected[3], max_sequence_nr, 5);
    REQUIRE(page);
    REQUIRE(page->size() == 5);
    CHECK(page->front().seq == expected[3]);
    CHECK(page->back().seq == expected[7]);
    CHECK(*(*j)->highest_sequence_nr(id_of("id-", i)) == expected.back());
  }
  auto listed = (*j)->persistence_ids("", 1000);
  REQUIRE(listed);
  CHECK(listed->size() == ids);
  auto v = troupe_journal({"verify", "--db", path});
  INFO(v.text());
  CHECK(v.status == 0);
}

TEST_CASE("sqlite layout: a seq stored in either key table is a conflict for that write only") {
  temp_dir dir;
  auto path = dir.file("journal.db");
  auto j = sqlite_journal::open(unsynced_options(path));
  REQUIRE(j);
  // With 65 ids, each batch merges the keys of 3 id rows, starting at 1: the first
  // batch moves a's (row 1) keys into event_keys, the second leaves a's new keys
  // in recent_keys.
  std::vector<atomic_write> first{make_write("a", 1, 3)};
  for (int i = 0; i < 64; ++i)
    first.push_back(make_write(id_of("other-", i), 1, 1));
  for (auto& r : write_all(**j, first))
    REQUIRE(r);
  REQUIRE(write_all(**j, {make_write("a", 4, 5)})[0]);
  REQUIRE(count(path, "SELECT count(*) FROM event_keys WHERE pid = 1") == 3);
  REQUIRE(count(path, "SELECT count(*) FROM recent_keys WHERE pid = 1") == 2);
  auto r = write_all(**j, {make_write("a", 2, 2), make_write("a", 5, 6), make_write("a", 3, 7),
                           make_write("b", 1, 2), make_write("a", 6, 6)});
  REQUIRE(r.size() == 5);
  for (int i : {0, 1, 2}) {
    REQUIRE_FALSE(r[i]);
    CHECK(r[i].error().code() == errc::sequence_conflict);
  }
  CHECK(r[0].error().message().find("'a' seq 2 already exists") != std::string::npos);
  CHECK(r[1].error().message().find("'a' seq 5 already exists") != std::string::npos);
  CHECK(r[2].error().message().find("'a' seq 3 already exists") != std::string::npos);
  CHECK(r[3]);
  CHECK(r[4]);
  CHECK(stored_seqs(**j, "a") == range(1, 6));
  // A deleted prefix stays taken, and its keys are gone from both tables.
  REQUIRE((*j)->delete_events_to("a", 4));
  CHECK(count(path, "SELECT count(*) FROM event_keys WHERE pid = 1")
          + count(path, "SELECT count(*) FROM recent_keys WHERE pid = 1")
        == 2);
  auto again = write_all(**j, {make_write("a", 3, 3)});
  REQUIRE_FALSE(again[0]);
  CHECK(again[0].error().code() == errc::sequence_conflict);
  CHECK(stored_seqs(**j, "a") == range(5, 6));
  CHECK(*(*j)->highest_sequence_nr("a") == 6);
}

TEST_CASE("sqlite layout: a connection sees the keys another one stored since its own last "
          "write") {
  // Two journals on one file: SQLite treats them like two processes.
  temp_dir dir;
  auto path = dir.file("journal.db");
  auto first = sqlite_journal::open(unsynced_options(path));
  auto second = sqlite_journal::open(unsynced_options(path));
  REQUIRE(first);
  REQUIRE(second);
  REQUIRE(write_all(**first, {make_write("a", 1, 3)})[0]);
  REQUIRE(write_all(**second, {make_write("a", 4, 4)})[0]);
  // `first` last saw 'a' at seq 3; seq 4 is taken all the same.
  auto r = write_all(**first, {make_write("a", 4, 5)});
  REQUIRE_FALSE(r[0]);
  CHECK(r[0].error().code() == errc::sequence_conflict);
  REQUIRE(write_all(**first, {make_write("a", 5, 5)})[0]);
  r = write_all(**second, {make_write("a", 5, 5)});
  REQUIRE_FALSE(r[0]);
  CHECK(r[0].error().code() == errc::sequence_conflict);
  CHECK(stored_seqs(**second, "a") == range(1, 5));
}

TEST_CASE("sqlite layout: a version 3 file is read as it is, and migrated to version 4 when a "
          "node opens it") {
  temp_dir dir;
  auto path = dir.file("journal.db");
  write_version_3_journal(path);
  {
    // Read-only (the tools, replay): read in place, never migrated.
    auto ro = sqlite_journal::open({.path = path, .read_only = true});
    REQUIRE(ro);
    CHECK(stored_seqs(**ro, "acct|a") == range(3, 5));
    CHECK(*(*ro)->highest_sequence_nr("acct|a") == 5);
    CHECK(*(*ro)->highest_sequence_nr("acct|b") == 3);
    CHECK(*(*ro)->persistence_ids("", 10) == std::vector<std::string>{"acct|a", "acct|b"});
  }
  auto list = troupe_journal({"list", "--db", path});
  CHECK(list.lines == std::vector<std::string>{"acct|a\tevents=3\thighest_seq=5",
                                                "acct|b\tevents=3\thighest_seq=3"});
  auto verified = troupe_journal({"verify", "--db", path});
  INFO(verified.text());
  CHECK(verified.has("verify: ok (6 events, 2 persistence ids, 2 snapshots)"));
  CHECK(raw_query(path, "SELECT version FROM schema_version") == "3");

  auto j = sqlite_journal::open(unsynced_options(path));
  REQUIRE(j);
  CHECK(raw_query(path, "SELECT version FROM schema_version") == "4");
  CHECK(count(path, "SELECT count(*) FROM sqlite_master WHERE name = 'events_pid_seq'") == 0);
  CHECK(count(path, "SELECT count(*) FROM event_keys") == 6);
  CHECK(count(path, "SELECT count(*) FROM recent_keys") == 0);
  CHECK(stored_seqs(**j, "acct|a") == range(3, 5));
  CHECK(*(*j)->highest_sequence_nr("acct|a") == 5);
  // The migrated keys refuse stored and deleted seqs; fences, tags and snapshots
  // are as they were.
  auto r = write_all(**j, {make_write("acct|a", 5, 6), make_write("acct|a", 2, 2),
                           make_write("acct|b", 4, 4, {"acct"})});
  REQUIRE_FALSE(r[0]);
  CHECK(r[0].error().code() == errc::sequence_conflict);
  REQUIRE_FALSE(r[1]);
  CHECK(r[1].error().code() == errc::sequence_conflict);
  CHECK(r[2]);
  auto fenced = make_write("acct|a", 6, 6);
  fenced.fence = write_fence{"shard-1", 2};
  r = write_all(**j, {fenced});
  REQUIRE_FALSE(r[0]);
  CHECK(r[0].error().code() == errc::fenced);
  auto tagged = (*j)->events_by_tag("acct", 0, 10);
  REQUIRE(tagged);
  CHECK(tagged->size() == 4);
  auto snapshot = (*j)->load("acct|a", snapshot_criteria::latest());
  REQUIRE(snapshot);
  REQUIRE(*snapshot);
  CHECK((*snapshot)->seq == 4);
  REQUIRE((*j)->delete_events_to("acct|b", 2));
  CHECK(stored_seqs(**j, "acct|b") == range(3, 4));
  CHECK(*(*j)->highest_offset() == 9);
  verified = troupe_journal({"verify", "--db", path});
  INFO(verified.text());
  CHECK(verified.has("verify: ok (5 events, 2 persistence ids, 2 snapshots)"));
  j->reset();

  // A build that knows only version 4 refuses a newer file, saying why.
  raw_exec(path, fmt::format("UPDATE schema_version SET version = {}", sqlite_schema_version + 1));
  auto newer = sqlite_journal::open(unsynced_options(path));
  REQUIRE_FALSE(newer);
  CHECK(newer.error().code() == errc::unsupported_version);
  CHECK(newer.error().message().find("newer troupe") != std::string::npos);
}

TEST_CASE("sqlite layout: a version 2 file is migrated through version 3 (fences)") {
  temp_dir dir;
  auto path = dir.file("journal.db");
  write_version_3_journal(path);
  // What a build that knew only version 2 left behind.
  raw_exec(path, "DROP TABLE fences; UPDATE schema_version SET version = 2");
  auto j = sqlite_journal::open(unsynced_options(path));
  REQUIRE(j);
  CHECK(raw_query(path, "SELECT version FROM schema_version")
        == std::to_string(sqlite_schema_version));
  CHECK(*(*j)->highest_sequence_nr("acct|a") == 5);
  CHECK(*(*j)->fence_epoch("shard-1") == 0);
  REQUIRE((*j)->advance_fence("shard-1", 3));
  auto w = make_write("acct|a", 6, 6);
  w.fence = write_fence{"shard-1", 2};
  auto r = write_all(**j, {w});
  REQUIRE_FALSE(r[0]);
  CHECK(r[0].error().code() == errc::fenced);
}

TEST_CASE("troupe journal verify: every event has exactly one key, and every key its event") {
  temp_dir dir;
  auto path = dir.file("journal.db");
  {
    auto j = sqlite_journal::open(unsynced_options(path));
    REQUIRE(j);
    REQUIRE(write_all(**j, {make_write("a", 1, 4)})[0]);
  }
  CHECK(troupe_journal({"verify", "--db", path}).status == 0);
  // An event without a key, a key in both tables, a key whose event is another seq.
  raw_exec(path, "DELETE FROM event_keys WHERE seq = 2; DELETE FROM recent_keys WHERE seq = 2;"
                 "INSERT INTO recent_keys SELECT pid, seq, ordering FROM event_keys WHERE seq = 3;"
                 "INSERT INTO event_keys SELECT pid, 9, ordering FROM events WHERE seq = 4;"
                 "UPDATE journal_meta SET value = 99 WHERE key = 'merge_next_pid'");
  auto r = troupe_journal({"verify", "--db", path});
  INFO(r.text());
  CHECK(r.status == 1);
  CHECK(r.missing({
          "missing key: the event of 'a' seq 2 (offset 2) has no key in event_keys or "
          "recent_keys: recovery does not see it",
          "duplicate key: 'a' seq 3 has a key in event_keys (offset 3) and one in recent_keys "
          "(offset 3)",
          "dangling key: 'a' seq 9 (in event_keys) points to offset 4, whose event is "
          "persistence id row 1 seq 4",
        })
        == "");
  // The journal refuses to merge a key stored twice rather than drop one.
  auto j = sqlite_journal::open(unsynced_options(path));
  REQUIRE(j);
  auto w = write_all(**j, {make_write("a", 10, 10)});
  REQUIRE_FALSE(w[0]);
  CHECK(w[0].error().code() == errc::journal_failure);
  CHECK(w[0].error().message().find("stored in both recent_keys and event_keys") !=
        std::string::npos);
}
