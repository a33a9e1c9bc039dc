// Remember-entities' events: deltas fold into the set, a whole-set event (a
// compaction) replaces what came before it, and a damaged event is named.
#include "remembered_entities.hpp"

#include <doctest/doctest.h>

using namespace troupe;
using namespace troupe::sharding::detail;

TEST_CASE("remembered entities: changes fold into the set, and a whole set replaces what came "
          "before it") {
  const std::string pid = "troupe.sharding-entities|account|3";
  std::vector<persistence::event_record> events;
  events.push_back(remembered_record(pid, 1, {"a", "b", "c"}, {}));
  events.push_back(remembered_record(pid, 2, {"d"}, {"b"}));
  auto f = fold_remembered(events);
  REQUIRE(f);
  CHECK(f->ids == std::set<std::string>{"a", "c", "d"});
  CHECK(f->changes_since_set == 2);
  events.push_back(remembered_set_record(pid, 3, {"x", "y"}));
  events.push_back(remembered_record(pid, 4, {"z"}, {"x"}));
  f = fold_remembered(events);
  REQUIRE(f);
  CHECK(f->ids == std::set<std::string>{"y", "z"});
  CHECK(f->changes_since_set == 1);
  // After the compaction deleted the events before the set.
  std::vector<persistence::event_record> compacted(events.begin() + 2, events.end());
  auto g = fold_remembered(compacted);
  REQUIRE(g);
  CHECK(g->ids == f->ids);
}

TEST_CASE("remembered entities: a damaged event fails the fold naming it") {
  auto e = remembered_record("troupe.sharding-entities|account|1", 7, {"a"}, {});
  e.payload = {0xff, 0x00};
  auto f = fold_remembered({e});
  REQUIRE_FALSE(f);
  CHECK(f.error().code() == errc::decode_failed);
  CHECK(f.error().message().find("seq 7") != std::string::npos);
}
