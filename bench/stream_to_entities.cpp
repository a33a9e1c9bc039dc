// stream_to_entities (issue 12): a stream into persistent sharded entities
// (streams::entities_flow, 1,000 in flight) versus the sharded_persist workload
// (20 asking actors keeping 50 deposits each in flight through sharding's
// entity_ref), on the same node and SQLite journal (WAL + synchronous=FULL).
//
// One node in a one-node cluster, the bank's account type sharded over 100 shards,
// 10,000 accounts opened first. Both sides deposit into random accounts, in
// alternating windows, four each in the order asks, stream, stream, asks, ...: the
// rate falls as the journal grows (more index pages written per event), so each
// side gets early and late windows alike; the means are compared. Bar: ratio >= 0.8.
#include "sharded_bench.hpp"
#include "stream_window.hpp"

#include "troupe/streams/streams.hpp"

#include <algorithm>
#include <random>

namespace {

using namespace troupe::bench::sharded;
namespace ts = troupe::streams;

constexpr int entities = 10'000;
constexpr int askers = 20;
constexpr int window = 50;
constexpr std::size_t in_flight = askers * window;

std::string account_id(int k) {
  return fmt::format("acct-{}", k);
}

/// The stream's flow: each account number becomes a deposit into that account.
/// One blueprint for every window, as a long-running stream would be (its entity
/// refs, and so their direct routes, are kept across runs).
auto deposits_flow(troupe::node& n) {
  ts::entity_sink_options opts;
  opts.ask.parallelism = in_flight;
  opts.ask.timeout = 30s;
  return ts::entities_flow<bank::account, int>(
    n, account_id, [](int) { return bank::deposit{1, ""}; }, opts);
}

/// The stream side: random account numbers -> `deposits`, acknowledged deposits
/// counted, for `seconds`; then a kill switch ends it.
template <class Flow>
double stream_rate(troupe::node& n, const Flow& deposits, double seconds) {
  ts::kill_switch ks;
  auto acked = std::make_shared<std::atomic<std::uint64_t>>(0);
  auto done = ts::unfold(std::uint32_t{42},
                         [](std::uint32_t s) {
                           std::minstd_rand rng{s};
                           auto next = static_cast<std::uint32_t>(rng());
                           return std::optional{std::pair{next, static_cast<int>(next % entities)}};
                         })
                .via(ks.flow())
                .via(deposits)
                .to(ts::for_each<troupe::persistence::done>(
                  [acked](const troupe::persistence::done&) { acked->fetch_add(1, std::memory_order_relaxed); }))
                .run(n, {.name = "deposits"});
  if (!done)
    troupe::bench::die("stream_to_entities: " + done.error().to_string());
  return troupe::bench::rate_then_shutdown("stream_to_entities", *acked, ks, *done, seconds);
}

std::vector<troupe::bench::result> run(const troupe::bench::options& opts) {
  troupe::bench::scratch_dir dir;
  auto node = start_node({}, (dir.path / "journal.db").string());
  auto refs = std::make_shared<std::vector<troupe::sharding::entity_ref<bank::account>>>();
  for (int k = 0; k < entities; ++k)
    refs->push_back(troupe::sharding::entity_for<bank::account>(*node, account_id(k)));
  auto ask_with = [refs](auto cmd) {
    return ask_fn{[refs, cmd](caf::event_based_actor* self, int k, ask_done done) {
      (*refs)[static_cast<std::size_t>(k)].ask(self, cmd, 30s,
                                               [done](auto r) { done(static_cast<bool>(r)); });
    }};
  };
  open_all(*node, ask_with(bank::open_account{"bench"}), entities, "stream_to_entities");
  auto deposits = deposits_flow(*node);
  auto window_seconds = std::max(1.0, opts.seconds / 2);
  // Warm-up, not counted: the first windows after the opening run on a small
  // journal and would favour whichever side came first.
  (void) ask_rate(*node, ask_with(bank::deposit{1, ""}), entities, askers, window, window_seconds,
                  "stream_to_entities");
  (void) stream_rate(*node, deposits, window_seconds);
  auto w = troupe::bench::alternate_windows(
    4,
    [&] {
      return ask_rate(*node, ask_with(bank::deposit{1, ""}), entities, askers, window, window_seconds,
                      "stream_to_entities");
    },
    [&] { return stream_rate(*node, deposits, window_seconds); });
  node->shutdown();
  troupe::bench::result r;
  r.bench = "stream_to_entities";
  r.unit = "events/s";
  r.troupe = troupe::bench::paired_windows::mean(w.b);
  r.baseline = troupe::bench::paired_windows::mean(w.a);
  r.extra = {{"entities", entities},
             {"in_flight", in_flight},
             {"baseline_is", "sharded_persist (entity_ref asks)"},
             {"journal", "sqlite WAL+FULL"},
             {"windows", "1 warm-up each, then 4 each alternating ABBA; means"},
             {"round_ratios", w.round_ratios()}};
  return {r};
}

} // namespace

TROUPE_BENCHMARK("stream_to_entities",
                 "a stream into persistent sharded entities vs the sharded_persist asks "
                 "(SQLite WAL+FULL)",
                 run);
