// Sharding in one process: three nodes with their transports, clusters and one
// shared in-memory journal; bank accounts as sharded entities.
#include "../../samples/bank/account.hpp"
#include "membership/cluster_fixture.hpp"
#include "sharding/sharding_fixture.hpp"
#include "support/log_capture.hpp"

#include "troupe/membership/management_client.hpp"
#include "troupe/membership/management_endpoint.hpp"
#include "troupe/membership/sim/membership_simulation.hpp"
#include "troupe/persistence/journal_service.hpp"
#include "troupe/persistence/memory_journal.hpp"
#include "troupe/sharding/sharding.hpp"
#include "troupe/sharding/snapshot.hpp"

#include <doctest/doctest.h>
#include <fmt/format.h>

#include <caf/all.hpp>

#include <atomic>
#include <functional>
#include <map>
#include <numeric>
#include <set>

using namespace std::chrono_literals;
using namespace troupe;
using troupe::persistence::done;

namespace {

constexpr std::uint32_t shards = 12;

template <class T>
std::string what(const expected<T>& r) {
  return r ? std::string{"ok"} : r.error().to_string();
}

sharding::sharding_settings bank_settings() {
  return test::fast_sharding_settings(shards);
}

config_schema bank_schema() {
  return test::sharding_schema();
}

/// Journal, codec registrations and the bank's region on node i.
void start_bank(test::in_process_cluster& c, std::size_t i,
                const std::shared_ptr<persistence::memory_journal>& journal,
                const sharding::sharding_settings& settings = bank_settings()) {
  auto& n = *c[i].n;
  bank::register_types(n.codec());
  REQUIRE(persistence::install_journal(n, journal, journal));
  auto r = sharding::start<bank::account>(n, settings);
  INFO(what(r));
  REQUIRE(r);
}

std::string account(int k) {
  return fmt::format("acct-{}", k);
}

/// The entities running in node `n`'s account region.
std::size_t running_entities(node& n) {
  auto r = sharding::report(n, "account", 5s);
  REQUIRE(r);
  return r->entities;
}

/// Which node hosts each shard, from every region's report; fails on a shard
/// hosted twice.
std::map<sharding::shard_id, std::size_t> hosts(test::in_process_cluster& c,
                                                const std::vector<std::size_t>& which) {
  std::map<sharding::shard_id, std::size_t> where;
  for (auto i : which) {
    auto r = sharding::report(*c[i].n, "account", 5s);
    REQUIRE(r);
    for (auto& s : r->shards) {
      INFO("shard " << s.id << " hosted by nodes " << where[s.id] << " and " << i);
      CHECK(where.count(s.id) == 0);
      where[s.id] = i;
    }
  }
  return where;
}

} // namespace

TEST_CASE("sharding shell: entities spread over the nodes, each id lives on exactly one, and any node reaches it") {
  test::in_process_cluster c{3, bank_schema()};
  c.start_clusters(1);
  REQUIRE(test::wait_until([&] { return c.all_up(); }, 30s));
  auto journal = std::make_shared<persistence::memory_journal>();
  auto http = membership::management_endpoint::start(*c[1].n);
  REQUIRE(http);
  std::vector<std::unique_ptr<test::log_capture>> logs;
  for (std::size_t i = 0; i < 3; ++i)
    logs.push_back(std::make_unique<test::log_capture>(c[i].n->log()));
  for (std::size_t i = 0; i < 3; ++i)
    start_bank(c, i, journal);
  constexpr int accounts = 40;
  for (int k = 0; k < accounts; ++k) {
    auto acct = sharding::entity_for<bank::account>(*c[k % 3].n, account(k));
    auto opened = acct.ask(bank::open_account{"owner"}, 10s);
    INFO(account(k) << ": " << what(opened));
    REQUIRE(opened);
    REQUIRE(acct.ask(bank::deposit{100 + k}, 10s));
  }
  // Every node sees the same state, whichever node hosts the account.
  for (int k = 0; k < accounts; ++k)
    for (std::size_t i = 0; i < 3; ++i) {
      auto b = sharding::entity_for<bank::account>(*c[i].n, account(k)).ask(bank::get_balance{}, 10s);
      REQUIRE(b);
      CHECK(*b == 100 + k);
    }
  auto where = hosts(c, {0, 1, 2});
  std::set<std::size_t> used;
  std::size_t entities = 0;
  for (auto [s, i] : where)
    used.insert(i);
  for (std::size_t i = 0; i < 3; ++i)
    entities += sharding::report(*c[i].n, "account", 5s)->entities;
  CHECK(used.size() == 3);  // least-shard allocation used every node
  CHECK(entities == accounts);
  // Each region's gauges (registered once, set after every change) follow what it
  // reports; nothing is buffered once every ask was answered.
  for (std::size_t i = 0; i < 3; ++i) {
    auto& n = *c[i].n;
    const metric_labels type{{"type", "account"}};
    INFO("node " << i);
    CHECK(test::wait_until(
      [&] {
        auto rep = sharding::report(n, "account", 5s);
        return rep
               && n.metrics().gauge_value("troupe_sharding_entities", type)
                    == static_cast<double>(rep->entities)
               && n.metrics().gauge_value("troupe_sharding_shards", type)
                    == static_cast<double>(rep->shards.size())
               && n.metrics().gauge_value("troupe_sharding_buffered", type) == 0.0;
      },
      10s));
  }
  // GET /cluster/shards: every allocated shard (the coordinator's journal) and
  // what the serving node hosts.
  auto r = membership::management_call({"127.0.0.1", (*http)->port()}, "GET", "/cluster/shards");
  REQUIRE(r);
  REQUIRE(r->status == 200);
  auto doc = nlohmann::json::parse(r->body);
  REQUIRE(doc["types"].size() == 1);
  auto& t = doc["types"][0];
  CHECK(t["type"] == "account");
  std::set<sharding::shard_id> used_shards;
  for (int k = 0; k < accounts; ++k)
    used_shards.insert(sharding::shard_of(account(k), shards));
  CHECK(t["allocations"].size() == used_shards.size());
  int by_region = 0;
  for (auto& [region, n] : t["by_region"].items())
    by_region += n.get<int>();
  CHECK(by_region == static_cast<int>(used_shards.size()));
  CHECK(t["local"]["shards"].size() == sharding::report(*c[1].n, "account", 5s)->shards.size());
  // Every member's region, asked over the transport: the entities cluster-wide.
  CHECK(t["entities"] == accounts);
  REQUIRE(t["regions"].size() == 3);
  std::size_t region_shards = 0;
  for (auto& region : t["regions"]) {
    INFO(region.dump());
    REQUIRE(region.contains("entities"));
    region_shards += region["shards"].get<std::size_t>();
  }
  CHECK(region_shards == used_shards.size());
  // A command the entity refuses comes back as its error, across nodes too.
  auto refused = sharding::entity_for<bank::account>(*c[2].n, account(0)).ask(bank::withdraw{1'000'000, ""}, 10s);
  REQUIRE_FALSE(refused);
  CHECK(refused.error().message().find("insufficient balance") != std::string::npos);
  // Starting sharding on three nodes warns about nothing: the regions' messages
  // for a coordinator that is still starting, and its hello to regions that are
  // not running yet, are expected losses that their senders repeat.
  for (std::size_t i = 0; i < 3; ++i) {
    INFO("node " << i);
    CHECK_FALSE(logs[i]->contains("dropped a message"));
  }
}

TEST_CASE("sharding shell: a node that joins gets shards, and the accounts keep their state") {
  test::in_process_cluster c{3, bank_schema()};
  // Nodes 0 and 1 form the cluster; node 2 joins later.
  std::vector<remote::node_address> seeds{c[0].t->address()};
  auto journal = std::make_shared<persistence::memory_journal>();
  for (std::size_t i = 0; i < 2; ++i) {
    auto s = test::fast_cluster_settings();
    s.seed_nodes = seeds;
    auto cl = membership::cluster::start(*c[i].n, s);
    REQUIRE(cl);
    c[i].c = *cl;
  }
  REQUIRE(test::wait_until([&] { return c.up({0, 1}); }, 30s));
  for (std::size_t i = 0; i < 2; ++i)
    start_bank(c, i, journal);
  constexpr int accounts = 30;
  for (int k = 0; k < accounts; ++k) {
    auto acct = sharding::entity_for<bank::account>(*c[0].n, account(k));
    REQUIRE(acct.ask(bank::open_account{"owner"}, 10s));
    REQUIRE(acct.ask(bank::deposit{10 * k + 1}, 10s));
  }
  auto s = test::fast_cluster_settings();
  s.seed_nodes = seeds;
  auto cl = membership::cluster::start(*c[2].n, s);
  REQUIRE(cl);
  c[2].c = *cl;
  REQUIRE(test::wait_until([&] { return c.all_up(); }, 30s));
  start_bank(c, 2, journal);
  // Rebalance releases shards of the old nodes (a few per round); the next
  // message for a released shard allocates it, to the node with the fewest.
  REQUIRE(test::wait_until([&] {
    for (int k = 0; k < accounts; ++k)
      (void) sharding::entity_for<bank::account>(*c[0].n, account(k)).ask(bank::get_balance{}, 10s);
    auto r = sharding::report(*c[2].n, "account", 5s);
    return r && r->shards.size() >= shards / 3 - 1;
  }, 180s));  // rebalancing waits for a stable cluster: slow on a loaded machine
  (void) hosts(c, {0, 1, 2});
  for (int k = 0; k < accounts; ++k) {
    auto b = sharding::entity_for<bank::account>(*c[1].n, account(k)).ask(bank::get_balance{}, 10s);
    INFO(account(k) << ": " << what(b));
    REQUIRE(b);
    CHECK(*b == 10 * k + 1);
  }
}

TEST_CASE("sharding shell: a node that leaves hands its shards off first, and nothing acknowledged is lost") {
  test::in_process_cluster c{3, bank_schema()};
  c.start_clusters(1);
  REQUIRE(test::wait_until([&] { return c.all_up(); }, 30s));
  auto journal = std::make_shared<persistence::memory_journal>();
  for (std::size_t i = 0; i < 3; ++i)
    start_bank(c, i, journal);
  constexpr int accounts = 30;
  std::map<std::string, std::int64_t> expected_balance;
  for (int k = 0; k < accounts; ++k) {
    auto acct = sharding::entity_for<bank::account>(*c[0].n, account(k));
    REQUIRE(acct.ask(bank::open_account{"owner"}, 10s));
    REQUIRE(acct.ask(bank::deposit{7 + k}, 10s));
    expected_balance[account(k)] = 7 + k;
  }
  auto before = sharding::report(*c[2].n, "account", 5s);
  REQUIRE(before);
  CHECK_FALSE(before->shards.empty());
  // Where the coordinator runs (the oldest member: any of the three).
  auto coordinator = sharding::coordinator_location(*c[0].c->view().state, "");
  REQUIRE(coordinator);
  std::size_t coordinator_node = 3;
  for (std::size_t i = 0; i < 3; ++i)
    if (*coordinator == c[i].t->identity())
      coordinator_node = i;
  // Node 2 shuts down: its shards move before it leaves the cluster.
  auto report = c[2].n->shutdown();
  CHECK(report.clean);
  REQUIRE(test::wait_until([&] { return c.up({0, 1}); }, 30s));
  for (int k = 0; k < accounts; ++k) {
    auto b = sharding::entity_for<bank::account>(*c[0].n, account(k)).ask(bank::get_balance{}, 10s);
    INFO(account(k) << ": " << what(b));
    REQUIRE(b);
    CHECK(*b == expected_balance[account(k)]);
  }
  (void) hosts(c, {0, 1});
  // The coordinator timed every phase of each hand-off (unless it ran on node 2,
  // which took its metrics along), and the accounts that moved recovered on nodes
  // 0 and 1. (It counts a hand-off once the release is stored, which may be after
  // node 2 is gone.)
  auto observed = [&](std::size_t i, std::string_view name, metric_labels labels) {
    return c[i].n->metrics().histogram(name, {}, std::move(labels)).read().count;
  };
  for (auto phase : {"begin", "stopping", "releasing"}) {
    if (coordinator_node >= 2)
      break;
    INFO(phase);
    CHECK(test::wait_until(
      [&] {
        return observed(coordinator_node, "troupe_sharding_hand_off_phase_seconds",
                        {{"type", "account"}, {"phase", phase}})
               >= before->shards.size();
      },
      10s));
  }
  CHECK(observed(0, "troupe_persistence_entity_recovery_seconds", {{"entity_type", "account"}})
          + observed(1, "troupe_persistence_entity_recovery_seconds", {{"entity_type", "account"}})
        >= accounts);
}

TEST_CASE("sharding settings: a node with another number of shards is refused at join, naming "
          "both values") {
  using namespace troupe::membership;
  using namespace troupe::membership::sim;
  simulation_options o;
  o.nodes = 3;
  o.seed_nodes = 2;
  o.faults = link_faults{0.0, 0.0, std::chrono::milliseconds{1}, std::chrono::milliseconds{5}};
  o.restart_stopped_after.reset();
  o.configure_node = [](node_index i, membership_settings& s) {
    troupe::sharding::sharding_settings shards;
    shards.number_of_shards = i == 2 ? 40 : 30;
    troupe::sharding::require_same_shards(s, "account", shards);
  };
  membership_simulation sim{o};
  std::vector<std::string> reasons;
  sim.on_effects = [&](node_index, const effects& fx) {
    for (auto& e : fx.events)
      if (e.what == cluster_event::kind::join_refused)
        reasons.push_back(e.reason);
  };
  sim.start(0);
  sim.start(1);
  auto up = [&](std::size_t n) {
    return sim.run_until([&] {
      std::size_t count = 0;
      for (auto& m : sim.at(0).core->state().members)
        count += m.status == member_status::up;
      return count == n;
    }, sim.now() + std::chrono::seconds{20});
  };
  REQUIRE(up(2));
  sim.start(2);
  CHECK(sim.run_until([&] { return !sim.running(2); }, sim.now() + std::chrono::seconds{10}));
  REQUIRE_FALSE(reasons.empty());
  CHECK(reasons[0].find("'sharding.account.number-of-shards' is '30' in the cluster but '40' on "
                        "the joining node")
        != std::string::npos);
}

TEST_CASE("sharding shell: a region runs at most max_active_entities, passivating the least "
          "recently used, and passivated entities recover their state") {
  test::in_process_cluster c{1, bank_schema()};
  c.start_clusters(1);
  REQUIRE(test::wait_until([&] { return c.all_up(); }, 30s));
  auto journal = std::make_shared<persistence::memory_journal>();
  auto settings = bank_settings();
  settings.max_active_entities = 5;
  start_bank(c, 0, journal, settings);
  auto& n = *c[0].n;
  constexpr int accounts = 20;
  for (int k = 0; k < accounts; ++k) {
    auto acct = sharding::entity_for<bank::account>(n, account(k));
    REQUIRE(acct.ask(bank::open_account{"owner"}, 10s));
    REQUIRE(acct.ask(bank::deposit{10 + k}, 10s));
  }
  auto running = [&] { return running_entities(n); };
  CHECK(test::wait_until([&] { return running() <= 5; }, 10s));
  // The five most recently used answer with their state.
  for (int k = accounts - 5; k < accounts; ++k)
    CHECK(*sharding::entity_for<bank::account>(n, account(k)).ask(bank::get_balance{}, 10s) == 10 + k);
  // Every other account restarts on demand with its state from the journal.
  for (int k = 0; k < accounts; ++k) {
    auto b = sharding::entity_for<bank::account>(n, account(k)).ask(bank::get_balance{}, 10s);
    REQUIRE(b);
    CHECK(*b == 10 + k);
  }
  CHECK(test::wait_until([&] { return running() <= 5; }, 10s));
}

namespace {

/// Starts `c` (three nodes) with the bank remembering its entities, and opens
/// `accounts` accounts through node 0.
void start_remembering(test::in_process_cluster& c, int accounts,
                       std::size_t starts_per_second = 1000) {
  c.start_clusters(1);
  REQUIRE(test::wait_until([&] { return c.all_up(); }, 30s));
  auto journal = std::make_shared<persistence::memory_journal>();
  auto settings = bank_settings();
  settings.remember_entities = true;
  settings.remembered_starts_per_second = starts_per_second;
  for (std::size_t i = 0; i < 3; ++i)
    start_bank(c, i, journal, settings);
  for (int k = 0; k < accounts; ++k)
    REQUIRE(sharding::entity_for<bank::account>(*c[0].n, account(k))
              .ask(bank::open_account{"owner"}, 10s));
}

} // namespace

TEST_CASE("sharding shell: with remember-entities, a leaving node's entities start again on the "
          "others without a command") {
  test::in_process_cluster c{3, bank_schema()};
  constexpr int accounts = 30;
  start_remembering(c, accounts);
  auto running = [&](std::size_t i) { return running_entities(*c[i].n); };
  REQUIRE(running(0) + running(1) + running(2) == accounts);
  REQUIRE(running(2) > 0);
  // Node 2 hands its shards off; they are allocated again at once, and their
  // remembered entities start on nodes 0 and 1 with no command sent to them.
  REQUIRE(sharding::hand_off_all(*c[2].n, "account", 20s));
  CHECK(test::wait_until([&] { return running(0) + running(1) == accounts; }, 30s));
  CHECK(running(2) == 0);
}

TEST_CASE("sharding shell: a shard's remembered entities are compacted into their set, and its "
          "next home starts that set (hundreds of entities stopped at once by the hand-off)") {
  test::in_process_cluster c{2, bank_schema()};
  c.start_clusters(1);
  REQUIRE(test::wait_until([&] { return c.all_up(); }, 30s));
  auto journal = std::make_shared<persistence::memory_journal>();
  auto settings = bank_settings();
  settings.number_of_shards = 2;  // many changes per shard
  settings.remember_entities = true;
  for (std::size_t i = 0; i < 2; ++i)
    start_bank(c, i, journal, settings);
  // More than the region's stop requests in flight (256) run on node 1's shard.
  constexpr int accounts = 1200;
  // One change event per account (each open waits for the previous one).
  for (int k = 0; k < accounts; ++k)
    REQUIRE(sharding::entity_for<bank::account>(*c[0].n, account(k))
              .ask(bank::open_account{"owner"}, 10s));
  auto running = [&](std::size_t i) { return running_entities(*c[i].n); };
  REQUIRE(running(0) + running(1) == accounts);
  REQUIRE(running(1) > 0);
  // Each shard's stored events: at most compact_after changes after its last set.
  for (sharding::shard_id s = 0; s < 2; ++s) {
    auto pid = fmt::format("troupe.sharding-entities|account|{}", s);
    auto highest = journal->highest_sequence_nr(pid);
    REQUIRE(highest);
    INFO(pid << ": highest seq " << *highest);
    CHECK(*highest > 64);
    CHECK(test::wait_until(
      [&] {
        auto events = journal->read_events(pid, 1, *highest, 10'000);
        REQUIRE(events);
        return events->size() <= 65;
      },
      10s));
  }
  // Node 1 hands its shard off: node 0 starts what node 1 remembered, from the set.
  REQUIRE(sharding::hand_off_all(*c[1].n, "account", 20s));
  CHECK(test::wait_until([&] { return running(0) == accounts; }, 30s));
  for (int k = 0; k < accounts; k += 37) {
    auto b = sharding::entity_for<bank::account>(*c[0].n, account(k)).ask(bank::get_balance{}, 10s);
    CHECK(b);
  }
}

TEST_CASE("sharding shell: remembered entities start again a few at a time, at most "
          "remembered_starts_per_second") {
  test::in_process_cluster c{3, bank_schema()};
  constexpr int accounts = 60;
  start_remembering(c, accounts, 10);  // one start per region tick (100 ms)
  auto running = [&](std::size_t i) { return running_entities(*c[i].n); };
  auto moving = running(2);
  REQUIRE(moving >= 6);
  REQUIRE(sharding::hand_off_all(*c[2].n, "account", 20s));
  // Every count the survivors pass through on the way back: started all at once,
  // there would be one or two.
  std::set<std::size_t> seen;
  CHECK(test::wait_until(
    [&] {
      auto n = running(0) + running(1);
      seen.insert(n);
      return n == accounts;
    },
    30s));
  INFO(moving << " entities moved");
  CHECK(seen.size() >= moving / 4);
}

namespace {

/// Sends append(1..count) to one tally through one ref, `window` asks in flight,
/// in order; counts the acknowledgements and the failures.
struct appender_state {
  std::atomic<int> acked{0};
  std::atomic<int> failed{0};
  std::string first_error;  ///< written before `failed` is raised
};

/// The tally's types, the journal and its region on `n`.
std::vector<std::int64_t> one_to(int count) {
  std::vector<std::int64_t> xs(static_cast<std::size_t>(count));
  std::iota(xs.begin(), xs.end(), 1);
  return xs;
}

caf::behavior appender(caf::event_based_actor* self, sharding::entity_ref<tally::entity> ref,
                       int count, int window, std::shared_ptr<appender_state> st) {
  auto next = std::make_shared<int>(1);
  auto send = std::make_shared<std::function<void()>>();
  *send = [self, ref, count, st, next, send] {
    if (*next > count)
      return;
    auto v = (*next)++;
    ref.ask(self, tally::append{v}, 20s, [self, count, st, send](expected<persistence::done> r) {
      if (r) {
        st->acked.fetch_add(1);
      } else {
        if (st->failed.load() == 0)
          st->first_error = r.error().to_string();
        st->failed.fetch_add(1);
      }
      if (st->acked.load() + st->failed.load() == count) {
        *send = nullptr;  // it holds itself (LeakSanitizer)
        self->quit();     // its node's shutdown waits for every actor
      } else {
        (*send)();
      }
    });
  };
  for (int i = 0; i < window; ++i)
    (*send)();
  return {[](caf::unit_t) {}};
}

} // namespace

TEST_CASE("sharding shell: an entity_ref's asks go to a local entity directly, keep their order "
          "and lose nothing while its shard moves to another node") {
  test::in_process_cluster c{2, bank_schema()};
  c.start_clusters(1);
  REQUIRE(test::wait_until([&] { return c.all_up(); }, 30s));
  auto journal = std::make_shared<persistence::memory_journal>();
  for (std::size_t i = 0; i < 2; ++i)
    test::start_sharded_tally(*c[i].n, journal, bank_settings());
  auto& owner = *c[1].n;
  // An id whose shard node 1 hosts once every shard has a home.
  std::string id;
  REQUIRE(test::wait_until(
    [&] {
      for (int k = 0; k < 200 && id.empty(); ++k) {
        auto candidate = fmt::format("t{}", k);
        if (!sharding::entity_for<tally::entity>(owner, candidate).ask(tally::get_values{}, 10s))
          continue;
        auto r = sharding::report(owner, "tally", 5s);
        REQUIRE(r);
        for (auto& s : r->shards)
          if (s.id == sharding::shard_of(candidate, shards))
            id = candidate;
      }
      return !id.empty();
    },
    30s));
  constexpr int count = 3000;
    auto st = std::make_shared<appender_state>();
  auto ref = sharding::entity_for<tally::entity>(owner, id);
  owner.system().spawn(appender, ref, count, 8, st);
  REQUIRE(test::wait_until([&] { return st->acked.load() + st->failed.load() >= count / 3; }, 30s));
  CHECK(owner.metrics()
          .counter_value("troupe_sharding_direct_routes_total", {{"type", "tally"}})
          .value_or(0)
        >= 1);
  // The shard moves to node 0 while the asks keep coming.
  REQUIRE(sharding::hand_off_all(owner, "tally", 20s));
  REQUIRE(test::wait_until([&] { return st->acked.load() + st->failed.load() == count; }, 60s));
  INFO(st->first_error);
  CHECK(st->failed.load() == 0);
  auto values = sharding::entity_for<tally::entity>(*c[0].n, id).ask(tally::get_values{}, 10s);
  REQUIRE(values);
  CHECK(*values == one_to(count));
  // Node 1 has handed everything off: it leaves first, so node 0's own shutdown
  // does not offer shards to a region that no longer takes any.
  CHECK(owner.shutdown().clean);
}
