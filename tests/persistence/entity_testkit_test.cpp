// The entity API through the testkit: effects, replies, follow-ups, rejections,
// failures, snapshots and recovery, on the in-memory journal.
#include "entity_fixtures.hpp"

#include "troupe/persistence/testkit.hpp"

using namespace troupe;
using namespace troupe::persistence;
using namespace std::chrono_literals;
using fx::contains;
using fx::counter;

namespace {

using kit_type = testkit<counter>;

} // namespace

TEST_CASE("entity: a command persists its event, replies once durable, and the state follows") {
  kit_type kit{fx::register_counter, "c1"};
  REQUIRE_FALSE(kit.start_error());
  auto r = kit.run(fx::add{5});
  REQUIRE(r.reply);
  REQUIRE(r.events.size() == 1);
  CHECK(std::get<fx::added>(r.events[0]).n == 5);
  CHECK(r.state.total == 5);
  auto g = kit.run(fx::get{});
  REQUIRE(g.reply);
  CHECK(*g.reply == 5);
  CHECK(g.events.empty());
  CHECK(kit.persistence_id() == "counter|c1");
  // The stored event carries the id, the seq, the manifest and a writer id.
  auto stored = kit.journal().read_events("counter|c1", 1, 10, 10);
  REQUIRE(stored);
  REQUIRE(stored->size() == 1);
  CHECK((*stored)[0].seq == 1);
  CHECK((*stored)[0].manifest == "test.added");
  CHECK_FALSE((*stored)[0].writer.empty());
}

TEST_CASE("entity: several events persist atomically and then_reply sees all of them") {
  kit_type kit{fx::register_counter};
  auto r = kit.run(fx::add_many{{1, 2, 3}});
  REQUIRE(r.reply);
  CHECK(*r.reply == 6);
  CHECK(r.events.size() == 3);
  CHECK(r.state.events == 3);
  // All or nothing: a rejected write stores none of them and changes nothing.
  kit.journal().reject(journal_op::write, kit.persistence_id(), 1);
  auto rejected = kit.run(fx::add_many{{10, 20}});
  REQUIRE_FALSE(rejected.reply);
  CHECK(rejected.reply.error().code() == errc::journal_rejected);
  CHECK(rejected.events.empty());
  CHECK(rejected.state.total == 6);
  CHECK_FALSE(rejected.stopped);
  CHECK(kit.persisted_events().size() == 3);
}

TEST_CASE("entity: restart recovers exactly the state the events produced") {
  kit_type kit{fx::register_counter};
  for (int i = 1; i <= 20; ++i)
    REQUIRE(kit.run(fx::add{i}).reply);
  REQUIRE(kit.run(fx::add_many{{-1, -2}}).reply);
  auto before = kit.state();
  CHECK(before.total == 210 - 3);
  REQUIRE(kit.restart());
  CHECK(kit.state() == before);
  CHECK(counter::recoveries.load() >= 2);
  // Tags chosen by the entity are stored with the events.
  auto negative = kit.journal().events_by_tag("negative", 0, 10);
  REQUIRE(negative);
  CHECK(negative->size() == 2);
}

TEST_CASE("entity: then_run runs once after the persist and never on replay") {
  counter::side_effects = 0;
  kit_type kit{fx::register_counter};
  REQUIRE(kit.run(fx::add_and_run{1}).reply);
  CHECK(counter::side_effects.load() == 1);
  REQUIRE(kit.restart());
  CHECK(counter::side_effects.load() == 1);
  // Not when the persist fails either.
  kit.journal().reject(journal_op::write, kit.persistence_id(), 1);
  CHECK_FALSE(kit.run(fx::add_and_run{1}).reply);
  CHECK(counter::side_effects.load() == 1);
}

TEST_CASE("entity: unhandled commands, missing replies and business errors are error replies") {
  kit_type kit{fx::register_counter, "c2"};
  auto unhandled = kit.run(fx::refuse{});
  REQUIRE_FALSE(unhandled.reply);
  CHECK(unhandled.reply.error().code() == errc::unexpected_message);
  CHECK(contains(unhandled.reply.error().message(), "counter|c2"));
  auto silent = kit.run(fx::silent{});
  REQUIRE_FALSE(silent.reply);
  CHECK(silent.reply.error().code() == errc::unexpected_message);
  auto invalid = kit.run(fx::checked_add{-1});
  REQUIRE_FALSE(invalid.reply);
  CHECK(invalid.reply.error().code() == errc::invalid_argument);
  CHECK(invalid.reply.error().message() == "n must not be negative");
  CHECK(invalid.events.empty());
  REQUIRE(kit.run(fx::checked_add{2}).reply);
  CHECK(kit.state().total == 2);
  CHECK(kit.running());
}

TEST_CASE("entity: an event that does not encode is rejected and the entity goes on") {
  kit_type kit{fx::register_counter, "c3"};
  REQUIRE(kit.run(fx::add{1}).reply);
  auto r = kit.run(fx::add_poison{});
  REQUIRE_FALSE(r.reply);
  CHECK(r.reply.error().code() == errc::journal_rejected);
  CHECK(contains(r.reply.error().message(), "counter|c3"));
  CHECK(contains(r.reply.error().message(), "test.poison"));
  CHECK(r.events.empty());
  CHECK(r.state.total == 1);
  CHECK_FALSE(r.stopped);
  REQUIRE(kit.run(fx::add{1}).reply);
  CHECK(kit.state().total == 2);
}

TEST_CASE("entity: the testkit refuses an event type that does not round-trip through the codec") {
  kit_type kit{fx::register_counter};
  auto r = kit.run(fx::add_lossy{7});
  REQUIRE_FALSE(r.reply);
  CHECK(contains(r.reply.error().message(), "round-trip"));
  CHECK(contains(r.reply.error().message(), "test.lossy"));
  CHECK(r.events.empty());
}

TEST_CASE("entity: a failed persist stops the entity with an error naming the id") {
  kit_type kit{fx::register_counter, "c4"};
  REQUIRE(kit.run(fx::add{1}).reply);
  kit.journal().fail(journal_op::write, kit.persistence_id(), 1);
  auto r = kit.run(fx::add{5});
  REQUIRE_FALSE(r.reply);
  CHECK(r.reply.error().code() == errc::journal_failure);
  CHECK(contains(r.reply.error().message(), "counter|c4"));
  CHECK(contains(r.reply.error().message(), "seq 2"));
  CHECK(r.stopped);
  CHECK(r.state.total == 1);
  // Later commands get an error at once, not a timeout.
  auto after = kit.run(fx::get{});
  REQUIRE_FALSE(after.reply);
  CHECK(after.reply.error().code() != errc::timeout);
  // A new incarnation recovers what was stored.
  REQUIRE(kit.restart());
  CHECK(kit.state().total == 1);
}

TEST_CASE("entity: then_stop stops the entity after the reply") {
  kit_type kit{fx::register_counter};
  auto r = kit.run(fx::add_and_stop{3});
  REQUIRE(r.reply);
  CHECK(r.events.size() == 1);
  CHECK(r.stopped);
  auto after = kit.run(fx::get{});
  REQUIRE_FALSE(after.reply);
  CHECK(after.reply.error().code() != errc::timeout);
  REQUIRE(kit.restart());
  CHECK(kit.state().total == 3);
}

TEST_CASE("entity: a throwing command handler gets an error reply and stops the entity") {
  kit_type kit{fx::register_counter, "c5"};
  auto r = kit.run(fx::boom{});
  REQUIRE_FALSE(r.reply);
  CHECK(r.reply.error().code() == errc::actor_failed);
  CHECK(contains(r.reply.error().message(), "counter|c5"));
  CHECK(r.stopped);
}

TEST_CASE("entity: snapshots every N events keep the K newest and may delete covered events") {
  testkit_options opts;
  opts.entity = entity_options{.snapshot_every = 3, .keep_snapshots = 2,
                               .delete_events_on_snapshot = true};
  kit_type kit{fx::register_counter, "c6", opts};
  for (int i = 1; i <= 10; ++i)
    REQUIRE(kit.run(fx::add{i}).reply);
  auto& j = kit.journal();
  const auto pid = kit.persistence_id();
  // Snapshot saves, retention and deletes run after the replies: wait for them.
  auto snapshot_at = [&](sequence_nr max_seq) -> sequence_nr {
    snapshot_criteria c;
    c.max_seq = max_seq;
    auto s = j.load(pid, c);
    return s && *s ? (*s)->seq : 0;
  };
  REQUIRE(troupe::test::wait_until([&] {
    auto gone = j.read_events(pid, 1, 3, 10);
    return snapshot_at(max_sequence_nr) == 9 && snapshot_at(5) == 0 && gone && gone->empty();
  }));
  CHECK(snapshot_at(8) == 6);
  auto kept = j.read_events(pid, 4, 10, 10);
  REQUIRE(kept);
  CHECK(kept->size() == 7);
  auto before = kit.state();
  CHECK(before.total == 55);
  REQUIRE(kit.restart());
  CHECK(kit.state() == before);
}

TEST_CASE("entity: a failed snapshot save is logged and the entity goes on") {
  testkit_options opts;
  opts.entity = entity_options{.snapshot_every = 2};
  kit_type kit{fx::register_counter, "c7", opts};
  kit.journal().fail(journal_op::snapshot_save);
  for (int i = 1; i <= 5; ++i)
    REQUIRE(kit.run(fx::add{i}).reply);
  CHECK(kit.journal().calls(journal_op::snapshot_save) == 2);
  auto before = kit.state();
  REQUIRE(kit.restart());
  CHECK(kit.state() == before);
  CHECK(before.total == 15);
}

TEST_CASE("entity: recovery reads the journal page by page") {
  testkit_options opts;
  opts.config = {"persistence.entity.recovery-page-size=10"};
  kit_type kit{fx::register_counter, "c8", opts};
  std::vector<std::int64_t> ns(95, 1);
  REQUIRE(kit.run(fx::add_many{ns}).reply);
  auto reads = kit.journal().calls(journal_op::read);
  REQUIRE(kit.restart());
  CHECK(kit.state().total == 95);
  CHECK(kit.journal().calls(journal_op::read) - reads == 10);
}
