// stream_exactly_once (issue 12): what exactly-once effects cost a stream into
// persistent sharded entities. troupe: elements carry their offset through
// entities_flow_with_offsets, each command its origin (the entities deduplicate
// with producer_offsets), and commit_offsets saves the watermark to the journal
// file's offset store (every 1,000 acknowledgements or 1 s, the defaults).
// Baseline: the same stream with neither (entities_flow, commands without
// origin: at-least-once). Extra figures split the cost: offsets and commits
// without deduplication, deduplication without offsets.
//
// One node in a one-node cluster, a counter entity sharded over 100 shards on a
// SQLite journal (WAL + synchronous=FULL), 10,000 entities touched first, 1,000
// elements in flight, each element to a pseudo-random entity. The variants run in
// alternating windows, four rounds, each variant in each position once (the rate
// falls as the journal grows); each one's median window counts.
#include "sharded_bench.hpp"
#include "stream_window.hpp"

#include "troupe/persistence/producer_offsets.hpp"
#include "troupe/persistence/projection.hpp"
#include "troupe/streams/streams.hpp"

#include <algorithm>
#include <map>

namespace {

using namespace troupe::bench::sharded;
namespace ts = troupe::streams;
namespace tp = troupe::persistence;

constexpr int entities = 10'000;
constexpr std::size_t in_flight = 1'000;
constexpr const char* producer = "bench";

struct add {
  std::int64_t amount = 0;
  tp::origin from;
  using reply = tp::done;
};
struct added {
  std::int64_t amount = 0;
  tp::origin from;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(add, amount, from)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(added, amount, from)

struct counter_state {
  std::int64_t total = 0;
  tp::producer_offsets applied;
};

/// Adds amounts; a command whose origin it applied already is acknowledged
/// without an event (commands without origin are always applied).
struct counter {
  static constexpr std::string_view entity_type = "eo-counter";
  using command = std::variant<add>;
  using event = std::variant<added>;
  using state = counter_state;
  using effect = tp::effect<counter>;

  static effect on_command(const state& s, const add& c) {
    if (s.applied.seen(c.from))
      return effect::reply(c, tp::done{});
    return effect::persist(added{c.amount, c.from});
  }
  static state on_event(state s, const added& e) {
    s.total += e.amount;
    s.applied.record(e.from);
    return s;
  }
};

/// An element: its offset, and the entity it goes to (a hash of the offset).
struct element {
  tp::offset_type offset = 0;
  int entity = 0;
};

std::string id_of(const element& e) {
  return fmt::format("c-{}", e.entity);
}

element element_at(tp::offset_type o) {
  return {o, static_cast<int>((o * 2654435761u) % entities)};
}

enum class variant { at_least_once, exactly_once, offsets_only, dedup_only };

struct variant_run {
  variant v;
  std::shared_ptr<tp::sqlite_offset_store> store;
};

/// Offsets after `after`, unbounded, through the variant's flow; `on_ack()` per
/// acknowledged element.
template <class OnAck>
ts::runnable<ts::completion> stream_of(troupe::node& n, const variant_run& r, tp::offset_type after,
                                       ts::kill_switch& ks, OnAck on_ack) {
  auto dedup = r.v == variant::exactly_once || r.v == variant::dedup_only;
  auto command_of = [dedup](const element& e) {
    return add{1, dedup ? tp::origin{producer, e.offset} : tp::origin{}};
  };
  ts::entity_sink_options opts;
  opts.ask.parallelism = in_flight;
  opts.ask.timeout = 30s;
  auto offsets = ts::unfold(after + 1, [](tp::offset_type o) { return std::optional{std::pair{o + 1, element_at(o)}}; })
                  .via(ks.flow());
  if (r.v == variant::at_least_once || r.v == variant::dedup_only)
    return offsets.via(ts::entities_flow<counter, element>(n, id_of, command_of, opts))
      .to(ts::for_each<tp::done>([on_ack](const tp::done&) { on_ack(); }));
  return offsets
    .via(ts::entities_flow_with_offsets<counter, element>(n, id_of, command_of,
                                                          [](const element& e) { return e.offset; }, opts))
    .via(ts::commit_offsets(r.store, producer, r.v == variant::exactly_once ? "exactly-once" : "offsets"))
    .to(ts::for_each<ts::offset_ack<tp::done>>([on_ack](const ts::offset_ack<tp::done>&) { on_ack(); }));
}

/// Elements acknowledged per second over `seconds`; then a kill switch ends the
/// stream. `next` is where the variant's offsets go on (they must increase for
/// the entities' marks).
double stream_rate(troupe::node& n, const variant_run& r, tp::offset_type& next, double seconds) {
  ts::kill_switch ks;
  auto acked = std::make_shared<std::atomic<std::uint64_t>>(0);
  auto done = stream_of(n, r, next, ks, [acked] { acked->fetch_add(1, std::memory_order_relaxed); })
                .run(n, {.name = "exactly-once-bench"});
  if (!done)
    troupe::bench::die("stream_exactly_once: " + done.error().to_string());
  auto rate = troupe::bench::rate_then_shutdown("stream_exactly_once", *acked, ks, *done, seconds);
  next += acked->load();  // every element emitted was acknowledged once the stream completed
  return rate;
}

std::vector<troupe::bench::result> run(const troupe::bench::options& opts) {
  troupe::bench::scratch_dir dir;
  auto path = (dir.path / "journal.db").string();
  auto node = start_node({}, path);
  node->codec().add<added>("bench.eo-added");
  node->codec().add<add>("bench.eo-add");
  troupe::sharding::sharding_settings s;
  s.passivate_idle_after = 0s;
  if (auto r = troupe::sharding::start<counter>(*node, s); !r)
    troupe::bench::die("stream_exactly_once: " + r.error().to_string());
  auto store = tp::sqlite_offset_store::open({.path = path});
  if (!store)
    troupe::bench::die("stream_exactly_once: " + store.error().to_string());
  // Every entity recovered and running before the measured windows.
  auto warm = ts::from_range(0, entities)
                .to(ts::to_entities<counter, int>(
                  *node, [](int k) { return fmt::format("c-{}", k); }, [](int) { return add{0, {}}; },
                  {.ask = {.parallelism = in_flight, .timeout = 60s}}))
                .run(*node);
  if (!warm || !warm->wait(300s))
    troupe::bench::die("stream_exactly_once: warming the entities up failed");

  // The rate falls as the journal grows, so the order rotates: each variant runs
  // in each position once, and each one's median counts.
  std::vector<variant> order{variant::at_least_once, variant::exactly_once, variant::offsets_only,
                             variant::dedup_only};
  std::map<variant, std::vector<double>> rates;
  std::map<variant, tp::offset_type> next;  // where each producer's offsets go on
  auto window_seconds = std::max(0.75, opts.seconds / 4);
  for (std::size_t round = 0; round < order.size(); ++round)
    for (std::size_t i = 0; i < order.size(); ++i) {
      auto v = order[(round + i) % order.size()];
      // The variants with origins share the producer, so they share its offsets.
      auto& at = next[v == variant::dedup_only ? variant::exactly_once : v];
      rates[v].push_back(stream_rate(*node, {v, *store}, at, window_seconds));
    }
  std::vector<double> round_ratios;
  for (std::size_t round = 0; round < order.size(); ++round)
    round_ratios.push_back(rates[variant::exactly_once][round] / rates[variant::at_least_once][round]);
  auto median = [](std::vector<double> xs) { return troupe::bench::percentile(xs, 50); };
  node->shutdown();
  troupe::bench::result r;
  r.bench = "stream_exactly_once";
  r.unit = "events/s";
  r.troupe = median(rates[variant::exactly_once]);
  r.baseline = median(rates[variant::at_least_once]);
  r.extra = {{"entities", entities},
             {"in_flight", in_flight},
             {"troupe_is", "offsets + origins deduplicated in the entities + commits every 1000 / 1 s"},
             {"baseline_is", "the same stream without offsets, origins or commits (at-least-once)"},
             {"offsets_and_commits_only", median(rates[variant::offsets_only])},
             {"dedup_only", median(rates[variant::dedup_only])},
             {"round_ratios", round_ratios},
             {"window_seconds", window_seconds},
             {"journal", "sqlite WAL+FULL"}};
  return {r};
}

} // namespace

TROUPE_BENCHMARK("stream_exactly_once",
                 "a stream into sharded entities with exactly-once effects (offsets, "
                 "deduplication, commits) vs the same stream at-least-once (SQLite WAL+FULL)",
                 run);
