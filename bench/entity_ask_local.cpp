// entity_ask_local: ask round trips to sharded entities on the same node through
// sharding's entity_ref, versus raw CAF request/response between two plain actors,
// in the same run.
//
// Troupe side: one node with its transport, a one-node cluster, an in-memory
// journal and the bank's account type sharded over 100 shards; 10,000 accounts are
// opened first, then an asking actor asks get_balance (a ref's first ask goes
// through the region, which gives the ref a direct route to the local incarnation;
// later asks go straight to the entity). Baseline: the same asking pattern against
// one raw CAF actor that answers at once. For context the line also gives the same
// raw asks spread over 10,000 answering actors (`raw_10k_actors`): most of the gap
// to the one-actor baseline is CAF's cost of running a cold actor per ask, which
// every entity ask pays (docs/benchmarks.md).
//
// Two patterns, each with its own baselines:
// - the line's figures: one ask in flight, over the accounts in order (0, 1, ...,
//   9,999, 0, ...): what compare.py's Erlang peer does with its 10,000 processes,
//   so `compare.py entity_ask_local` compares the same work;
// - `in_flight_256`: 256 asks in flight over random accounts (the line's figures
//   until 2026-12-04).
#include "sharded_bench.hpp"

#include <cmath>

namespace {

using namespace troupe::bench::sharded;

constexpr int entities = 10'000;

/// How the asker picks its asks.
struct pattern {
  int window;
  order pick;
};

constexpr pattern like_the_peer{1, order::cycling};
constexpr pattern wide{256, order::random};

/// Asks/s of raw CAF request/response: one asker asking in `p`'s pattern over
/// `actors` plain answering actors.
double raw_ask_rate(caf::actor_system& sys, int actors, pattern p, double seconds) {
  auto answer = [](int k) { return std::int64_t{k}; };
  auto targets = std::make_shared<std::vector<caf::actor>>();
  for (int i = 0; i < actors; ++i)
    targets->push_back(sys.spawn([answer]() -> caf::behavior { return {answer}; }));
  auto c = std::make_shared<counters>();
  auto a = sys.spawn(
    asker, c,
    ask_fn{[targets](caf::event_based_actor* self, int k, ask_done done) {
      auto& dest = (*targets)[static_cast<std::size_t>(k) % targets->size()];
      self->request(dest, caf::infinite, k)
        .then([done](std::int64_t) { done(true); }, [done](caf::error&) { done(false); });
    }},
    entities, p.window, p.pick);
  auto rate = measure(*c, seconds);
  caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
  for (auto& t : *targets)
    caf::anon_send_exit(t, caf::exit_reason::user_shutdown);
  return rate;
}

struct figures {
  double troupe = 0;
  double raw = 0;
  double raw_many = 0;
  std::uint64_t failed = 0;
};

/// Troupe's asks/s in `p`'s pattern (the node's scheduler only: the raw CAF
/// system, whose idle workers poll, starts after the troupe windows).
void measure_troupe(troupe::node& node, const ask_fn& asks, pattern p, double seconds,
                    figures& f) {
  auto tc = std::make_shared<counters>();
  auto troupe_asker = node.system().spawn(asker, tc, asks, entities, p.window, p.pick);
  f.troupe = measure(*tc, seconds);
  caf::anon_send_exit(troupe_asker, caf::exit_reason::user_shutdown);
  f.failed = tc->failed.load();
}

/// The baselines in `p`'s pattern: raw CAF, one answering actor; and, for context,
/// the same asks spread over 10,000 raw answering actors (each ask then wakes a
/// cold actor, as an entity ask does).
void measure_raw(caf::actor_system& sys, pattern p, double seconds, figures& f) {
  f.raw = raw_ask_rate(sys, 1, p, seconds);
  f.raw_many = raw_ask_rate(sys, entities, p, seconds);
}

double rounded(double x, double to) {
  return std::round(x / to) * to;
}

std::vector<troupe::bench::result> run(const troupe::bench::options& opts) {
  auto node = start_node();
  for (int k = 0; k < entities; ++k)
    if (!troupe::sharding::entity_for<bank::account>(*node, fmt::format("acct-{}", k))
           .ask(bank::open_account{"bench"}, 30s))
      troupe::bench::die("opening the accounts failed");
  auto asks = balance_asks(*node, entities);
  figures one;
  figures many;
  measure_troupe(*node, asks, like_the_peer, opts.seconds, one);
  measure_troupe(*node, asks, wide, opts.seconds, many);
  node->shutdown();
  caf::actor_system_config cfg;
  caf::actor_system sys{cfg};
  measure_raw(sys, like_the_peer, opts.seconds, one);
  measure_raw(sys, wide, opts.seconds, many);

  troupe::bench::result r;
  r.bench = "entity_ask_local";
  r.unit = "asks/s";
  r.troupe = one.troupe;
  r.baseline = one.raw;
  r.extra = {{"entities", entities},
             {"in_flight", like_the_peer.window},
             {"order", "cycling"},
             {"failed", one.failed + many.failed},
             {"raw_10k_actors", rounded(one.raw_many, 100.0)},
             {"ratio_to_raw_10k_actors", rounded(one.troupe / one.raw_many, 0.001)},
             {"in_flight_256",
              {{"order", "random"},
               {"troupe", rounded(many.troupe, 100.0)},
               {"baseline", rounded(many.raw, 100.0)},
               {"ratio", rounded(many.troupe / many.raw, 0.001)},
               {"raw_10k_actors", rounded(many.raw_many, 100.0)},
               {"ratio_to_raw_10k_actors", rounded(many.troupe / many.raw_many, 0.001)}}}};
  return {r};
}

} // namespace

TROUPE_BENCHMARK("entity_ask_local",
                 "asks to 10k sharded in-memory entities on one node vs raw CAF request/response",
                 run);
