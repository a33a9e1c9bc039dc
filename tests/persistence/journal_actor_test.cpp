// The journal actor (journal_actor.hpp): fence requests an actor makes without
// blocking, answered as messages.
#include "entity_fixtures.hpp"

#include "troupe/persistence/journal_actor.hpp"

#include <caf/all.hpp>

#include <doctest/doctest.h>

#include <future>

using namespace troupe;
using namespace troupe::persistence;
using namespace std::chrono_literals;

namespace {

struct ping {};

/// Results an actor's fence requests report to the test thread.
struct fence_results {
  std::promise<expected<fence_advanced>> raised;
  std::promise<expected<fence_advanced>> lowered;
  std::promise<expected<fence_epoch_is>> read;
};

} // namespace

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(ping)

TEST_CASE("journal actor: advance_fence and fence_epoch from inside an actor, answered as messages") {
  auto j = std::make_shared<memory_journal>();
  auto n = fx::make_node(j);
  fence_results out;
  auto raised = out.raised.get_future();
  auto lowered = out.lowered.get_future();
  auto read = out.read.get_future();
  auto a = n->spawn("fencer", [&out](caf::event_based_actor* self) -> caf::behavior {
    advance_fence(self, "account/shard-7", 4, 10s).then([self, &out](expected<fence_advanced> r) {
      out.raised.set_value(r);
      advance_fence(self, "account/shard-7", 3, 10s).then([self, &out](expected<fence_advanced> l) {
        out.lowered.set_value(l);
        read_fence_epoch(self, "account/shard-7", 10s).then(
          [&out](expected<fence_epoch_is> e) { out.read.set_value(e); });
      });
    });
    return {[](ping) {}};
  });
  REQUIRE(a);
  auto r = raised.get();
  REQUIRE(r);
  CHECK(r->key == "account/shard-7");
  CHECK(r->epoch == 4);
  auto l = lowered.get();
  REQUIRE_FALSE(l);
  CHECK(l.error().code() == errc::fenced);
  CHECK(fx::contains(l.error().message(), "account/shard-7"));
  auto e = read.get();
  REQUIRE(e);
  CHECK(e->epoch == 4);
  CHECK(*j->fence_epoch("account/shard-7") == 4);
}

TEST_CASE("journal actor: a slow advance_fence never blocks the asking actor") {
  auto j = std::make_shared<memory_journal>();
  auto n = fx::make_node(j);
  // The journal holds the advance until the faults are cleared.
  j->delay(journal_op::advance_fence, 1h, "slow", 1);
  std::promise<expected<fence_advanced>> p;
  auto answered = p.get_future();
  auto a = n->spawn("fencer", [&p](caf::event_based_actor* self) -> caf::behavior {
    advance_fence(self, "slow", 1, 1h).then([&p](expected<fence_advanced> r) { p.set_value(r); });
    return {[](ping) { return 42; }};
  });
  REQUIRE(a);
  REQUIRE(troupe::test::wait_until([&] { return j->calls(journal_op::advance_fence) == 1; }));
  // The actor serves other messages while the journal works.
  auto pong = troupe::ask<int>(n->system(), *a, 10s, ping{});
  REQUIRE(pong);
  CHECK(*pong == 42);
  CHECK(answered.wait_for(0s) == std::future_status::timeout);
  j->clear_faults();
  auto r = answered.get();
  REQUIRE(r);
  CHECK(*j->fence_epoch("slow") == 1);
}
