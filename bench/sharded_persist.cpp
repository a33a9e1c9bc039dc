// sharded_persist: durable persists of event-sourced entities reached through
// sharding, versus the same entities reached directly (persistence::entity_ref), in
// the same run on the same node and SQLite journal (WAL + synchronous=FULL).
//
// One node in a one-node cluster, the bank's account type sharded over 100 shards.
// 10,000 accounts per side ("acct-k" through sharding, "direct-k" spawned with
// spawn_entity) are opened first; then 20 asking actors keep 50 deposits each in
// flight (1,000 in flight) over random accounts of one side, and acknowledged
// deposits per second are counted. The sides are measured in alternating windows,
// four each in the order direct, sharded, sharded, direct, ... (the rate falls as
// the journal grows, so each side gets early and late windows alike), and the
// means are compared. Bar (issue 11): ratio >= 0.9.
#include "sharded_bench.hpp"

#include "troupe/persistence/entity.hpp"

#include <algorithm>

namespace {

using namespace troupe::bench::sharded;

constexpr int entities = 10'000;
constexpr int askers = 20;
constexpr int window = 50;

double rate(troupe::node& n, const ask_fn& ask, double seconds) {
  return ask_rate(n, ask, entities, askers, window, seconds, "sharded_persist");
}

std::vector<troupe::bench::result> run(const troupe::bench::options& opts) {
  troupe::bench::scratch_dir dir;
  troupe::sharding::sharding_settings s;
  auto node = start_node(s, (dir.path / "journal.db").string());
  using bank::account;
  auto sharded = std::make_shared<std::vector<troupe::sharding::entity_ref<account>>>();
  auto direct = std::make_shared<std::vector<troupe::persistence::entity_ref<account>>>();
  for (int k = 0; k < entities; ++k) {
    sharded->push_back(troupe::sharding::entity_for<account>(*node, fmt::format("acct-{}", k)));
    auto d = troupe::persistence::spawn_entity<account>(*node, fmt::format("direct-{}", k));
    if (!d)
      troupe::bench::die(d.error().to_string());
    direct->push_back(*d);
  }
  auto sharded_ask = [sharded](auto cmd) {
    return ask_fn{[sharded, cmd](caf::event_based_actor* self, int k, ask_done done) {
      (*sharded)[static_cast<std::size_t>(k)].ask(
        self, cmd, 30s, [done](auto r) { done(static_cast<bool>(r)); });
    }};
  };
  auto direct_ask = [direct](auto cmd) {
    return ask_fn{[direct, cmd](caf::event_based_actor* self, int k, ask_done done) {
      troupe::ask<troupe::persistence::done>(self, (*direct)[static_cast<std::size_t>(k)], 30s, cmd)
        .then([done](troupe::expected<troupe::persistence::done> r) { done(static_cast<bool>(r)); });
    }};
  };
  open_all(*node, sharded_ask(bank::open_account{"bench"}), entities, "sharded_persist");
  open_all(*node, direct_ask(bank::open_account{"bench"}), entities, "sharded_persist");
  auto window_seconds = std::max(1.0, opts.seconds / 2);
  // Warm-up, not counted: the first windows after the opening run on a small
  // journal and would favour whichever side came first.
  (void) rate(*node, direct_ask(bank::deposit{1, ""}), window_seconds);
  (void) rate(*node, sharded_ask(bank::deposit{1, ""}), window_seconds);
  auto w = troupe::bench::alternate_windows(
    4, [&] { return rate(*node, direct_ask(bank::deposit{1, ""}), window_seconds); },
    [&] { return rate(*node, sharded_ask(bank::deposit{1, ""}), window_seconds); });
  node->shutdown();
  troupe::bench::result r;
  r.bench = "sharded_persist";
  r.unit = "events/s";
  r.troupe = troupe::bench::paired_windows::mean(w.b);
  r.baseline = troupe::bench::paired_windows::mean(w.a);
  r.extra = {{"entities", entities},
             {"in_flight", askers * window},
             {"journal", "sqlite WAL+FULL"},
             {"windows", "1 warm-up each, then 4 each alternating ABBA; means"},
             {"round_ratios", w.round_ratios()}};
  return {r};
}

} // namespace

TROUPE_BENCHMARK("sharded_persist",
                 "durable persists through sharding vs the same entities reached directly "
                 "(SQLite WAL+FULL)",
                 run);
