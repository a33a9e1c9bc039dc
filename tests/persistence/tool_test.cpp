// The `troupe journal` tool, run as the real binary on real journal files.
#include "conformance_backends.hpp"
#include "raw_sql.hpp"

#include "troupe_tool.hpp"

#include "support/temp_dir.hpp"

#include <doctest/doctest.h>
#include <sqlite3.h>

#include <filesystem>
#include <fstream>

using namespace troupe;
using namespace troupe::persistence;
using namespace troupe::test;

namespace {

/// A healthy journal: two ids with tagged events, one deleted prefix, snapshots.
std::string healthy_journal(const temp_dir& dir) {
  auto path = dir.file("healthy.db");
  sqlite_options o;
  o.path = path;
  o.create_if_missing = true;
  auto j = *sqlite_journal::open(o);
  std::vector<atomic_write> batch{make_write("acct|a", 1, 5, {"acct"}), make_write("acct|b", 1, 3)};
  for (auto& r : j->write(std::span<const atomic_write>{batch}))
    REQUIRE(r);
  REQUIRE(j->delete_events_to("acct|a", 2));
  REQUIRE(j->save(make_snapshot("acct|a", 4)));
  REQUIRE(j->save(make_snapshot("acct|b", 3)));
  return path;  // closed (and checkpointed) when j goes away
}

} // namespace

TEST_CASE("troupe journal verify: a healthy journal has no problems") {
  temp_dir dir;
  auto path = healthy_journal(dir);
  auto r = troupe_journal({"verify", "--db", path});
  INFO(r.lines.size());
  CHECK(r.status == 0);
  CHECK(r.has("verify: ok (6 events, 2 persistence ids, 2 snapshots)"));
}

TEST_CASE("troupe journal verify: the journal the bank sample writes has no problems") {
  temp_dir dir;
  auto path = dir.file("bank.db");
  auto bank = program_path("../../samples/bank/troupe-bank") + " '--persistence.journal.path="
              + path + "' 2>&1";
  // Twice: the second run recovers acct-42 and appends to its events.
  for (auto round : {1, 2}) {
    child_process p{"/bin/sh", {"-c", bank}};
    bool balance_seen = false;
    while (auto line = p.read_line(std::chrono::seconds{30}))
      balance_seen = balance_seen || line->starts_with("balance of acct-42: ");
    INFO("round " << round);
    CHECK(p.wait(std::chrono::seconds{30}).value_or(-1) == 0);
    CHECK(balance_seen);
  }
  auto r = troupe_journal({"verify", "--db", path});
  CHECK(r.status == 0);
  CHECK(r.has("verify: ok ("));
  CHECK(r.has("1 persistence ids"));
}

TEST_CASE("troupe journal verify: reports each planted problem and exits non-zero") {
  temp_dir dir;
  auto healthy = healthy_journal(dir);
  auto path = dir.file("damaged.db");
  std::filesystem::copy_file(healthy, path);
  // A gap: seq 4 of acct|a vanishes without a delete.
  raw_exec(path, "DELETE FROM events WHERE seq = 4 AND pid = "
                 "(SELECT id FROM persistence_ids WHERE name = 'acct|a')");
  // An undecodable payload.
  raw_exec(path, "UPDATE events SET payload = x'ff0102' WHERE seq = 2 AND pid = "
                 "(SELECT id FROM persistence_ids WHERE name = 'acct|b')");
  // Orphaned snapshots: an id without events, and a seq above the highest.
  raw_exec(path, "INSERT INTO persistence_ids(name) VALUES('ghost');"
                 "INSERT INTO snapshots SELECT id, 1, 0, 'm', 1, x'a0' FROM persistence_ids "
                 "WHERE name = 'ghost';"
                 "INSERT INTO snapshots SELECT id, 9, 0, 'm', 1, x'a0' FROM persistence_ids "
                 "WHERE name = 'acct|b'");
  // A duplicate snapshot (possible only once the table lost its key).
  raw_exec(path, "CREATE TABLE s2 AS SELECT * FROM snapshots; DROP TABLE snapshots;"
                 "ALTER TABLE s2 RENAME TO snapshots;"
                 "INSERT INTO snapshots SELECT * FROM snapshots WHERE seq = 3");
  auto r = troupe_journal({"verify", "--db", path});
  INFO(r.text());
  CHECK(r.status == 1);
  CHECK(r.missing({
          "gap: 'acct|a' seq 4..4 missing",
          "undecodable event: 'acct|b' seq 2",
          "orphaned snapshot: 'ghost' seq 1: the id has no events",
          "orphaned snapshot: 'acct|b' seq 9 is above the highest seq 3",
          "duplicate snapshot: 'acct|b' seq 3 stored 2 times",
          // The gap's event was tagged: its tag row now points nowhere.
          "orphaned tag rows: 1 event_tags row(s) of tag row 1 point to missing events",
          // And its key.
          "dangling key: 'acct|a' seq 4 (in event_keys) points to offset 4, which holds no event",
          "verify: 7 problem(s)",
        })
        == "");
  // The original is untouched and still healthy.
  CHECK(troupe_journal({"verify", "--db", healthy}).status == 0);
}

TEST_CASE("troupe journal list, events and stats render any journal without its types") {
  temp_dir dir;
  auto path = healthy_journal(dir);
  auto list = troupe_journal({"list", "--db", path});
  CHECK(list.status == 0);
  CHECK(list.lines == std::vector<std::string>{"acct|a\tevents=3\thighest_seq=5",
                                                "acct|b\tevents=3\thighest_seq=3"});

  auto events = troupe_journal({"events", "--db", path, "--id", "acct|a", "--limit", "2"});
  CHECK(events.status == 0);
  REQUIRE(events.lines.size() == 2);
  auto first = nlohmann::json::parse(events.lines[0]);
  CHECK(first["persistence_id"] == "acct|a");
  CHECK(first["seq"] == 3);
  CHECK(first["manifest"] == "test.event");
  CHECK(first["payload"] == nlohmann::json{{"v", 3}});
  CHECK(first["tags"] == nlohmann::json::array({"acct"}));
  CHECK(first["writer"] == "writer-1");

  auto tagged = troupe_journal({"events", "--db", path, "--tag", "acct"});
  CHECK(tagged.lines.size() == 3);
  auto after = troupe_journal(
    {"events", "--db", path, "--from-offset", std::to_string(first["offset"].get<int>())});
  CHECK(after.lines.size() == 5);  // everything after a|3: a|4, a|5 and b|1..3

  auto stats = troupe_journal({"stats", "--db", path});
  CHECK(stats.status == 0);
  std::string text;
  for (auto& l : stats.lines)
    text += l;
  auto doc = nlohmann::json::parse(text);
  CHECK(doc["events"] == 6);
  CHECK(doc["persistence_ids"] == 2);
  CHECK(doc["snapshots"] == 2);
  CHECK(doc["tags"]["acct"] == 3);
  CHECK(doc["journal_mode"] == "wal");
  CHECK(doc["page_size"].get<int>() > 0);
}

TEST_CASE("troupe journal stats: the highest offset is the newest event's, and stays after "
          "deleting the newest events") {
  temp_dir dir;
  auto path = dir.file("offsets.db");
  sqlite_options o;
  o.path = path;
  o.create_if_missing = true;
  auto highest_offset = [&] {
    auto stats = troupe_journal({"stats", "--db", path});
    REQUIRE(stats.status == 0);
    std::string text;
    for (auto& l : stats.lines)
      text += l;
    return nlohmann::json::parse(text)["highest_offset"].get<std::int64_t>();
  };
  {
    auto j = *sqlite_journal::open(o);
    std::vector<atomic_write> batch{make_write("a", 1, 4)};
    for (auto& r : j->write(std::span<const atomic_write>{batch}))
      REQUIRE(r);
  }
  // No write records it in journal_meta: stats reads it from the events.
  CHECK(highest_offset() == 4);
  {
    auto j = *sqlite_journal::open(o);
    REQUIRE(j->delete_events_to("a", 4));
  }
  CHECK(highest_offset() == 4);
}

TEST_CASE("troupe journal: a missing file or a non-journal is a clear error") {
  temp_dir dir;
  auto missing = dir.file("nope.db");
  auto r = troupe_journal({"list", "--db", missing});
  CHECK(r.status == 1);
  CHECK(r.has(missing));
  CHECK(r.has("does not exist"));
  CHECK_FALSE(std::filesystem::exists(missing));  // nothing created

  auto other = dir.file("other.db");
  raw_exec(other, "CREATE TABLE t(x)");
  r = troupe_journal({"verify", "--db", other});
  CHECK(r.status == 1);
  CHECK(r.has("not a troupe journal"));

  r = troupe_journal({"list"});
  CHECK(r.status == 2);
  CHECK(r.has("--db FILE|URI is required"));
}

TEST_CASE("journal schema: a persistence id row cannot be deleted, renumbered or renamed") {
  temp_dir dir;
  auto path = healthy_journal(dir);
  for (auto sql : {"DELETE FROM persistence_ids WHERE name = 'acct|b'",
                   "UPDATE persistence_ids SET id = 99 WHERE name = 'acct|b'",
                   "UPDATE persistence_ids SET name = 'acct|c' WHERE name = 'acct|b'"}) {
    INFO(sql);
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
    CHECK(sqlite3_exec(db, sql, nullptr, nullptr, nullptr) == SQLITE_CONSTRAINT);
    CHECK(std::string{sqlite3_errmsg(db)}.find("its events would be orphaned") != std::string::npos);
    sqlite3_close(db);
  }
  CHECK(troupe_journal({"verify", "--db", path}).status == 0);
}

TEST_CASE("troupe journal verify: events whose persistence id row was deleted are orphans") {
  temp_dir dir;
  auto path = healthy_journal(dir);
  // Past the schema's guard, recovery of acct|b would start empty while its 3
  // events remain.
  raw_exec(path, "DROP TRIGGER persistence_ids_kept;"
                 "DELETE FROM persistence_ids WHERE name = 'acct|b'");
  auto r = troupe_journal({"verify", "--db", path});
  INFO(r.text());
  CHECK(r.status == 1);
  CHECK(r.has("orphaned events: 3 event(s), seq 1..3, belong to persistence id row 2, which is "
              "missing from persistence_ids"));
  CHECK(r.has("orphaned snapshot: seq 3 belongs to persistence id row 2"));
  // `events` still shows them, with the row they point to.
  auto events = troupe_journal({"events", "--db", path});
  CHECK(events.status == 0);
  CHECK(events.has(R"("persistence_id":null,"orphaned_pid":2,"seq":1)"));
}

TEST_CASE("troupe journal: damaged rows are named, rendered as stored, never a crash") {
  temp_dir dir;
  auto path = healthy_journal(dir);
  raw_exec(path, "UPDATE events SET version = 'v9' WHERE seq = 1 AND pid = 2;"
                 "UPDATE events SET seq = 'three' WHERE seq = 3 AND pid = 2;"
                 "UPDATE events SET manifest = CAST(x'74ff2e65' AS TEXT) WHERE seq = 2 AND pid = 2");
  auto r = troupe_journal({"verify", "--db", path});
  INFO(r.text());
  CHECK(r.status == 1);
  CHECK(r.has("damaged event: 'acct|b' seq 1: version v9 is not an integer in 1..4294967295"));
  CHECK(r.has("damaged event: 'acct|b' offset 8: seq three is not an integer >= 1"));
  CHECK(r.has(R"(invalid UTF-8: 'acct|b' seq 2 manifest is not valid UTF-8: 't\xff.e')"));
  auto events = troupe_journal({"events", "--db", path, "--id", "acct|b"});
  INFO(events.text());
  CHECK(events.status == 0);
  CHECK(events.lines.size() == 3);
  CHECK(events.has(R"("version":"v9")"));
  CHECK(events.has(R"("seq":"three")"));
  CHECK(events.has(R"("manifest":"t\\xff.e")"));
  auto list = troupe_journal({"list", "--db", path});
  CHECK(list.status == 0);
  // The SQLite backend (recovery, queries) names the row instead of casting.
  auto opts = sqlite_options{.path = path, .read_only = true};
  auto j = sqlite_journal::open(opts);
  REQUIRE(j);
  auto read = (*j)->read_events("acct|b", 1, 10, 10);
  REQUIRE_FALSE(read);
  CHECK(read.error().code() == errc::decode_failed);
  CHECK(read.error().message().find("'acct|b' seq 1") != std::string::npos);
  CHECK(read.error().message().find("version v9") != std::string::npos);
}

TEST_CASE("troupe journal: a payload string that is not UTF-8 is shown escaped and reported") {
  temp_dir dir;
  auto path = healthy_journal(dir);
  // CBOR {"who": "ada\xff\xfe"}: a text string whose last bytes are not UTF-8.
  raw_exec(path, "UPDATE events SET payload = x'a16377686f6661646166fffe' WHERE seq = 3 AND pid = 2");
  auto events = troupe_journal({"events", "--db", path, "--id", "acct|b"});
  INFO(events.text());
  CHECK(events.status == 0);
  CHECK(events.lines.size() == 3);
  CHECK(events.has(R"("payload":{"who":"adaf\\xff\\xfe"})"));
  auto r = troupe_journal({"verify", "--db", path});
  INFO(r.text());
  CHECK(r.status == 1);
  CHECK(r.has("invalid UTF-8: event 'acct|b' seq 3 offset 8: the payload holds a string that is "
              "not valid UTF-8"));
}

TEST_CASE("troupe journal: damaged schema metadata is a clear error, never an abort") {
  temp_dir dir;
  auto path = healthy_journal(dir);
  std::string found;
  SUBCASE("text") {
    raw_exec(path, "UPDATE schema_version SET version = 'two'");
    found = "version 'two'";
  }
  SUBCASE("beyond int") {
    raw_exec(path, "UPDATE schema_version SET version = 99999999999");
    found = "version 99999999999";
  }
  SUBCASE("no row") {
    raw_exec(path, "DELETE FROM schema_version");
    found = "0 row(s)";
  }
  for (auto command : {"verify", "events", "list", "stats"}) {
    auto r = troupe_journal({command, "--db", path});
    INFO(command << ": " << r.text());
    CHECK(r.status == 1);
    CHECK(r.has("schema_version table is damaged"));
    CHECK(r.has(found));
    CHECK(r.has(path));
  }
  auto j = sqlite_journal::open(sqlite_options{.path = path});
  REQUIRE_FALSE(j);
  CHECK(j.error().code() == errc::invalid_config);
  CHECK(j.error().message().find(found) != std::string::npos);
}

TEST_CASE("troupe journal create: makes a new journal, and only a new one") {
  temp_dir dir;
  auto path = dir.file("new.db");
  auto r = troupe_journal({"create", "--db", path});
  INFO(r.text());
  CHECK(r.status == 0);
  CHECK(r.has("created journal '" + path + "' (journal id "));
  CHECK(troupe_journal({"verify", "--db", path}).status == 0);
  auto again = troupe_journal({"create", "--db", path});
  CHECK(again.status == 1);
  CHECK(again.has("exists and is not empty"));
  // An existing empty file may be turned into a journal.
  auto empty = dir.file("empty.db");
  std::ofstream{empty}.close();
  CHECK(troupe_journal({"create", "--db", empty}).status == 0);
}
