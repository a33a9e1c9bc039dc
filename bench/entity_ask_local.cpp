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
#include "sharded_bench.hpp"

namespace {

using namespace troupe::bench::sharded;

constexpr int entities = 10'000;
constexpr int window = 256;

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

  // Baseline: raw CAF, one answering actor.
  caf::actor_system_config cfg;
  caf::actor_system sys{cfg};
  auto answer = sys.spawn([]() -> caf::behavior { return {[](int k) { return std::int64_t{k}; }}; });
  auto bc = std::make_shared<counters>();
  auto raw_asker = sys.spawn(
    asker, bc,
    ask_fn{[answer](caf::event_based_actor* self, int k, std::function<void(bool)> done) {
      self->request(answer, caf::infinite, k)
        .then([done](std::int64_t) { done(true); }, [done](caf::error&) { done(false); });
    }},
    entities, window, false);
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
