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

/// Raw CAF request/response in `p`'s pattern over `actors` plain answering actors.
ask_figures raw_asks(caf::actor_system& sys, int actors, pattern p, double seconds) {
  auto answer = [](int k) { return std::int64_t{k}; };
  auto targets = std::make_shared<std::vector<caf::actor>>();
  for (int i = 0; i < actors; ++i)
    targets->push_back(sys.spawn([answer]() -> caf::behavior { return {answer}; }));
  auto asks = ask_fn{[targets](caf::event_based_actor* self, int k, ask_done done) {
    auto& dest = (*targets)[static_cast<std::size_t>(k) % targets->size()];
    self->request(dest, caf::infinite, k)
      .then([done](std::int64_t) { done(true); }, [done](caf::error&) { done(false); });
  }};
  auto f = asker_rate(sys, asks, entities, 1, p.window, p.pick, seconds);
  for (auto& t : *targets)
    caf::anon_send_exit(t, caf::exit_reason::user_shutdown);
  return f;
}

/// One pattern's figures: troupe's asks, and the baselines: raw CAF to one
/// answering actor and, for context, spread over 10,000 (each ask then wakes a
/// cold actor, as an entity ask does).
struct figures {
  ask_figures troupe;
  ask_figures raw;
  ask_figures raw_many;
};

/// Rounded to a multiple of `to` (the line rounds only its top-level figures).
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
  // The troupe windows first, on the node's scheduler alone: the raw CAF
  // system's idle workers poll.
  figures one;
  figures many;
  for (auto [f, p] : {std::pair{&one, like_the_peer}, std::pair{&many, wide}})
    f->troupe = asker_rate(node->system(), asks, entities, 1, p.window, p.pick, opts.seconds);
  node->shutdown();
  caf::actor_system_config cfg;
  caf::actor_system sys{cfg};
  for (auto [f, p] : {std::pair{&one, like_the_peer}, std::pair{&many, wide}}) {
    f->raw = raw_asks(sys, 1, p, opts.seconds);
    f->raw_many = raw_asks(sys, entities, p, opts.seconds);
  }

  troupe::bench::result r;
  r.bench = "entity_ask_local";
  r.unit = "asks/s";
  r.troupe = one.troupe.rate;
  r.baseline = one.raw.rate;
  r.extra = {{"entities", entities},
             {"in_flight", like_the_peer.window},
             {"order", "cycling"},
             {"failed", one.troupe.failed + many.troupe.failed},
             {"raw_10k_actors", rounded(one.raw_many.rate, 100.0)},
             {"ratio_to_raw_10k_actors", rounded(one.troupe.rate / one.raw_many.rate, 0.001)},
             {"in_flight_256",
              {{"order", "random"},
               {"troupe", rounded(many.troupe.rate, 100.0)},
               {"baseline", rounded(many.raw.rate, 100.0)},
               {"ratio", rounded(many.troupe.rate / many.raw.rate, 0.001)},
               {"raw_10k_actors", rounded(many.raw_many.rate, 100.0)},
               {"ratio_to_raw_10k_actors", rounded(many.troupe.rate / many.raw_many.rate, 0.001)}}}};
  return {r};
}

} // namespace

TROUPE_BENCHMARK("entity_ask_local",
                 "asks to 10k sharded in-memory entities on one node vs raw CAF request/response",
                 run);
