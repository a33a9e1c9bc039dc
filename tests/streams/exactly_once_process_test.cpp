// Exactly-once effects across kill -9: a process streams numbered elements into
// sharded, deduplicating entities on a SQLite journal and commits its offset after
// the acknowledgements (programs/exactly_once_stream.cpp); the test kills it with
// SIGKILL mid-stream, restarts it, and checks every entity's recovered state
// against applying each element once. Without deduplication the same kill applies
// the elements acknowledged after the last commit twice (at-least-once).
#include "dedup_tally.hpp"

#include "support/child_process.hpp"
#include "support/node_fixture.hpp"
#include "support/temp_dir.hpp"

#include "troupe/persistence/entity.hpp"
#include "troupe/persistence/journal_service.hpp"
#include "troupe/persistence/projection.hpp"
#include "troupe/streams/commit_offsets.hpp"

#include <doctest/doctest.h>
#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <string>
#include <vector>

using namespace std::chrono_literals;
using namespace troupe;
using troupe::test::child_process;
using troupe::test::program_path;

namespace {

using values_map = std::map<std::string, std::vector<std::int64_t>>;

struct run_args {
  std::string mode = "exactly-once";
  std::int64_t elements = 0;
  std::int64_t entities = 0;
  std::int64_t gate = 0;
  std::size_t commit_every = 0;
  std::int64_t commit_interval_ms = 0;
};

child_process start_stream(const std::string& db, const run_args& a) {
  return child_process{program_path("troupe-test-exactly-once-stream"),
                       {db, a.mode, std::to_string(a.elements), std::to_string(a.entities),
                        std::to_string(a.gate), std::to_string(a.commit_every),
                        std::to_string(a.commit_interval_ms)}};
}

/// The number after `prefix` in the child's next line starting with it.
std::int64_t number_after(child_process& child, const std::string& prefix) {
  auto line = child.wait_for_line(prefix, 60s);
  REQUIRE(line);
  return std::stoll(line->substr(prefix.size()));
}

/// Reads the child's lines until one says an offset at or above `at_least` was
/// committed.
std::int64_t wait_for_commit(child_process& child, std::int64_t at_least) {
  for (;;) {
    auto committed = number_after(child, "committed ");
    if (committed >= at_least)
      return committed;
  }
}

persistence::offset_type committed_in(const std::string& db) {
  auto store = persistence::sqlite_offset_store::open({.path = db});
  REQUIRE(store);
  auto c = streams::committed_offset(**store, "numbers", "tallies");
  REQUIRE(c);
  return *c;
}

/// Restarts the stream without a gate and waits until it finished; returns the
/// offset it resumed after.
std::int64_t restart_to_the_end(const std::string& db, run_args a) {
  a.gate = 0;
  auto child = start_stream(db, a);
  auto resumed = number_after(child, "resuming after ");
  auto finished = number_after(child, "finished ");
  CHECK(finished == a.elements - resumed);
  auto status = child.wait(60s);
  REQUIRE(status);
  CHECK(*status == 0);
  return resumed;
}

/// Every entity's values as it recovers them from the journal at `db`.
values_map recovered_values(const std::string& db, std::int64_t entities) {
  auto schema = node_config_keys();
  persistence::add_config_keys(schema);
  auto codec = std::make_shared<codec_registry>();
  dedup_tally::register_types(*codec);
  auto n = test::make_node({"persistence.journal.path=" + db}, std::move(schema), node::options{codec});
  REQUIRE(persistence::install_journal(*n));
  values_map out;
  for (std::int64_t k = 0; k < entities; ++k) {
    auto id = fmt::format("t-{}", k);
    auto ref = persistence::spawn_entity<dedup_tally::entity>(*n, id);
    REQUIRE(ref);
    auto v = ref->ask(dedup_tally::get_values{}, 30s);
    INFO(id << ": " << (v ? std::string{"ok"} : v.error().to_string()));
    REQUIRE(v);
    out[id] = std::move(*v);
  }
  return out;
}

/// Each entity's values after applying the offsets of `ranges` in order.
values_map applying(std::int64_t entities, const std::vector<std::pair<std::int64_t, std::int64_t>>& ranges) {
  values_map out;
  for (std::int64_t k = 0; k < entities; ++k)
    out[fmt::format("t-{}", k)];
  for (auto [from, to] : ranges)
    for (auto o = from; o <= to; ++o)
      out[fmt::format("t-{}", o % entities)].push_back(o);
  return out;
}

/// Streams with a gate at 250 of 300 and commits every 100 acknowledgements (by
/// count only), kills the process once all 250 are acknowledged and the second
/// commit is saved, and restarts it: the elements acknowledged after that commit
/// (up to 250) are asked again. Returns the committed offset at the kill.
std::int64_t kill_after_acknowledged_uncommitted(const std::string& db, const run_args& a) {
  {
    auto child = start_stream(db, a);
    CHECK(number_after(child, "resuming after ") == 0);
    // Commits at the 100th and the 200th acknowledgement; the lines come in any order.
    std::int64_t last_commit = 0;
    bool gate = false;
    while (!gate || last_commit < 150) {
      auto line = child.read_line(60s);
      REQUIRE(line);
      if (line->starts_with("committed "))
        last_commit = std::stoll(line->substr(10));
      gate = gate || *line == fmt::format("gate {}", a.gate);
    }
    CHECK(last_commit <= 200);
    child.kill();
    REQUIRE(child.wait(10s));
  }
  auto committed = static_cast<std::int64_t>(committed_in(db));
  CHECK(committed >= 150);
  CHECK(committed < a.gate);  // the elements after it were acknowledged, not committed
  CHECK(restart_to_the_end(db, a) == committed);
  return committed;
}

} // namespace

TEST_CASE("exactly once: a kill -9 mid-stream with commands in flight, then a restart from the "
          "committed offset, applies every element to the sharded entities exactly once") {
  test::temp_dir dir;
  auto db = dir.file("journal.db");
  run_args a{.elements = 4000, .entities = 20, .gate = 3500, .commit_every = 50, .commit_interval_ms = 20};
  {
    auto child = start_stream(db, a);
    CHECK(number_after(child, "resuming after ") == 0);
    // The gate keeps the stream from ending: the kill comes before its end, and
    // (with 3,000 elements to go when the test reads this line) while it streams.
    wait_for_commit(child, 500);
    child.kill();
    REQUIRE(child.wait(10s));
  }
  auto committed = static_cast<std::int64_t>(committed_in(db));
  CHECK(committed >= 500);
  CHECK(committed <= a.gate);
  std::size_t beyond = 0;  // applied, not committed: asked again after the restart
  for (auto& [id, values] : recovered_values(db, a.entities))
    beyond += static_cast<std::size_t>(std::count_if(values.begin(), values.end(),
                                                     [&](std::int64_t v) { return v > committed; }));
  CHECK(restart_to_the_end(db, a) == committed);
  MESSAGE("killed with " << committed << " of " << a.elements << " committed and " << beyond
                         << " more applied");
  CHECK(recovered_values(db, a.entities) == applying(a.entities, {{1, a.elements}}));
}

TEST_CASE("exactly once: elements acknowledged after the last commit are asked again after a kill "
          "-9 and the entities answer them without applying them twice") {
  test::temp_dir dir;
  auto db = dir.file("journal.db");
  run_args a{.elements = 300, .entities = 7, .gate = 250, .commit_every = 100, .commit_interval_ms = 0};
  kill_after_acknowledged_uncommitted(db, a);
  CHECK(recovered_values(db, a.entities) == applying(a.entities, {{1, a.elements}}));
}

TEST_CASE("at least once: without deduplication the same kill -9 applies the elements acknowledged "
          "after the last commit twice") {
  test::temp_dir dir;
  auto db = dir.file("journal.db");
  run_args a{.mode = "at-least-once", .elements = 300, .entities = 7, .gate = 250, .commit_every = 100,
             .commit_interval_ms = 0};
  auto committed = kill_after_acknowledged_uncommitted(db, a);
  CHECK(recovered_values(db, a.entities)
        == applying(a.entities, {{1, a.gate}, {committed + 1, a.elements}}));
}
