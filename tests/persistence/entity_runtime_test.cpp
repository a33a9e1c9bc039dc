// The entity runtime on a node: stash and durability ordering, stash bounds,
// single writer, recovery permits and stalls, shutdown, and asks from actors.
// (Journal failures: entity_journal_failure_test.cpp.)
#include "entity_fixtures.hpp"

#include "troupe/actors/ask.hpp"
#include "troupe/actors/supervisor.hpp"

#include <caf/all.hpp>

#include <future>

using namespace troupe;
using namespace troupe::persistence;
using namespace troupe::test;
using namespace std::chrono_literals;
using fx::ask_async;
using fx::contains;
using fx::counter;
using fx::stashed;

namespace {

double gauge(node& n, const std::string& name, const metric_labels& labels = {}) {
  return n.metrics().gauge_value(name, labels).value_or(-1);
}


bool answered(auto& future) {
  return future.wait_for(0s) == std::future_status::ready;
}

/// An entity with one persisted event whose next write is held inside the journal:
/// `held` waits for the reply to that write (add{10}); commands sent meanwhile go
/// to the stash. clear_faults() lets the write complete.
struct held_write {
  std::shared_ptr<memory_journal> j = std::make_shared<memory_journal>();
  std::unique_ptr<node> n;
  entity_ref<counter> ref;
  std::future<expected<done>> held;

  explicit held_write(const std::string& id, entity_options opts = {}) : n(fx::make_node(j)) {
    auto r = spawn_entity<counter>(*n, id, opts);
    REQUIRE(r);
    ref = *r;
    REQUIRE(ref.ask(fx::add{1}, 10s));
    j->delay(journal_op::write, 1h, persistence_id_of("counter", id), 1);
    held = ask_async(ref, fx::add{10}, 60s);
    REQUIRE(wait_until([&] { return j->calls(journal_op::write) == 2; }));
  }

  // Runs before the members are destroyed: `held` (a std::async future) would
  // otherwise wait for a write that a failed test left held.
  ~held_write() { j->clear_faults(); }

  /// Sends a command that lands in the stash (after the ones sent before).
  template <class Command>
  auto stash(Command cmd) {
    auto before = stashed(*n);
    auto f = ask_async(ref, cmd, 60s);
    REQUIRE(wait_until([&] { return stashed(*n) == before + 1; }));
    return f;
  }
};

} // namespace

TEST_CASE("entity: commands wait while a persist is in flight, and its reply comes once it is durable") {
  held_write h{"s1"};
  auto second = h.stash(fx::get{});
  // The write is held inside the journal: not durable, so no reply yet.
  CHECK_FALSE(answered(h.held));
  CHECK(*h.j->highest_sequence_nr("counter|s1") == 1);
  h.j->clear_faults();
  REQUIRE(h.held.get());
  CHECK(*h.j->highest_sequence_nr("counter|s1") == 2);
  auto r2 = second.get();
  REQUIRE(r2);
  CHECK(*r2 == 11);  // the stashed command saw the persisted event
  CHECK(stashed(*h.n) == 0);
}

TEST_CASE("entity: a command that finds the stash full gets `overloaded` at once") {
  held_write h{"s2", entity_options{.stash_capacity = 2}};
  auto s1 = h.stash(fx::add{100});
  auto s2 = h.stash(fx::get{});
  auto refused = h.ref.ask(fx::get{}, 30s);
  REQUIRE_FALSE(refused);
  CHECK(refused.error().code() == errc::overloaded);
  CHECK(contains(refused.error().message(), "counter|s2"));
  CHECK(h.n->metrics().counter_value("troupe_persistence_entity_stash_overflow_total",
                                     {{"entity_type", "counter"}}) == 1u);
  h.j->clear_faults();
  REQUIRE(h.held.get());
  REQUIRE(s1.get());
  auto total = s2.get();
  REQUIRE(total);
  CHECK(*total == 111);  // stashed commands ran in arrival order
}

TEST_CASE("entity: a sequence conflict stops the entity and every waiting command gets an error") {
  held_write h{"w1"};
  auto waiting1 = h.stash(fx::get{});
  auto waiting2 = h.stash(fx::add{5});
  // Another writer takes seq 2 while the entity's write of seq 2 is held.
  fx::store(*h.j, {fx::added_record("counter|w1", 2, 100)});
  h.j->clear_faults();
  auto r = h.held.get();
  REQUIRE_FALSE(r);
  CHECK(r.error().code() == errc::sequence_conflict);
  CHECK(contains(r.error().message(), "counter|w1"));
  CHECK(contains(r.error().message(), "seq 2"));
  auto x1 = waiting1.get();
  REQUIRE_FALSE(x1);
  CHECK(x1.error().code() == errc::actor_down);
  CHECK(contains(x1.error().message(), "counter|w1"));
  auto x2 = waiting2.get();
  REQUIRE_FALSE(x2);
  CHECK(x2.error().code() == errc::actor_down);
  CHECK(stashed(*h.n) == 0);
}

TEST_CASE("entity: two incarnations of one id cannot both write (single writer)") {
  auto j = std::make_shared<memory_journal>();
  auto n = fx::make_node(j);
  auto a = spawn_entity<counter>(*n, "twin");
  auto b = spawn_entity<counter>(*n, "twin");
  REQUIRE(a);
  REQUIRE(b);
  REQUIRE(a->ask(fx::get{}, 10s));
  REQUIRE(b->ask(fx::get{}, 10s));
  REQUIRE(a->ask(fx::add{1}, 10s));
  auto r = b->ask(fx::add{2}, 10s);
  REQUIRE_FALSE(r);
  CHECK(r.error().code() == errc::sequence_conflict);
  CHECK(contains(r.error().message(), "counter|twin"));
  auto total = a->ask(fx::get{}, 10s);
  REQUIRE(total);
  CHECK(*total == 1);
  auto stored = j->read_events("counter|twin", 1, 10, 10);
  REQUIRE(stored);
  CHECK(stored->size() == 1);
}

TEST_CASE("entity: no more recoveries run at once than the node allows") {
  auto j = std::make_shared<memory_journal>();
  auto n = fx::make_node(j, {"persistence.entity.max-concurrent-recoveries=1"});
  j->delay(journal_op::snapshot_load, 1h);
  std::vector<entity_ref<counter>> refs;
  for (auto id : {"p1", "p2", "p3"}) {
    auto ref = spawn_entity<counter>(*n, id);
    REQUIRE(ref);
    refs.push_back(*ref);
  }
  REQUIRE(wait_until([&] {
    return gauge(*n, "troupe_persistence_entity_recoveries_waiting") == 2
           && j->calls(journal_op::snapshot_load) == 1;
  }));
  CHECK(gauge(*n, "troupe_persistence_entity_recoveries_in_progress") == 1);
  CHECK(j->calls(journal_op::snapshot_load) == 1);
  j->clear_faults();
  for (auto& ref : refs) {
    auto total = ref.ask(fx::get{}, 10s);
    REQUIRE(total);
    CHECK(*total == 0);
  }
  CHECK(gauge(*n, "troupe_persistence_entity_recoveries_waiting") == 0);
  CHECK(gauge(*n, "troupe_persistence_entity_recoveries_in_progress") == 0);
}

TEST_CASE("entity: a recovery the journal does not answer fails instead of hanging") {
  auto j = std::make_shared<memory_journal>();
  auto n = fx::make_node(j, {"persistence.entity.recovery-timeout=50ms"});
  j->delay(journal_op::read_highest_seq, 1h, "counter|stuck");
  auto ref = spawn_entity<counter>(*n, "stuck");
  REQUIRE(ref);
  auto r = ref->ask(fx::get{}, 30s);
  REQUIRE_FALSE(r);
  CHECK(r.error().code() == errc::actor_down);
  CHECK(contains(r.error().message(), "counter|stuck seq 1"));
  CHECK(contains(r.error().message(), "did not answer"));
  j->clear_faults();
}

TEST_CASE("entity: commands sent during recovery wait for it and see the recovered state") {
  auto j = std::make_shared<memory_journal>();
  fx::store(*j, {fx::added_record("counter|late", 1, 4), fx::added_record("counter|late", 2, 5)});
  auto n = fx::make_node(j);
  j->delay(journal_op::read, 1h, "counter|late");
  auto ref = spawn_entity<counter>(*n, "late");
  REQUIRE(ref);
  auto a = ask_async(*ref, fx::add{1});
  REQUIRE(wait_until([&] { return stashed(*n) == 1; }));
  auto b = ask_async(*ref, fx::get{});
  REQUIRE(wait_until([&] { return stashed(*n) == 2; }));
  j->clear_faults();
  REQUIRE(a.get());
  auto total = b.get();
  REQUIRE(total);
  CHECK(*total == 10);
}

TEST_CASE("entity: stopping the node answers the commands an entity still holds") {
  held_write h{"bye"};
  auto waiting = h.stash(fx::get{});
  h.n->shutdown();
  auto r = h.held.get();
  REQUIRE_FALSE(r);
  CHECK(r.error().code() == errc::actor_down);
  auto w = waiting.get();
  REQUIRE_FALSE(w);
  CHECK(w.error().code() == errc::actor_down);
  CHECK(contains(w.error().message(), "counter|bye"));
}

TEST_CASE("entity: spawning fails clearly without a journal or with unregistered event types") {
  SUBCASE("a supervised entity on a node without journal stops with the reason") {
    std::mutex mtx;
    std::vector<std::string> lines;
    auto n = make_node();
    n->log().add_sink([&](const log_record& r) {
      std::lock_guard<std::mutex> guard{mtx};
      lines.emplace_back(r.message);
    });
    supervisor_spec spec{.name = "lonely", .max_restarts = 0,
                         .children = {entity_child<counter>("x")}};
    REQUIRE(n->spawn_supervisor(spec));
    CHECK(wait_until([&] {
      std::lock_guard<std::mutex> guard{mtx};
      for (auto& l : lines)
        if (contains(l, "counter|x cannot start") && contains(l, "install_journal"))
          return true;
      return false;
    }));
    n->shutdown();
  }
  SUBCASE("no journal") {
    auto n = make_node();
    auto ref = spawn_entity<counter>(*n, "x");
    REQUIRE_FALSE(ref);
    CHECK(ref.error().code() == errc::not_found);
    CHECK(contains(ref.error().message(), "install_journal"));
  }
  SUBCASE("an unregistered event type") {
    auto schema = node_config_keys();
    add_config_keys(schema);
    auto codec = std::make_shared<codec_registry>();
    REQUIRE(codec->add<fx::added>("test.added"));
    auto n = make_node({}, schema, node::options{codec});
    auto j = std::make_shared<memory_journal>();
    REQUIRE(install_journal(*n, j, j));
    auto ref = spawn_entity<counter>(*n, "x");
    REQUIRE_FALSE(ref);
    CHECK(ref.error().code() == errc::unknown_manifest);
    CHECK(contains(ref.error().message(), "fx::poison"));
    CHECK(contains(ref.error().message(), "counter|x"));
  }
}

TEST_CASE("entity: actors ask entities without blocking, and tell sends without a reply") {
  auto j = std::make_shared<memory_journal>();
  auto n = fx::make_node(j);
  auto ref = spawn_entity<counter>(*n, "asked");
  REQUIRE(ref);
  ref->tell(fx::add{2});
  std::promise<expected<std::int64_t>> result;
  auto asker = n->spawn("asker", [ref = *ref, &result](caf::event_based_actor* self) {
    troupe::ask<done>(self, ref, 10s, fx::add{3}).then([=, &result](expected<done> r) {
      if (!r) {
        result.set_value(r.error());
        return;
      }
      troupe::ask<std::int64_t>(self, ref, 10s, fx::get{}).then(
        [&result](expected<std::int64_t> total) { result.set_value(std::move(total)); });
    });
    return caf::behavior{[](int) {}};
  });
  REQUIRE(asker);
  auto total = result.get_future().get();
  REQUIRE(total);
  CHECK(*total == 5);
  auto blocking = troupe::ask<std::int64_t>(n->system(), *ref, 10s, fx::get{});
  REQUIRE(blocking);
  CHECK(*blocking == 5);
}

namespace {

/// A journal whose replay reads wait at a gate the test opens one read at a time,
/// and which records how many reads were in flight at once.
class gated_journal final : public journal_backend, public snapshot_backend {
public:
  std::shared_ptr<memory_journal> inner = std::make_shared<memory_journal>();

  void open_one() {
    std::lock_guard<std::mutex> guard{mtx_};
    ++permits_;
    cv_.notify_all();
  }
  int calls() const {
    std::lock_guard<std::mutex> guard{mtx_};
    return calls_;
  }
  int waiting() const {
    std::lock_guard<std::mutex> guard{mtx_};
    return waiting_;
  }
  int max_in_flight() const {
    std::lock_guard<std::mutex> guard{mtx_};
    return max_in_flight_;
  }
  void open_all() {
    std::lock_guard<std::mutex> guard{mtx_};
    permits_ = 1 << 30;
    cv_.notify_all();
  }

  expected<std::vector<event_record>> read_events(const std::string& id, sequence_nr from,
                                                  sequence_nr to, std::size_t max) override {
    {
      std::unique_lock<std::mutex> lock{mtx_};
      ++calls_;
      ++waiting_;
      max_in_flight_ = std::max(max_in_flight_, waiting_);
      cv_.wait(lock, [this] { return permits_ > 0; });
      --permits_;
    }
    auto r = inner->read_events(id, from, to, max);
    std::lock_guard<std::mutex> guard{mtx_};
    --waiting_;
    return r;
  }
  std::vector<write_result> write(std::span<const atomic_write> b) override {
    return inner->write(b);
  }
  expected<sequence_nr> highest_sequence_nr(const std::string& id) override {
    return inner->highest_sequence_nr(id);
  }
  expected<void> delete_events_to(const std::string& id, sequence_nr to) override {
    return inner->delete_events_to(id, to);
  }
  expected<std::vector<event_record>> events_by_tag(const std::string& t, offset_type a,
                                                    std::size_t m) override {
    return inner->events_by_tag(t, a, m);
  }
  expected<std::vector<std::string>> persistence_ids(const std::string& a,
                                                     std::size_t m) override {
    return inner->persistence_ids(a, m);
  }
  expected<offset_type> highest_offset() override { return inner->highest_offset(); }
  expected<void> advance_fence(const std::string& k, std::uint64_t e) override {
    return inner->advance_fence(k, e);
  }
  expected<std::uint64_t> fence_epoch(const std::string& k) override {
    return inner->fence_epoch(k);
  }
  expected<void> save(const snapshot_record& s) override { return inner->save(s); }
  expected<std::optional<snapshot_record>> load(const std::string& id,
                                                const snapshot_criteria& c) override {
    return inner->load(id, c);
  }
  expected<void> delete_matching(const std::string& id, const snapshot_criteria& c) override {
    return inner->delete_matching(id, c);
  }

private:
  mutable std::mutex mtx_;
  std::condition_variable cv_;
  int permits_ = 0;
  int calls_ = 0;
  int waiting_ = 0;
  int max_in_flight_ = 0;
};

} // namespace

TEST_CASE("entity: replay holds a bounded number of pages however long the journal") {
  auto j = std::make_shared<gated_journal>();
  std::vector<event_record> events;
  for (sequence_nr s = 1; s <= 50; ++s)
    events.push_back(fx::added_record("counter|long", s, 1));
  fx::store(*j->inner, events);
  auto schema = node_config_keys();
  add_config_keys(schema);
  auto codec = std::make_shared<codec_registry>();
  fx::register_counter(*codec);
  auto n = make_node({"persistence.entity.recovery-page-size=10"}, schema, node::options{codec});
  REQUIRE(install_journal(*n, j, j));
  n->add_stop_hook("open the gate", [j] { j->open_all(); });
  auto replayed = [&] {
    return n->metrics()
      .counter_value("troupe_persistence_entity_events_replayed_total",
                     {{"entity_type", "counter"}})
      .value_or(0);
  };
  auto ref = spawn_entity<counter>(*n, "long");
  REQUIRE(ref);
  REQUIRE(wait_until([&] { return j->calls() == 1 && j->waiting() == 1; }));
  for (int k = 1; k <= 4; ++k) {
    j->open_one();
    // Page k is applied while page k + 1 is being read (read-ahead), and no page
    // beyond it is requested before page k + 1 arrived.
    REQUIRE(wait_until([&] {
      return replayed() == static_cast<std::uint64_t>(10 * k) && j->calls() == k + 1
             && j->waiting() == 1;
    }));
    CHECK(j->calls() == k + 1);
  }
  j->open_one();
  auto total = ref->ask(fx::get{}, 10s);
  REQUIRE(total);
  CHECK(*total == 50);
  CHECK(j->calls() == 5);
  CHECK(j->max_in_flight() == 1);
}

TEST_CASE("entity: an ask from an actor ends at its deadline, and a late reply is dropped") {
  held_write h{"slow"};
  struct outcome {
    std::mutex mtx;
    std::vector<std::pair<std::string, expected<std::int64_t>>> results;
    void add(std::string which, expected<std::int64_t> r) {
      std::lock_guard<std::mutex> guard{mtx};
      results.emplace_back(std::move(which), std::move(r));
    }
    std::size_t count() {
      std::lock_guard<std::mutex> guard{mtx};
      return results.size();
    }
  };
  auto out = std::make_shared<outcome>();
  // The long ask first: a later, shorter ask must still end at its own deadline.
  auto asker = h.n->spawn("asker", [ref = h.ref, out](caf::event_based_actor* self) {
    troupe::ask<std::int64_t>(self, ref, 60s, fx::get{}).then([out](expected<std::int64_t> r) {
      out->add("long", std::move(r));
    });
    troupe::ask<std::int64_t>(self, ref, 50ms, fx::get{}).then([out](expected<std::int64_t> r) {
      out->add("short", std::move(r));
    });
    return caf::behavior{[out](int) { out->add("marker", 0); }};
  });
  REQUIRE(asker);
  REQUIRE(wait_until([&] { return out->count() == 1; }));
  {
    std::lock_guard<std::mutex> guard{out->mtx};
    CHECK(out->results[0].first == "short");
    REQUIRE_FALSE(out->results[0].second);
    CHECK(out->results[0].second.error().code() == errc::timeout);
  }
  h.j->clear_faults();
  REQUIRE(h.held.get());
  REQUIRE(wait_until([&] { return out->count() == 2; }));
  // The entity answered the timed-out ask too (before this ask, so its reply is in
  // the asker's mailbox before the marker): its continuation must not run again.
  auto total = h.ref.ask(fx::get{}, 10s);
  REQUIRE(total);
  CHECK(*total == 11);
  caf::anon_send(*asker, 1);
  REQUIRE(wait_until([&] { return out->count() == 3; }));
  std::lock_guard<std::mutex> guard{out->mtx};
  REQUIRE(out->results.size() == 3);
  CHECK(out->results[2].first == "marker");
  CHECK(out->results[1].first == "long");
  REQUIRE(out->results[1].second);
  CHECK(*out->results[1].second == 11);
}
