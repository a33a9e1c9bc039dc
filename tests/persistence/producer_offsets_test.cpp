// Deduplication by origin (producer_offsets.hpp), in an entity run through the
// testkit: a command whose origin was applied is acknowledged without an event,
// per producer, and the marks are rebuilt by recovery.
#include "streams/dedup_tally.hpp"

#include "troupe/persistence/testkit.hpp"

#include <doctest/doctest.h>

using troupe::persistence::origin;
using troupe::persistence::producer_offsets;

TEST_CASE("producer offsets: a mark per producer, at or below which an origin is seen") {
  producer_offsets p;
  CHECK_FALSE(p.seen({"a", 1}));
  p.record({"a", 5});
  p.record({"a", 3});  // a lower sequence never lowers the mark
  CHECK(p.highest("a") == 5u);
  CHECK(p.seen({"a", 5}));
  CHECK(p.seen({"a", 1}));
  CHECK_FALSE(p.seen({"a", 6}));
  CHECK_FALSE(p.seen({"b", 1}));  // producers are independent
  p.record({});                   // an empty origin is never recorded nor seen
  CHECK_FALSE(p.seen({}));
  CHECK(p.size() == 1);
  nlohmann::json j = p;
  CHECK(j.get<producer_offsets>() == p);
  CHECK(nlohmann::json(origin{}).is_null());
  CHECK(nlohmann::json(origin{"a", 7}).get<origin>() == origin{"a", 7});
}

TEST_CASE("producer offsets: an entity answers a command it applied already without persisting, "
          "and recovery keeps the marks") {
  troupe::persistence::testkit<dedup_tally::entity> kit{dedup_tally::register_types, "t-1"};
  auto first = kit.run(dedup_tally::add{10, {"numbers", 1}});
  REQUIRE(first.reply);
  CHECK(first.events.size() == 1);
  auto again = kit.run(dedup_tally::add{10, {"numbers", 1}});
  REQUIRE(again.reply);  // acknowledged like the first time
  CHECK(again.events.empty());
  CHECK(kit.run(dedup_tally::add{20, {"numbers", 2}}).events.size() == 1);
  CHECK(kit.run(dedup_tally::add{30, {"other", 1}}).events.size() == 1);  // another producer
  CHECK(kit.run(dedup_tally::add{40, {}}).events.size() == 1);            // no origin: applied
  CHECK(kit.run(dedup_tally::add{40, {}}).events.size() == 1);
  REQUIRE(kit.restart());
  CHECK(kit.run(dedup_tally::add{20, {"numbers", 2}}).events.empty());
  CHECK(kit.run(dedup_tally::add{15, {"numbers", 1}}).events.empty());    // below the mark
  CHECK(kit.state().values == std::vector<std::int64_t>{10, 20, 30, 40, 40});
  CHECK(kit.state().applied.highest("numbers") == 2u);
}
