// Journal query sources over a real SQLite journal: current and live, by tag and
// by persistence id, carrying offsets to resume from.
#include "tally_entity.hpp"

#include "support/node_fixture.hpp"
#include "support/wait.hpp"

#include "troupe/persistence/journal_service.hpp"
#include "troupe/streams/journal_source.hpp"
#include "troupe/streams/streams.hpp"

#include <doctest/doctest.h>
#include <fmt/format.h>

using namespace std::chrono_literals;
namespace ts = troupe::streams;
using troupe::persistence::event_record;

namespace {

void fill(troupe::node& node, const std::string& id, int from, int to) {
  auto ref = troupe::persistence::spawn_entity<tally::entity>(node, id);
  REQUIRE(ref);
  for (int v = from; v < to; ++v)
    REQUIRE(ref->ask(tally::append{v}, 5s));
}

} // namespace

TEST_CASE("journal source: events_by_tag current ends at the events that existed and resumes after an offset") {
  troupe::test::temp_dir dir;
  auto node = tally::make_node(dir);
  fill(*node, "a", 0, 150);
  fill(*node, "b", 0, 150);
  auto journal = troupe::persistence::find_journal(*node)->journal_ptr();
  auto r = ts::events_by_tag(journal, "tally", 0, {.page_size = 32, .buffer = 16})
             .to(ts::collect_all<event_record>())
             .run(*node);
  REQUIRE(r);
  auto all = r->wait(30s);
  REQUIRE(all);
  REQUIRE(all->size() == 300);
  for (std::size_t i = 1; i < all->size(); ++i)
    CHECK((*all)[i].offset > (*all)[i - 1].offset);
  // Resume after the 100th event: exactly the remaining 200.
  auto after = (*all)[99].offset;
  auto rest = ts::events_by_tag(journal, "tally", after).to(ts::collect_all<event_record>()).run(*node);
  REQUIRE(rest);
  auto tail = rest->wait(30s);
  REQUIRE(tail);
  REQUIRE(tail->size() == 200);
  CHECK(tail->front().offset == (*all)[100].offset);
}

TEST_CASE("journal source: events_by_persistence_id current delivers one entity's events in sequence") {
  troupe::test::temp_dir dir;
  auto node = tally::make_node(dir);
  fill(*node, "a", 0, 40);
  fill(*node, "b", 0, 5);
  auto journal = troupe::persistence::find_journal(*node)->journal_ptr();
  auto r = ts::events_by_persistence_id(journal, "tally|a", 11).to(ts::collect_all<event_record>()).run(*node);
  REQUIRE(r);
  auto v = r->wait(30s);
  REQUIRE(v);
  REQUIRE(v->size() == 30);
  CHECK(v->front().seq == 11);
  CHECK(v->back().seq == 40);
}

TEST_CASE("journal source: a live events_by_tag source delivers events persisted after it started") {
  troupe::test::temp_dir dir;
  auto node = tally::make_node(dir);
  fill(*node, "a", 0, 10);
  auto journal = troupe::persistence::find_journal(*node)->journal_ptr();
  auto r = ts::events_by_tag(journal, "tally", 0, {.live = true, .refresh_interval = 5ms})
             .via(ts::take(25))
             .to(ts::collect_all<event_record>())
             .run(*node);
  REQUIRE(r);
  fill(*node, "b", 0, 15);
  auto v = r->wait(30s);
  REQUIRE(v);
  REQUIRE(v->size() == 25);
  CHECK(v->back().persistence_id == "tally|b");
}

TEST_CASE("journal source: a journal source paced by a slow consumer delivers what was asked and stops when the stream completes") {
  troupe::test::temp_dir dir;
  auto node = tally::make_node(dir);
  fill(*node, "a", 0, 400);
  auto journal = troupe::persistence::find_journal(*node)->journal_ptr();
  auto [gate_src, gate] = ts::queue_source<int>(1000);
  std::atomic<int> consumed{0};
  // zip pulls one journal event per gate token: the consumer sets the pace.
  auto done = ts::events_by_tag(journal, "tally", 0, {.page_size = 20, .buffer = 10})
                .via(ts::zip(gate_src))
                .to(ts::for_each<std::pair<event_record, int>>([&](auto&&) { consumed.fetch_add(1); }))
                .run(*node, {.batch_size = 1});
  REQUIRE(done);
  for (int i = 0; i < 50; ++i)
    REQUIRE(gate.offer(i) == ts::offer_result::enqueued);
  CHECK(troupe::test::wait_until([&] { return consumed.load() == 50; }));
  gate.complete();
  auto r = done->wait(30s);
  REQUIRE(r);
  CHECK(consumed.load() == 50);
}
