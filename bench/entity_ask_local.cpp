// entity_ask_local: ask round trips to sharded entities on the same node through
// sharding's entity_ref, versus raw CAF request/response between two plain actors,
// in the same run.
//
// Troupe side: one node with its transport, a one-node cluster, an in-memory
// journal and the bank's account type sharded over 100 shards; 10,000 accounts are
// opened first, then an asking actor keeps `window` get_balance asks in flight over
// random accounts (a ref's first ask goes through the region, which gives the ref
// a direct route to the local incarnation; later asks go straight to the entity).
// Baseline: the same asking pattern against one raw CAF actor that answers at once.
// For context the line also gives the same raw asks spread over 10,000 answering
// actors (`raw_10k_actors`): most of the gap to the one-actor baseline is CAF's cost
// of running a cold actor per ask, which every entity ask pays (docs/benchmarks.md).
#include "sharded_bench.hpp"

#include <cmath>

namespace {

using namespace troupe::bench::sharded;

constexpr int entities = 10'000;
constexpr int window = 256;

/// Asks/s of raw CAF request/response: one asker keeping `window` asks in flight
/// over `actors` plain answering actors (random ones).
double raw_ask_rate(caf::actor_system& sys, int actors, double seconds) {
  auto answer = [](int k) { return std::int64_t{k}; };
  auto targets = std::make_shared<std::vector<caf::actor>>();
  for (int i = 0; i < actors; ++i)
    targets->push_back(sys.spawn([answer]() -> caf::behavior { return {answer}; }));
  auto c = std::make_shared<counters>();
  auto a = sys.spawn(
    asker, c,
    ask_fn{[targets](caf::event_based_actor* self, int k, std::function<void(bool)> done) {
      auto& dest = (*targets)[static_cast<std::size_t>(k) % targets->size()];
      self->request(dest, caf::infinite, k)
        .then([done](std::int64_t) { done(true); }, [done](caf::error&) { done(false); });
    }},
    entities, window, false);
  auto rate = measure(*c, seconds);
  caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
  for (auto& t : *targets)
    caf::anon_send_exit(t, caf::exit_reason::user_shutdown);
  return rate;
}

std::vector<troupe::bench::result> run(const troupe::bench::options& opts) {
  auto node = start_node();
  for (int k = 0; k < entities; ++k)
    if (!troupe::sharding::entity_for<bank::account>(*node, fmt::format("acct-{}", k))
           .ask(bank::open_account{"bench"}, 30s))
      troupe::bench::die("opening the accounts failed");
  auto tc = std::make_shared<counters>();
  auto troupe_asker = node->system().spawn(asker, tc, balance_asks(*node, entities), entities,
                                           window, false);
  auto troupe_rate = measure(*tc, opts.seconds);
  caf::anon_send_exit(troupe_asker, caf::exit_reason::user_shutdown);

  // Baseline: raw CAF, one answering actor; and, for context, the same asks spread
  // over 10,000 raw answering actors (each ask then wakes a cold actor, as an
  // entity ask does).
  caf::actor_system_config cfg;
  caf::actor_system sys{cfg};
  auto raw_rate = raw_ask_rate(sys, 1, opts.seconds);
  auto raw_many_rate = raw_ask_rate(sys, entities, opts.seconds);
  node->shutdown();

  troupe::bench::result r;
  r.bench = "entity_ask_local";
  r.unit = "asks/s";
  r.troupe = troupe_rate;
  r.baseline = raw_rate;
  r.extra = {{"entities", entities},
             {"in_flight", window},
             {"failed", tc->failed.load()},
             {"raw_10k_actors", std::round(raw_many_rate / 100.0) * 100.0},
             {"ratio_to_raw_10k_actors", std::round(troupe_rate / raw_many_rate * 1000.0) / 1000.0}};
  return {r};
}

} // namespace

TROUPE_BENCHMARK("entity_ask_local",
                 "asks to 10k sharded in-memory entities on one node vs raw CAF request/response",
                 run);
