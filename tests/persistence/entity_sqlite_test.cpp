// Entities on real SQLite journal files: recovery across nodes, the replay tool,
// bad input (corrupt event bytes, an unknown manifest, a full disk) and a crash
// test with a real process killed by SIGKILL mid-stream.
#include "entity_fixtures.hpp"
#include "raw_sql.hpp"
#include "replay_counter.hpp"

#include "troupe/actors/supervisor.hpp"
#include "troupe/persistence/sqlite_journal.hpp"

#include "support/child_process.hpp"
#include "support/temp_dir.hpp"

#include <fmt/core.h>
#include <sqlite3.h>

#include <map>
#include <sstream>

using namespace troupe;
using namespace troupe::persistence;
using namespace troupe::test;
using namespace std::chrono_literals;
using fx::contains;
using fx::counter;
using fx::replay_counter;

namespace {

std::int64_t page_count(const std::string& path) {
  return std::stoll(raw_query(path, "PRAGMA page_count"));
}

/// Writes `amounts` to counter `id` through a node on the journal at `path`.
void write_counter(const std::string& path, const std::string& id,
                   const std::vector<std::int64_t>& amounts) {
  auto n = fx::make_sqlite_node(path);
  auto ref = spawn_entity<counter>(*n, id);
  REQUIRE(ref);
  for (auto a : amounts)
    REQUIRE(ref->ask(fx::add{a}, 10s));
}

/// Collects the supervisor's log lines (exit reasons of its children).
struct log_capture {
  std::mutex mtx;
  std::vector<std::string> lines;

  void attach(node& n) {
    n.log().add_sink([this](const log_record& r) {
      std::lock_guard<std::mutex> guard{mtx};
      lines.emplace_back(r.message);
    });
  }
  bool has(std::initializer_list<std::string> parts) {
    std::lock_guard<std::mutex> guard{mtx};
    for (auto& l : lines) {
      bool all = true;
      for (auto& p : parts)
        all = all && contains(l, p);
      if (all)
        return true;
    }
    return false;
  }
};

std::vector<nlohmann::json> json_lines(const std::string& text) {
  std::vector<nlohmann::json> result;
  std::istringstream in{text};
  for (std::string line; std::getline(in, line);)
    result.push_back(nlohmann::json::parse(line));
  return result;
}

} // namespace

TEST_CASE("entity: state persisted on SQLite is recovered by a new node") {
  temp_dir dir;
  auto path = dir.file("journal.db");
  write_counter(path, "a", {1, 2, 3});
  auto n = fx::make_sqlite_node(path);
  auto ref = spawn_entity<counter>(*n, "a");
  REQUIRE(ref);
  auto total = ref->ask(fx::get{}, 10s);
  REQUIRE(total);
  CHECK(*total == 6);
  REQUIRE(ref->ask(fx::add{4}, 10s));
  auto stored = find_journal(*n)->journal().highest_sequence_nr("counter|a");
  REQUIRE(stored);
  CHECK(*stored == 4);
}

TEST_CASE("entity: the replay tool prints the state after each event") {
  temp_dir dir;
  auto path = dir.file("journal.db");
  write_counter(path, "r", {5, 7, -2});
  std::string out, err;
  REQUIRE(replay_counter("r", path, out, err) == 0);
  auto lines = json_lines(out);
  REQUIRE(lines.size() == 3);
  CHECK(lines[0]["seq"] == 1);
  CHECK(lines[0]["manifest"] == "test.added");
  CHECK(lines[0]["event"]["n"] == 5);
  CHECK(lines[0]["state"]["total"] == 5);
  CHECK(lines[2]["state"]["total"] == 10);
  CHECK(lines[2]["state"]["events"] == 3);
  // The full persistence id works too, and --from/--to select what is printed
  // (earlier events still count).
  REQUIRE(replay_counter("counter|r", path, out, err, {"--from", "2", "--to", "2"}) == 0);
  lines = json_lines(out);
  REQUIRE(lines.size() == 1);
  CHECK(lines[0]["seq"] == 2);
  CHECK(lines[0]["state"]["total"] == 12);
  // Bad arguments and a missing file are reported, with the path.
  CHECK(replay_counter("r", dir.file("missing.db"), out, err) == 2);
  CHECK(contains(err, "missing.db"));
}

TEST_CASE("entity: the replay tool stops at an undecodable event, naming id and seq") {
  temp_dir dir;
  auto path = dir.file("journal.db");
  write_counter(path, "bad", {1, 2, 3});
  raw_exec(path, "UPDATE events SET payload = x'ff1300' WHERE seq = 2 AND pid = "
            "(SELECT id FROM persistence_ids WHERE name = 'counter|bad')");
  std::string out, err;
  CHECK(replay_counter("bad", path, out, err) == 1);
  CHECK(json_lines(out).size() == 1);
  CHECK(contains(err, "counter|bad seq 2"));
}

TEST_CASE("entity: the replay tool starts from the snapshot that covers deleted events") {
  temp_dir dir;
  auto path = dir.file("journal.db");
  {
    auto n = fx::make_sqlite_node(path);
    auto ref = spawn_entity<counter>(
      *n, "snap",
      entity_options{.snapshot_every = 2, .keep_snapshots = 1, .delete_events_on_snapshot = true});
    REQUIRE(ref);
    for (int i = 1; i <= 5; ++i)
      REQUIRE(ref->ask(fx::add{i}, 10s));
    auto& j = find_journal(*n)->journal();
    REQUIRE(wait_until([&] {
      auto gone = j.read_events("counter|snap", 1, 2, 10);
      return gone && gone->empty();
    }));
  }
  std::string out, err;
  REQUIRE(replay_counter("snap", path, out, err) == 0);
  // Snapshots at 2 and 4; keeping one deleted the one at 2 and events 1..2.
  auto lines = json_lines(out);
  REQUIRE(lines.size() == 2);  // the snapshot at seq 4, then event 5
  CHECK(lines[0]["snapshot"] == true);
  CHECK(lines[0]["seq"] == 4);
  CHECK(lines[0]["state"]["total"] == 10);
  CHECK(lines[1]["seq"] == 5);
  CHECK(lines[1]["state"]["total"] == 15);
  CHECK(contains(err, "events 3..4 are only covered by the snapshot at seq 4"));
}

TEST_CASE("entity: corrupt event bytes, an unknown manifest or a missing event in the file stop "
          "that entity's recovery with its id and seq, and the node serves the others") {
  temp_dir dir;
  auto path = dir.file("journal.db");
  write_counter(path, "victim", {1, 2, 3});
  write_counter(path, "bystander", {10, 20});
  std::string seq;
  SUBCASE("corrupt payload bytes") {
    raw_exec(path, "UPDATE events SET payload = x'bf61' WHERE seq = 2 AND pid = "
              "(SELECT id FROM persistence_ids WHERE name = 'counter|victim')");
    seq = "seq 2";
  }
  SUBCASE("an unknown manifest") {
    raw_exec(path, "UPDATE events SET manifest = 'test.renamed-away' WHERE seq = 3 AND pid = "
              "(SELECT id FROM persistence_ids WHERE name = 'counter|victim')");
    seq = "seq 3";
  }
  SUBCASE("a missing event (a gap in the sequence numbers)") {
    raw_exec(path, "DELETE FROM events WHERE seq = 2 AND pid = "
              "(SELECT id FROM persistence_ids WHERE name = 'counter|victim')");
    seq = "seq 2: missing from the journal";
  }
  log_capture logs;  // before the node: its sink runs until the node is gone
  auto n = fx::make_sqlite_node(path);
  logs.attach(*n);
  supervisor_spec spec{.name = "accounts",
                       .max_restarts = 1000,
                       .within = 60s,
                       .backoff = {.min = 1ms, .max = 20ms},
                       .children = {entity_child<counter>("victim"),
                                    entity_child<counter>("bystander")}};
  auto sup = n->spawn_supervisor(spec);
  REQUIRE(sup);
  auto victim = child_handle(n->system(), *sup, "counter|victim", 10s);
  REQUIRE(victim);
  auto r = entity_ref<counter>{*victim}.ask(fx::get{}, 10s);
  REQUIRE_FALSE(r);
  CHECK(r.error().code() != errc::timeout);
  CHECK(wait_until([&] { return logs.has({"recovery failed", "counter|victim", seq}); }));
  auto bystander = child_handle(n->system(), *sup, "counter|bystander", 10s);
  REQUIRE(bystander);
  entity_ref<counter> other{*bystander};
  REQUIRE(other.ask(fx::add{5}, 10s));
  auto total = other.ask(fx::get{}, 10s);
  REQUIRE(total);
  CHECK(*total == 35);
}

TEST_CASE("entity: a full disk fails the persist with a clear error and changes nothing") {
  temp_dir dir;
  auto path = dir.file("journal.db");
  write_counter(path, "filler", {1});
  write_counter(path, "reader", {42});
  auto cap = page_count(path) + 2;
  log_capture logs;
  auto n = fx::make_sqlite_node(path, {fmt::format("persistence.journal.max-page-count={}", cap)});
  logs.attach(*n);
  supervisor_spec spec{.name = "disk",
                       .max_restarts = 1000,
                       .within = 60s,
                       .backoff = {.min = 1ms, .max = 20ms},
                       .children = {entity_child<counter>("filler")}};
  auto sup = n->spawn_supervisor(spec);
  REQUIRE(sup);
  auto handle = child_handle(n->system(), *sup, "counter|filler", 10s);
  REQUIRE(handle);
  entity_ref<counter> filler{*handle};
  std::int64_t total = 1;
  expected<done> r = done{};
  std::vector<std::int64_t> big(200, 1);
  for (int i = 0; i < 1000 && r; ++i) {
    auto before = total;
    auto many = filler.ask(fx::add_many{big}, 10s);
    if (many) {
      total = *many;
      CHECK(total == before + 200);
    } else {
      r = many.error();
    }
  }
  REQUIRE_FALSE(r);
  INFO(r.error().to_string());
  CHECK(r.error().code() == errc::journal_failure);
  CHECK(contains(r.error().message(), "counter|filler"));
  CHECK((contains(r.error().message(), "full") || contains(r.error().message(), "FULL")));
  // The entity restarts and recovers exactly what was stored before the failure.
  REQUIRE(wait_until([&] {
    auto t = filler.ask(fx::get{}, 10s);
    return t && *t == total;
  }));
  // Other entities are still served (reads need no space).
  auto reader = spawn_entity<counter>(*n, "reader");
  REQUIRE(reader);
  auto read = reader->ask(fx::get{}, 10s);
  REQUIRE(read);
  CHECK(*read == 42);
}

TEST_CASE("entity: after kill -9, every acknowledged event is stored and each entity recovers "
          "the fold of its events") {
  temp_dir dir;
  auto path = dir.file("journal.db");
  constexpr int entities = 20;
  std::map<std::string, std::map<std::int64_t, std::int64_t>> acked;  // id -> seq -> amount
  {
    child_process child{program_path("troupe-test-entity-crash-writer"),
                        {path, std::to_string(entities)}};
    REQUIRE(child.wait_for_line("ready", 60s));
    std::size_t count = 0;
    auto record = [&](const std::string& line) {
      std::istringstream in{line};
      std::string tag, id;
      std::int64_t seq = 0, amount = 0;
      in >> tag >> id >> seq >> amount;
      INFO(line);
      REQUIRE(tag == "ack");
      acked[id][seq] = amount;
      ++count;
    };
    while (count < 400) {
      auto line = child.read_line(30s);
      REQUIRE(line);
      record(*line);
    }
    child.kill();
    // Lines already written before the kill are acknowledged persists too.
    while (auto line = child.read_line(10s))
      record(*line);
    REQUIRE(child.wait(10s));
  }
  REQUIRE(acked.size() == entities);
  auto n = fx::make_sqlite_node(path);
  auto& j = find_journal(*n)->journal();
  for (auto& [id, events] : acked) {
    auto pid = "counter|" + id;
    auto stored = j.read_events(pid, 1, max_sequence_nr, 100000);
    REQUIRE(stored);
    std::int64_t fold = 0;
    std::map<std::int64_t, std::int64_t> by_seq;
    for (auto& e : *stored) {
      auto n_value = nlohmann::json::from_cbor(e.payload).at("n").get<std::int64_t>();
      fold += n_value;
      by_seq[static_cast<std::int64_t>(e.seq)] = n_value;
    }
    for (auto& [seq, amount] : events) {
      INFO(pid << " seq " << seq);
      REQUIRE(by_seq.count(seq) == 1);
      CHECK(by_seq[seq] == amount);
    }
    auto ref = spawn_entity<counter>(*n, id);
    REQUIRE(ref);
    auto total = ref->ask(fx::get{}, 10s);
    REQUIRE(total);
    CHECK(*total == fold);
  }
}
