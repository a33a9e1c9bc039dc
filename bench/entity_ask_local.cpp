// entity_ask_local: ask round trips to sharded entities on the same node through
// sharding's entity_ref, versus raw CAF request/response between two plain actors,
// in the same run.
//
// Troupe side: one node with its transport, a one-node cluster, an in-memory
// journal and the bank's account type sharded over 100 shards; 10,000 accounts are
// opened first, then an asking actor keeps `window` get_balance asks in flight over
// random accounts (each ask: the region routes it to the local shard and asks the
// entity; the reply comes back the same way). Baseline: the same asking pattern
// against one raw CAF actor that answers at once.
#include "harness.hpp"

#include "../samples/bank/account.hpp"

#include "troupe/actors/node.hpp"
#include "troupe/actors/remote/transport.hpp"
#include "troupe/membership/cluster.hpp"
#include "troupe/persistence/journal_service.hpp"
#include "troupe/persistence/memory_journal.hpp"
#include "troupe/sharding/sharding.hpp"

#include <caf/all.hpp>

#include <atomic>
#include <future>
#include <random>
#include <thread>

using namespace std::chrono_literals;

namespace {

constexpr int entities = 10'000;
constexpr int window = 256;

struct counters {
  std::atomic<std::uint64_t> done{0};
  std::atomic<std::uint64_t> failed{0};
  std::atomic<bool> stop{false};
};

/// Keeps `window` asks in flight; `ask_one(self, k, on_reply)` starts one.
template <class AskOne>
caf::behavior asker(caf::event_based_actor* self, std::shared_ptr<counters> c, AskOne ask_one) {
  auto rng = std::make_shared<std::mt19937>(42);
  auto next = std::make_shared<std::function<void()>>();
  *next = [self, c, rng, ask_one, next] {
    if (c->stop.load(std::memory_order_relaxed))
      return;
    auto k = static_cast<int>((*rng)() % entities);
    ask_one(self, k, [c, next](bool ok) {
      (ok ? c->done : c->failed).fetch_add(1, std::memory_order_relaxed);
      (*next)();
    });
  };
  for (int i = 0; i < window; ++i)
    (*next)();
  return {[](caf::unit_t) {}};
}

double measure(counters& c, double seconds) {
  auto start = troupe::bench::now_seconds();
  auto base = c.done.load();
  while (troupe::bench::now_seconds() - start < seconds)
    std::this_thread::sleep_for(10ms);
  auto n = c.done.load() - base;
  auto took = troupe::bench::now_seconds() - start;
  c.stop = true;
  return static_cast<double>(n) / took;
}

std::unique_ptr<troupe::node> start_node() {
  auto schema = troupe::node_config_keys();
  troupe::persistence::add_config_keys(schema);
  troupe::config cfg{std::move(schema)};
  (void) cfg.set_text("log.level", "warn");
  auto n = troupe::node::start(std::move(cfg));
  if (!n)
    troupe::bench::die(n.error().to_string());
  auto& node = **n;
  auto t = troupe::remote::transport::start(node);
  if (!t)
    troupe::bench::die(t.error().to_string());
  auto journal = std::make_shared<troupe::persistence::memory_journal>();
  if (auto j = troupe::persistence::install_journal(node, journal, journal); !j)
    troupe::bench::die(j.error().to_string());
  troupe::membership::membership_settings ms;
  ms.seed_nodes = {(*t)->address()};
  auto c = troupe::membership::cluster::start(node, ms);
  if (!c || !(*c)->wait_until_up(30s))
    troupe::bench::die("the one-node cluster did not come up");
  bank::register_types(node.codec());
  troupe::sharding::sharding_settings s;
  s.passivate_idle_after = 0s;
  if (auto r = troupe::sharding::start<bank::account>(node, s); !r)
    troupe::bench::die(r.error().to_string());
  return std::move(*n);
}

std::vector<troupe::bench::result> run(const troupe::bench::options& opts) {
  auto node = start_node();
  std::vector<troupe::sharding::entity_ref<bank::account>> refs;
  for (int k = 0; k < entities; ++k)
    refs.push_back(troupe::sharding::entity_for<bank::account>(*node, fmt::format("acct-{}", k)));
  for (auto& r : refs)
    if (!r.ask(bank::open_account{"bench"}, 30s))
      troupe::bench::die("opening the accounts failed");
  auto tc = std::make_shared<counters>();
  auto troupe_asker = node->system().spawn(asker<std::function<void(caf::event_based_actor*, int, std::function<void(bool)>)>>, tc,
    std::function<void(caf::event_based_actor*, int, std::function<void(bool)>)>{
      [refs](caf::event_based_actor* self, int k, std::function<void(bool)> done) {
        refs[static_cast<std::size_t>(k)].ask(self, bank::get_balance{}, 10s,
                                              [done](troupe::expected<std::int64_t> b) { done(static_cast<bool>(b)); });
      }});
  auto troupe_rate = measure(*tc, opts.seconds);
  caf::anon_send_exit(troupe_asker, caf::exit_reason::user_shutdown);

  // Baseline: raw CAF, one answering actor.
  caf::actor_system_config cfg;
  caf::actor_system sys{cfg};
  auto answer = sys.spawn([]() -> caf::behavior { return {[](int k) { return std::int64_t{k}; }}; });
  auto bc = std::make_shared<counters>();
  auto raw_asker = sys.spawn(asker<std::function<void(caf::event_based_actor*, int, std::function<void(bool)>)>>, bc,
    std::function<void(caf::event_based_actor*, int, std::function<void(bool)>)>{
      [answer](caf::event_based_actor* self, int k, std::function<void(bool)> done) {
        self->request(answer, caf::infinite, k)
          .then([done](std::int64_t) { done(true); }, [done](caf::error&) { done(false); });
      }});
  auto raw_rate = measure(*bc, opts.seconds);
  caf::anon_send_exit(raw_asker, caf::exit_reason::user_shutdown);
  caf::anon_send_exit(answer, caf::exit_reason::user_shutdown);
  node->shutdown();

  troupe::bench::result r;
  r.bench = "entity_ask_local";
  r.unit = "asks/s";
  r.troupe = troupe_rate;
  r.baseline = raw_rate;
  r.extra = {{"entities", entities}, {"in_flight", window}, {"failed", tc->failed.load()}};
  return {r};
}

} // namespace

TROUPE_BENCHMARK("entity_ask_local",
                 "asks to 10k sharded in-memory entities on one node vs raw CAF request/response",
                 run);
