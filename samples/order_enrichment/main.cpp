// troupe-order-enrichment: a stream–table join. A stream of orders is enriched
// from the customer_credit entities, which hold the latest credit score of each
// customer and are kept up to date by a stream of score updates of their own
// (docs/streams.md, "Samples"; the streams are in pipeline.hpp, the entity in
// credit.hpp).
//
//   troupe-order-enrichment                      3 nodes in this process, 2 rounds
//   troupe-order-enrichment --nodes 1 --orders 5000 --out orders.jsonl
//   troupe-order-enrichment --persistence.journal.path scores.db   (a new file)
//
// It starts --nodes nodes in this process (a cluster over 127.0.0.1, the
// customers sharded over them), draws a deterministic workload from --seed, and
// runs --rounds rounds from the first node: the round's --updates score updates
// into the entities (to the end), then its --orders orders through the join. Each
// enriched order is written to --out as a JSON line. Then it checks every order
// against what the updates imply (each order exactly once, with the version of
// its customer's score applied before it, the approval rule, in order per
// customer) and prints
//
//   2000 orders, 2000 enriched (561 approved, 1257 declined, 182 unknown customer), 0 lost, ...
//
// exiting 0 when everything matched, 1 otherwise.
#include "pipeline.hpp"

#include "troupe/actors/node.hpp"
#include "troupe/actors/remote/transport.hpp"
#include "troupe/cli/command_line.hpp"
#include "troupe/membership/cluster.hpp"
#include "troupe/membership/settings.hpp"
#include "troupe/persistence/journal_service.hpp"
#include "troupe/persistence/memory_journal.hpp"

#include <fmt/core.h>
#include <fmt/ranges.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <vector>

using namespace std::chrono_literals;
namespace oe = order_enrichment;

namespace {

struct flags {
  std::int64_t nodes = 3;
  std::int64_t customers = 100;
  std::int64_t rounds = 2;
  std::int64_t updates = 500;
  std::int64_t orders = 1000;
  std::int64_t seed = 1;
  std::int64_t parallelism = 64;
  std::string out = "enriched-orders.jsonl";
};

/// One in-process member of the cluster.
struct member {
  std::unique_ptr<troupe::node> node;
  std::shared_ptr<troupe::membership::cluster> cluster;
};

/// `count` nodes with the config `load()` gives, each with its transport, the
/// journal (the memory one shared, or the SQLite file the config names) and its
/// cluster (the first node is the seed); once all are up, the customers' region
/// on each.
troupe::expected<std::vector<member>> start_cluster(std::size_t count,
                                                    const std::function<troupe::expected<troupe::config>()>& load,
                                                    const std::shared_ptr<troupe::persistence::memory_journal>& memory) {
  std::vector<member> members;
  std::vector<troupe::remote::node_address> seeds;
  for (std::size_t i = 0; i < count; ++i) {
    auto cfg = load();
    if (!cfg)
      return std::move(cfg).error();
    auto n = troupe::node::start(std::move(*cfg));
    if (!n)
      return std::move(n).error();
    auto t = troupe::remote::transport::start(**n);
    if (!t)
      return std::move(t).error();
    if (seeds.empty())
      seeds.push_back((*t)->address());
    auto j = memory ? troupe::persistence::install_journal(**n, memory, memory)
                    : troupe::persistence::install_journal(**n);
    if (!j)
      return std::move(j).error();
    troupe::membership::membership_settings ms;
    ms.seed_nodes = seeds;
    ms.min_nr_of_members = count;  // members become up together
    troupe::sharding::require_same_shards(ms, oe::customer_credit::entity_type,
                                          oe::sharding_settings());
    auto c = troupe::membership::cluster::start(**n, ms);
    if (!c)
      return std::move(c).error();
    members.push_back({std::move(*n), std::move(*c)});
  }
  for (auto& m : members)
    if (auto up = m.cluster->wait_until_up(60s); !up)
      return std::move(up).error();
  for (auto& m : members)
    if (auto r = oe::start_customers(*m.node); !r)
      return std::move(r).error();
  return members;
}

int fail(const troupe::error& e) {
  fmt::print(stderr, "troupe-order-enrichment: {}\n", e.to_string());
  return 1;
}

} // namespace

int main(int argc, char** argv) {
  auto schema = troupe::node_config_keys();
  troupe::persistence::add_config_keys(schema);
  schema.add("persistence.journal.path", troupe::config_type::string, std::string{},
             "The customers' SQLite journal, a new file (default: none, a journal in memory).");
  CLI::App app{"A stream-table join: a stream of orders enriched from sharded entities that "
               "hold the latest credit score per customer, kept up to date by a stream of score "
               "updates. Each order goes to its customer's entity, which joins it with its score: "
               "no remote call per order. Checks every enriched order and prints a summary.",
               "troupe-order-enrichment"};
  troupe::cli::apply_conventions(app);
  troupe::cli::config_options keys{app, schema};
  // The output is the summary; failures come back as values and are printed. Quiet
  // logs by default (--log.level, parsed after this, may say otherwise): at warn a
  // starting region's first messages to its coordinator, before the singleton
  // subscribed, are logged as dropped (they are sent again).
  keys.set("log.level", "error");
  flags f;
  troupe::cli::add_integer(app, "--nodes", f.nodes, 1, 5,
                           "Nodes in this process, the customers sharded over them (default: 3)");
  troupe::cli::add_integer(app, "--customers", f.customers, 1, 1'000'000,
                           "Customers c-0.., every tenth without a score (default: 100)");
  troupe::cli::add_integer(app, "--rounds", f.rounds, 1, 1000,
                           "Rounds of updates, then orders (default: 2)");
  troupe::cli::add_integer(app, "--updates", f.updates, 0, 10'000'000,
                           "Score updates per round (default: 500)");
  troupe::cli::add_integer(app, "--orders", f.orders, 0, 10'000'000,
                           "Orders per round (default: 1000)");
  troupe::cli::add_integer(app, "--seed", f.seed, 0, std::numeric_limits<std::int64_t>::max(),
                           "Seed of the workload (default: 1)");
  troupe::cli::add_integer(app, "--parallelism", f.parallelism, 1, 100'000,
                           "Commands in flight per stream (default: 64)");
  app.add_option("--out", f.out, "The enriched orders, one JSON object a line (default: "
                                 "enriched-orders.jsonl)")
    ->type_name("FILE");
  if (auto rc = troupe::cli::parse(app, argc, argv))
    return *rc;
  auto cfg = keys.load(schema);
  if (!cfg)
    return troupe::cli::config_error(app, cfg.error());
  auto journal_path = cfg->get_string("persistence.journal.path");
  std::shared_ptr<troupe::persistence::memory_journal> memory;
  if (journal_path.empty()) {
    memory = std::make_shared<troupe::persistence::memory_journal>();
  } else if (std::filesystem::exists(journal_path)) {
    // The check expects customers without scores: a journal of an earlier run
    // would hold its scores.
    return troupe::cli::usage_error(app, fmt::format("the journal '{}' exists; give a new file",
                                                     journal_path));
  } else {
    keys.set("persistence.journal.create-if-missing", "true");
  }
  std::ofstream out{f.out, std::ios::trunc};
  if (!out)
    return fail(troupe::error{troupe::errc::io_error, fmt::format("cannot write '{}'", f.out)});

  auto members = start_cluster(static_cast<std::size_t>(f.nodes),
                               [&] { return keys.load(schema); }, memory);
  if (!members)
    return fail(members.error());
  auto& first = *(*members)[0].node;

  oe::workload_options w{.customers = f.customers, .rounds = f.rounds, .updates = f.updates,
                         .orders = f.orders, .seed = static_cast<std::uint64_t>(f.seed)};
  auto rounds = oe::make_workload(w);
  oe::run_options ro;
  ro.entities.ask.parallelism = static_cast<std::size_t>(f.parallelism);
  ro.entities.ask.timeout = 30s;
  std::vector<oe::enriched_order> got;
  auto ran = oe::run_rounds(first, rounds, ro, [&](const oe::enriched_order& e) {
    out << nlohmann::json(e).dump() << '\n';
    got.push_back(e);
  });
  out.flush();
  if (!ran)
    return fail(ran.error());
  if (!out)
    return fail(troupe::error{troupe::errc::io_error, fmt::format("writing '{}' failed", f.out)});

  // Where the customers live, and how the commands to other nodes travelled.
  std::vector<std::size_t> shards;
  for (auto& m : *members) {
    auto r = troupe::sharding::report(*m.node, oe::customer_credit::entity_type, 10s);
    shards.push_back(r ? r->shards.size() : 0);
  }
  troupe::metric_labels type{{"type", std::string{oe::customer_credit::entity_type}}};
  auto forwarded = first.metrics().counter_value("troupe_sharding_forwarded_commands_total", type);
  auto packets = first.metrics().counter_value("troupe_sharding_forwarded_batches_total", type);
  fmt::print("{} customers, {} rounds of {} score updates and {} orders, on {} node(s); shards "
             "per node: {}\n",
             f.customers, f.rounds, f.updates, f.orders, f.nodes, fmt::join(shards, " "));
  if (f.nodes > 1)
    fmt::print("commands to customers on the other nodes: {} in {} packets\n",
               forwarded.value_or(0), packets.value_or(0));
  fmt::print("enriched orders written to {}\n", f.out);

  auto report = oe::check(oe::all_orders(rounds), oe::expected_enrichment(rounds), got);
  for (auto& p : report.problems)
    fmt::print(stderr, "mismatch: {}\n", p);
  fmt::print("{}\n", report.summary());
  std::fflush(stdout);
  for (auto& m : *members)
    m.node->shutdown();
  return report.ok() ? 0 : 1;
}
