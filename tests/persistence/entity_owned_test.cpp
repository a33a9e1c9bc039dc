// Owned entities (owned_entity.hpp), what a shard relies on: fencing, stop and hand
// back, the idle timeout; and the journal's backpressure (a full write queue).
#include "entity_fixtures.hpp"

#include "troupe/actors/ask.hpp"
#include "troupe/actors/caf_error.hpp"
#include "troupe/persistence/owned_entity.hpp"

#include <caf/all.hpp>

#include <doctest/doctest.h>

#include <future>
#include <optional>

using namespace troupe;
using namespace troupe::persistence;
using namespace std::chrono_literals;
using fx::counter;

namespace {

struct spawn_it {
  std::string id;
  entity_placement placement;
  entity_options options;
};

/// What the owner actor saw, for the test thread.
struct owner_log {
  std::promise<entity_ref<counter>> spawned;
  std::promise<error> down;       // the entity's exit reason
  std::promise<entity_idle> idle;
};

/// An owner (a stand-in for a shard): spawns one owned entity on request and
/// reports its exit reason and idle notice.
caf::behavior owner_behavior(caf::event_based_actor* self, owner_log* log) {
  self->set_down_handler([log](caf::down_msg& dm) { log->down.set_value(from_caf_error(dm.reason)); });
  return {
    [self, log](spawn_it& s) {
      auto e = spawn_owned_entity<counter>(self, s.id, s.placement, s.options);
      REQUIRE(e);
      log->spawned.set_value(*e);
    },
    [log](entity_idle& m) { log->idle.set_value(m); },
  };
}

struct owned_fixture {
  std::shared_ptr<memory_journal> j = std::make_shared<memory_journal>();
  std::unique_ptr<node> n;
  owner_log log;
  caf::actor owner;

  explicit owned_fixture(std::vector<std::string> overrides = {}) {
    n = fx::make_node(j, std::move(overrides));
    auto o = n->spawn("owner", owner_behavior, &log);
    REQUIRE(o);
    owner = *o;
  }

  entity_ref<counter> spawn(spawn_it s) {
    caf::anon_send(owner, std::move(s));
    return log.spawned.get_future().get();
  }
};

} // namespace

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(spawn_it)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(owner_log*)

TEST_CASE("owned entity: a fenced persist stops it, answering in-flight and stashed commands "
          "with fenced") {
  owned_fixture f;
  auto e = f.spawn({"f1", {.fence = write_fence{"counter/shard-1", 1}}, {}});
  REQUIRE(e.ask(fx::add{1}, 10s));
  CHECK(*f.j->fence_epoch("counter/shard-1") == 1);
  // A newer owner takes the shard while a persist is in flight and two commands wait.
  f.j->delay(journal_op::write, 1h, "counter|f1", 1);
  auto in_flight = fx::ask_async(e, fx::add{2});
  REQUIRE(troupe::test::wait_until([&] { return f.j->calls(journal_op::write) == 2; }));
  auto stashed1 = fx::ask_async(e, fx::add{3});
  auto stashed2 = fx::ask_async(e, fx::get{});
  REQUIRE(troupe::test::wait_until([&] { return fx::stashed(*f.n) == 2; }));
  REQUIRE(f.j->advance_fence("counter/shard-1", 2));
  f.j->clear_faults();
  auto r1 = in_flight.get();
  auto r2 = stashed1.get();
  auto r3 = stashed2.get();
  for (auto* r : {&r1.error(), &r2.error(), &r3.error()}) {
    CHECK(r->code() == errc::fenced);
    CHECK(fx::contains(r->message(), "counter|f1"));
    CHECK(fx::contains(r->message(), "counter/shard-1"));
  }
  CHECK(fx::contains(r1.error().message(), "epoch 2"));
  CHECK(fx::contains(r1.error().message(), "epoch 1"));
  // The owner hears why (the exit reason), and nothing of the refused persist landed.
  auto down = f.log.down.get_future().get();
  CHECK(down.code() == errc::fenced);
  CHECK(*f.j->highest_sequence_nr("counter|f1") == 1);
}

TEST_CASE("owned entity: stop and hand back finishes the persist in flight and hands back the "
          "stash in order") {
  owned_fixture f;
  auto e = f.spawn({"h1", {}, {}});
  f.j->delay(journal_op::write, 1h, "counter|h1", 1);
  auto first = fx::ask_async(e, fx::add{1});
  REQUIRE(troupe::test::wait_until([&] { return f.j->calls(journal_op::write) == 1; }));
  auto second = fx::ask_async(e, fx::add_many{{10}});
  REQUIRE(troupe::test::wait_until([&] { return fx::stashed(*f.n) == 1; }));
  auto third = fx::ask_async(e, fx::add_many{{100}});
  REQUIRE(troupe::test::wait_until([&] { return fx::stashed(*f.n) == 2; }));
  // The request, then one more command behind it (one thread enqueues both, so
  // the entity sees them in this order): both wait for the persist in flight.
  auto handed = std::async(std::launch::async, [&] {
    troupe::detail::thread_caf_state_guard release_after;
    caf::scoped_actor self{f.n->system()};
    std::optional<expected<handed_back>> result;
    auto request = self->request(e.actor(), caf::infinite, stop_and_hand_back{});
    e.tell(fx::add{1000});
    request.receive([&](handed_back& x) { result = std::move(x); },
                    [&](caf::error& err) { result = expected<handed_back>{from_caf_error(err)}; });
    return std::move(*result);
  });
  REQUIRE(troupe::test::wait_until([&] { return fx::stashed(*f.n) == 3; }));
  CHECK(handed.wait_for(0s) == std::future_status::timeout);
  f.j->clear_faults();
  REQUIRE(first.get());
  auto h = handed.get();
  REQUIRE(h);
  CHECK(h->persistence_id == "counter|h1");
  REQUIRE(h->commands->size() == 3);
  CHECK(*f.j->highest_sequence_nr("counter|h1") == 1);  // the stash never ran
  auto down = f.log.down.get_future().get();
  CHECK_FALSE(down);  // a normal exit
  // The entity's next home answers the original requesters, in the original order.
  auto next = spawn_entity<counter>(*f.n, "h1");
  REQUIRE(next);
  for (auto& m : *h->commands)
    next->actor()->enqueue(std::move(m), nullptr);
  auto r2 = second.get();
  auto r3 = third.get();
  REQUIRE(r2);
  REQUIRE(r3);
  CHECK(*r2 == 11);
  CHECK(*r3 == 111);
  CHECK(*next->ask(fx::get{}, 10s) == 1111);
}

TEST_CASE("owned entity: an idle one tells its owner, and one without an owner stops itself") {
  owned_fixture f;
  entity_options opts;
  opts.idle_timeout = 50ms;
  auto e = f.spawn({"i1", {}, opts});
  REQUIRE(e.ask(fx::add{1}, 10s));
  auto idle = f.log.idle.get_future().get();
  CHECK(idle.persistence_id == "counter|i1");
  CHECK(idle.entity == e.actor());
  // The owner passivates it: nothing held, a normal exit.
  auto h = troupe::ask<handed_back>(f.n->system(), e.actor(), 10s, stop_and_hand_back{});
  REQUIRE(h);
  CHECK(h->commands->empty());
  CHECK_FALSE(f.log.down.get_future().get());
  CHECK(f.n->metrics()
          .counter("troupe_persistence_entity_passivations_total", {{"entity_type", "counter"}})
          .value()
        == 1);

  auto plain = spawn_entity<counter>(*f.n, "i2", opts);
  REQUIRE(plain);
  REQUIRE(plain->ask(fx::add{1}, 10s));
  REQUIRE(troupe::test::wait_until([&] {
    return f.n->metrics()
             .counter("troupe_persistence_entity_passivations_total", {{"entity_type", "counter"}})
             .value()
           == 2;
  }));
  auto gone = plain->ask(fx::get{}, 10s);
  REQUIRE_FALSE(gone);
  CHECK(gone.error().code() == errc::actor_down);
  // It recovers its state when started again.
  auto back = spawn_entity<counter>(*f.n, "i2");
  REQUIRE(back);
  CHECK(*back->ask(fx::get{}, 10s) == 1);
}

TEST_CASE("owned entity: a full journal queue defers the persist instead of failing it") {
  owned_fixture f{{"persistence.journal.max-queued-writes=1"}};
  auto blocker = spawn_entity<counter>(*f.n, "blocker");
  auto queued = spawn_entity<counter>(*f.n, "queued");
  auto e = spawn_entity<counter>(*f.n, "e");
  REQUIRE(blocker);
  REQUIRE(queued);
  REQUIRE(e);
  // All three recovered and running (a recovery waits for earlier writes).
  REQUIRE(e->ask(fx::add{1}, 10s));
  REQUIRE(queued->ask(fx::get{}, 10s));
  REQUIRE(blocker->ask(fx::get{}, 10s));
  // The writer is stuck in a batch, and one write waits: the queue is full.
  f.j->delay(journal_op::write, 1h, "counter|blocker", 1);
  auto b = fx::ask_async(*blocker, fx::add{1});
  REQUIRE(troupe::test::wait_until([&] { return f.j->calls(journal_op::write) == 2; }));
  auto q = fx::ask_async(*queued, fx::add{1});
  auto throttled = [&] {
    return f.n->metrics()
      .counter("troupe_persistence_entity_persist_throttled_total", {{"entity_type", "counter"}})
      .value();
  };
  auto deferred = fx::ask_async(*e, fx::add{2});
  REQUIRE(troupe::test::wait_until([&] { return throttled() >= 2; }));  // retried, still full
  f.j->clear_faults();
  REQUIRE(b.get());
  REQUIRE(q.get());
  auto r = deferred.get();
  INFO((r ? std::string{} : r.error().to_string()));
  CHECK(r);
  CHECK(*e->ask(fx::get{}, 10s) == 3);
  CHECK(f.n->metrics()
          .counter("troupe_persistence_journal_writes_total", {{"result", "overloaded"}})
          .value()
        >= 1);
}

TEST_CASE("entity: spawning checks that every command and reply type is registered") {
  auto j = std::make_shared<memory_journal>();
  auto schema = node_config_keys();
  add_config_keys(schema);
  auto codec = std::make_shared<codec_registry>();
  REQUIRE(codec->add<fx::added>("test.added"));
  REQUIRE(codec->add<fx::poison>("test.poison"));
  REQUIRE(codec->add<fx::lossy>("test.lossy"));
  auto n = troupe::test::make_node({}, std::move(schema), node::options{codec});
  REQUIRE(install_journal(*n, j, j));
  auto e = spawn_entity<counter>(*n, "c1");
  REQUIRE_FALSE(e);
  CHECK(e.error().code() == errc::unknown_manifest);
  CHECK(fx::contains(e.error().message(), "fx::add"));
  CHECK(fx::contains(e.error().message(), "counter|c1"));
}
