// The counter through troupe's testkit: a real node with an in-memory journal.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include "counter.hpp"

#include <troupe/persistence/testkit.hpp>

#include <doctest/doctest.h>

TEST_CASE("the counter adds, refuses non-positive amounts and recovers") {
  troupe::persistence::testkit<starter::counter> kit{starter::register_types};
  auto r = kit.run(starter::add{5});
  CHECK(r.reply);                     // expected<done>
  CHECK(r.events.size() == 1);        // what the command persisted
  CHECK(r.state.value == 5);          // the state after it

  auto refused = kit.run(starter::add{-1});
  CHECK_FALSE(refused.reply);         // an error reply, nothing persisted
  CHECK(refused.events.empty());

  CHECK(kit.restart());               // recovery from the journal yields the same state
  CHECK(kit.run(starter::get{}).reply.value() == 5);
}
