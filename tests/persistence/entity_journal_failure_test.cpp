// Entities and transient journal failures (issue 9): a failed persist or recovery
// stops the entity's incarnation with an error naming it and the cause, every held
// and later command gets that error, and the next command after a backoff starts
// it again; a journal that fails for a while (the fault-injecting memory journal, a
// real full tmpfs) ends with every entity serving and nothing acknowledged lost.
#include "entity_fixtures.hpp"
#include "small_tmpfs.hpp"

#include "troupe/actors/supervisor.hpp"

#include <atomic>
#include <map>
#include <mutex>
#include <thread>

using namespace troupe;
using namespace troupe::persistence;
using namespace troupe::test;
using namespace std::chrono_literals;
using namespace fx;

namespace {

std::uint64_t counted(node& n, const std::string& name) {
  return n.metrics().counter_value(name, {{"entity_type", "counter"}}).value_or(0);
}

/// Adds 1 to an entity until it succeeds; false if it never does within the
/// deadline.
bool serves_again(const entity_ref<counter>& ref, std::int64_t& acked,
                  std::chrono::milliseconds deadline = 30s) {
  return wait_until(
    [&] {
      if (!ref.ask(fx::add{1}, 10s))
        return false;
      ++acked;
      return true;
    },
    deadline);
}

/// Every error an entity answers with names it: never CAF's anonymous
/// request_receiver_down.
void check_names_entity(const error& e, const std::string& pid) {
  INFO(e.to_string());
  CHECK((e.code() == errc::journal_failure || e.code() == errc::actor_down));
  CHECK(contains(e.message(), pid));
}

/// A node on `j` with the given entity restart backoff.
std::unique_ptr<node> node_with_backoff(std::shared_ptr<memory_journal> j, const char* min,
                                        const char* max) {
  return fx::make_node(std::move(j), {fmt::format("persistence.entity.restart-backoff-min={}", min),
                                      fmt::format("persistence.entity.restart-backoff-max={}", max)});
}

/// A counter that persisted add{1}.
entity_ref<counter> spawn_with_one(node& n, const std::string& id) {
  auto ref = spawn_entity<counter>(n, id);
  REQUIRE(ref);
  REQUIRE(ref->ask(fx::add{1}, 10s));
  return *ref;
}

template <class T>
void check_error(const expected<T>& r, errc code, std::initializer_list<std::string> parts) {
  REQUIRE_FALSE(r);
  INFO(r.error().to_string());
  CHECK(r.error().code() == code);
  for (auto& part : parts)
    CHECK(contains(r.error().message(), part));
}

} // namespace

TEST_CASE("entity: a failed persist stops it, and the in-flight, stashed and later commands get "
          "errors naming it and the cause") {
  auto j = std::make_shared<memory_journal>();
  // A backoff far longer than the test: every command after the failure is refused.
  auto n = node_with_backoff(j, "1m", "1h");
  auto ref = spawn_with_one(*n, "f1");
  // The next write stays in flight until released, then fails.
  j->fail_after(journal_op::write, 1h, "counter|f1", 1);
  auto in_flight = ask_async(ref, fx::add{10});
  REQUIRE(wait_until([&] { return j->calls(journal_op::write) == 2; }));
  auto stashed_get = ask_async(ref, fx::get{});
  REQUIRE(wait_until([&] { return stashed(*n) == 1; }));
  auto stashed_add = ask_async(ref, fx::add{5});
  REQUIRE(wait_until([&] { return stashed(*n) == 2; }));
  j->clear_faults();

  const std::string cause = "injected failure of write";
  check_error(in_flight.get(), errc::journal_failure, {"counter|f1", "seq 2", cause});
  check_error(stashed_add.get(), errc::actor_down, {"counter|f1", cause});
  check_error(stashed_get.get(), errc::actor_down, {"counter|f1", cause});
  // Later commands: refused at once with the same cause, until the backoff passed.
  for (int i = 0; i < 3; ++i)
    check_error(ref.ask(fx::get{}, 10s), errc::actor_down,
                {"counter|f1 is stopped after a journal failure", cause});
  CHECK(*j->highest_sequence_nr("counter|f1") == 1);  // nothing of the failed write stored
  CHECK(stashed(*n) == 0);
  CHECK(counted(*n, "troupe_persistence_entity_journal_stops_total") == 1);
  CHECK(counted(*n, "troupe_persistence_entity_restarts_total") == 0);
}

TEST_CASE("entity: the next command after the backoff starts it again and it recovers what was "
          "stored") {
  auto j = std::make_shared<memory_journal>();
  auto n = node_with_backoff(j, "1ms", "20ms");
  auto ref = spawn_with_one(*n, "f2");
  j->fail(journal_op::write, "counter|f2", 1);
  check_error(ref.ask(fx::add{2}, 10s), errc::journal_failure, {"counter|f2"});
  std::int64_t acked = 1;
  REQUIRE(serves_again(ref, acked));
  auto total = ref.ask(fx::get{}, 10s);
  REQUIRE(total);
  CHECK(*total == acked);  // add{2} was not stored; every acknowledged add was
  CHECK(counted(*n, "troupe_persistence_entity_restarts_total") >= 1);
}

TEST_CASE("entity: a failed recovery stops it with an error naming id and seq, and a command after "
          "the backoff tries again and succeeds once the journal does") {
  auto j = std::make_shared<memory_journal>();
  const std::string pid = "counter|r1";
  std::string expected_seq;
  bool repairable = false;
  SUBCASE("undecodable event bytes") {
    auto bad = fx::added_record(pid, 2, 0);
    bad.payload = {0xff, 0x13, 0x00};
    fx::store(*j, {fx::added_record(pid, 1, 1), bad});
    expected_seq = "seq 2";
  }
  SUBCASE("an unknown manifest") {
    auto unknown = fx::added_record(pid, 2, 0);
    unknown.manifest = "test.from-the-future";
    fx::store(*j, {fx::added_record(pid, 1, 1), unknown});
    expected_seq = "seq 2";
  }
  SUBCASE("a snapshot that does not decode") {
    fx::store(*j, {fx::added_record(pid, 1, 1)});
    REQUIRE(j->save(snapshot_record{.persistence_id = pid, .seq = 1, .timestamp_ms = 1,
                                    .manifest = "test.counter-state", .version = 1,
                                    .payload = {0x01, 0x02}}));
    expected_seq = "seq 1";
  }
  SUBCASE("a journal error during replay") {
    fx::store(*j, {fx::added_record(pid, 1, 1)});
    j->fail(journal_op::read, pid);
    expected_seq = "seq 1";
    repairable = true;
  }
  auto n = node_with_backoff(j, "1ms", "20ms");
  // Under a supervisor with the default intensity (3 restarts in 5 s): the entity
  // handles the failures itself and never spends a supervisor restart.
  supervisor_spec spec{.name = "entities", .children = {entity_child<counter>("r1")}};
  auto sup = n->spawn_supervisor(spec);
  REQUIRE(sup);
  auto handle = child_handle(n->system(), *sup, pid, 10s);
  REQUIRE(handle);
  entity_ref<counter> ref{*handle};
  auto r = ref.ask(fx::get{}, 10s);
  REQUIRE_FALSE(r);
  INFO(r.error().to_string());
  for (auto& part : {std::string{"recovery failed"}, pid, expected_seq})
    CHECK(contains(r.error().message(), part));
  // Commands keep getting the error (refused during the backoff, or from the next
  // attempt) until the journal is repaired; each attempt is counted.
  REQUIRE(wait_until([&] {
    auto again = ref.ask(fx::get{}, 10s);
    CHECK_FALSE(again);
    if (again)
      return true;
    check_names_entity(again.error(), pid);
    return counted(*n, "troupe_persistence_entity_restarts_total") >= 2;
  }));
  CHECK(counted(*n, "troupe_persistence_entity_recovery_failures_total") >= 3);
  auto kids = which_children(n->system(), *sup, 10s);
  REQUIRE(kids);
  REQUIRE(kids->size() == 1);
  CHECK((*kids)[0].restarts == 0);
  if (repairable) {
    j->clear_faults();
    std::int64_t acked = 1;
    REQUIRE(serves_again(ref, acked));
    auto total = ref.ask(fx::get{}, 10s);
    REQUIRE(total);
    CHECK(*total == acked);
  }
  // The node keeps serving other entities.
  auto other = spawn_entity<counter>(*n, "healthy");
  REQUIRE(other);
  REQUIRE(other->ask(fx::add{3}, 10s));
  j->clear_faults();
}

namespace {

/// The scenario: entities under a supervisor with the default settings,
/// a journal that fails every write for a while, commands from several clients.
/// Every error names its entity; once the journal works again every entity serves
/// and holds exactly the acknowledged adds.
struct outage {
  std::vector<entity_ref<counter>> refs;
  std::vector<std::string> pids;
  std::mutex mtx;
  std::map<std::size_t, std::int64_t> acked;  // by entity index
  std::map<std::size_t, int> failures;
  std::vector<std::string> anonymous;  // errors that did not name their entity
  std::vector<std::string> causes;     // every distinct journal_failure reply, shortened

  bool any_cause(const std::string& part) {
    std::lock_guard<std::mutex> guard{mtx};
    for (auto& c : causes)
      if (contains(c, part))
        return true;
    return false;
  }

  /// `count` counters "<prefix>0".. under a supervisor with the default restart
  /// intensity (3 restarts in 5 s), each asked once (recovered and serving).
  caf::actor start(node& n, const std::string& prefix, int count) {
    supervisor_spec spec{.name = "accounts"};
    for (int i = 0; i < count; ++i) {
      spec.children.push_back(entity_child<counter>(fmt::format("{}{}", prefix, i)));
      pids.push_back(fmt::format("counter|{}{}", prefix, i));
    }
    auto sup = n.spawn_supervisor(spec);
    REQUIRE(sup);
    for (auto& pid : pids) {
      auto h = child_handle(n.system(), *sup, pid, 10s);
      REQUIRE(h);
      refs.emplace_back(*h);
    }
    for (std::size_t i = 0; i < refs.size(); ++i)
      send_round(i);
    return *sup;
  }

  /// No supervisor restart was spent, nothing escalated.
  void check_no_supervisor_restarts(node& n, const caf::actor& sup) {
    auto kids = which_children(n.system(), sup, 10s);
    REQUIRE(kids);
    CHECK(kids->size() == refs.size());
    for (auto& k : *kids)
      CHECK(k.restarts == 0);
  }

  void send_round(std::size_t i) {
    auto r = refs[i].ask(fx::add{1}, 10s);
    std::lock_guard<std::mutex> guard{mtx};
    if (r) {
      ++acked[i];
      return;
    }
    ++failures[i];
    auto code = r.error().code();
    if (code == errc::journal_failure && causes.size() < 50)
      causes.push_back(r.error().message());
    if (!contains(r.error().message(), pids[i])
        || (code != errc::journal_failure && code != errc::actor_down))
      anonymous.push_back(r.error().to_string());
  }

  /// Several clients send to every entity until each saw `n` failures.
  void until_failures(int n) {
    std::atomic<bool> done{false};
    std::vector<std::thread> clients;
    for (int c = 0; c < 3; ++c)
      clients.emplace_back([&] {
        while (!done)
          for (std::size_t i = 0; i < refs.size() && !done; ++i)
            send_round(i);
      });
    CHECK(wait_until(
      [&] {
        std::lock_guard<std::mutex> guard{mtx};
        for (std::size_t i = 0; i < refs.size(); ++i)
          if (failures[i] < n)
            return false;
        return true;
      },
      60s));
    done = true;
    for (auto& t : clients)
      t.join();
  }

  void check_all_serve_and_nothing_lost() {
    for (std::size_t i = 0; i < refs.size(); ++i) {
      INFO(pids[i]);
      std::int64_t extra = 0;
      REQUIRE(serves_again(refs[i], extra, 60s));
      auto total = refs[i].ask(fx::get{}, 10s);
      REQUIRE(total);
      CHECK(*total == acked[i] + extra);
    }
    std::lock_guard<std::mutex> guard{mtx};
    INFO((anonymous.empty() ? std::string{} : anonymous.front()));
    CHECK(anonymous.empty());
  }
};

} // namespace

TEST_CASE("entity: a journal that fails every write for a while, under a supervisor with the "
          "default intensity, ends with every entity serving and nothing acknowledged lost") {
  auto j = std::make_shared<memory_journal>();
  auto n = fx::make_node(j, {"persistence.entity.restart-backoff-max=200ms"});
  outage o;
  auto sup = o.start(*n, "o", 8);
  j->fail(journal_op::write);  // every write fails until cleared
  o.until_failures(5);
  CHECK(o.any_cause("injected failure of write"));
  j->clear_faults();
  o.check_all_serve_and_nothing_lost();
  o.check_no_supervisor_restarts(*n, sup);
}

TEST_CASE("entity: a real full disk (tmpfs) for a while, then space again: entities serve "
          "without operator action and nothing acknowledged is lost") {
  small_tmpfs fs{4 << 20};
  if (!fs.mounted()) {
    MESSAGE("skipped: cannot mount a tmpfs here (" << fs.why()
                                                   << "); needs root or CAP_SYS_ADMIN");
    return;
  }
  auto n = fx::make_sqlite_node(fs.file("journal.db"),
                                {"persistence.entity.restart-backoff-max=200ms"});
  outage o;
  auto sup = o.start(*n, "d", 6);
  REQUIRE(fs.fill("filler") > 0);
  o.until_failures(5);
  CHECK(o.any_cause("database or disk is full"));  // SQLite's own words, with the path
  CHECK(o.any_cause(fs.file("journal.db")));
  {
    std::lock_guard<std::mutex> guard{o.mtx};
    INFO((o.anonymous.empty() ? std::string{} : o.anonymous.front()));
    CHECK(o.anonymous.empty());
  }
  std::filesystem::remove(fs.file("filler"));
  o.check_all_serve_and_nothing_lost();
  o.check_no_supervisor_restarts(*n, sup);
  n->shutdown();
}
