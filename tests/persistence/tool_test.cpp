// The `troupe journal` tool, run as the real binary on real journal files.
#include "conformance_backends.hpp"
#include "raw_sql.hpp"

#include "support/child_process.hpp"
#include "support/temp_dir.hpp"

#include <doctest/doctest.h>
#include <sqlite3.h>

#include <filesystem>

using namespace troupe;
using namespace troupe::persistence;
using namespace troupe::test;

namespace {

struct run_result {
  int status = -1;
  std::vector<std::string> lines;  ///< stdout and stderr
  std::string text() const {
    std::string all;
    for (auto& l : lines)
      all += l + "\n";
    return all;
  }
  bool has(const std::string& text) const {
    for (auto& l : lines)
      if (l.find(text) != std::string::npos)
        return true;
    return false;
  }
};

/// Runs `troupe journal ARGS...` (the binary built in build/tools/).
run_result troupe_journal(std::vector<std::string> args) {
  std::string cmd = program_path("../../tools/troupe") + " journal";
  for (auto& a : args)
    cmd += " '" + a + "'";
  child_process p{"/bin/sh", {"-c", cmd + " 2>&1"}};
  run_result r;
  while (auto line = p.read_line(std::chrono::seconds{30}))
    r.lines.push_back(*line);
  r.status = p.wait(std::chrono::seconds{30}).value_or(-1);
  return r;
}

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
  CHECK(r.has("gap: 'acct|a' seq 4..4 missing"));
  CHECK(r.has("undecodable event: 'acct|b' seq 2"));
  CHECK(r.has("orphaned snapshot: 'ghost' seq 1: the id has no events"));
  CHECK(r.has("orphaned snapshot: 'acct|b' seq 9 is above the highest seq 3"));
  CHECK(r.has("duplicate snapshot: 'acct|b' seq 3 stored 2 times"));
  // The gap's event was tagged: its tag row now points nowhere.
  CHECK(r.has("orphaned tag rows: 1 event_tags row(s) of tag row 1 point to missing events"));
  CHECK(r.has("verify: 6 problem(s)"));
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
  CHECK(r.has("--db FILE is required"));
}
