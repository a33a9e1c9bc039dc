// The order enrichment sample (samples/order_enrichment): a stream–table join in
// which each order goes to its customer's credit entity, kept up to date by a
// stream of score updates. Its streams (pipeline.hpp) on an in-process cluster,
// and its program: every order comes out exactly once, enriched with the score
// its customer's entity held when the order reached it, in order per customer;
// an order of a customer without a score comes out as unknown, not dropped.
#include "../../samples/order_enrichment/pipeline.hpp"

#include "membership/cluster_fixture.hpp"
#include "sharding/sharding_fixture.hpp"
#include "support/child_process.hpp"
#include "support/temp_dir.hpp"
#include "support/wait.hpp"

#include <doctest/doctest.h>
#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

using namespace std::chrono_literals;
using namespace troupe;
namespace oe = order_enrichment;

namespace {

/// `count` nodes in one cluster on a shared memory journal, each with the
/// customers' region (12 shards, quick hand-offs and rebalances).
struct customers_cluster {
  test::in_process_cluster c;

  explicit customers_cluster(std::size_t count) : c{count, test::sharding_schema()} {
    c.start_clusters(1);
    REQUIRE(test::wait_until([&] { return c.all_up(); }, 30s));
    auto journal = std::make_shared<persistence::memory_journal>();
    for (std::size_t i = 0; i < count; ++i) {
      REQUIRE(persistence::install_journal(*c[i].n, journal, journal));
      auto r = oe::start_customers(*c[i].n, test::fast_sharding_settings(12));
      INFO((r ? std::string{"ok"} : r.error().to_string()));
      REQUIRE(r);
    }
  }

  node& first() { return *c[0].n; }
};

/// The enriched orders of `rounds` run by the sample's run_rounds on `n`, in the
/// order they came out.
std::vector<oe::enriched_order> run_rounds(node& n, const std::vector<oe::round>& rounds) {
  oe::run_options opts;
  opts.entities.ask.parallelism = 32;
  opts.entities.ask.timeout = 30s;
  std::vector<oe::enriched_order> got;  // appended by one stream at a time
  auto r = oe::run_rounds(n, rounds, opts, [&got](const oe::enriched_order& e) { got.push_back(e); });
  INFO((r ? std::string{"ok"} : r.error().to_string()));
  REQUIRE(r);
  return got;
}

std::uint64_t counter(node& n, std::string_view name) {
  metric_labels type{{"type", std::string{oe::customer_credit::entity_type}}};
  return n.metrics().counter_value(name, type).value_or(0);
}

/// The sample's program, built into build/samples/order_enrichment (the tests
/// into build/tests/bin).
std::string program() {
  auto bin = std::filesystem::path{test::program_path("x")}.parent_path();
  return (bin.parent_path().parent_path() / "samples/order_enrichment/troupe-order-enrichment")
    .string();
}

} // namespace

TEST_CASE("order enrichment: an order is joined with the newest score its customer's entity "
          "applied before it, and an order of a customer without one comes out as unknown") {
  customers_cluster cluster{3};
  using oe::decision;
  // Round 1: ada's score moves to 650 (a limit of 2,000), cy's is 820 (8,800); bob
  // and dan have none. Round 2: ada's goes to 820, then an older version of it
  // arrives (ignored: the entity keeps the newest); bob gets 550 (no limit).
  std::vector<oe::round> rounds{
    {{{"ada", 1, 700}, {"ada", 2, 650}, {"cy", 1, 820}},
     {{"o-1", "ada", 2000}, {"o-2", "ada", 2001}, {"o-3", "bob", 10}, {"o-4", "cy", 8800}}},
    {{{"ada", 3, 820}, {"ada", 2, 300}, {"bob", 1, 550}},
     {{"o-5", "ada", 2001}, {"o-6", "bob", 10}, {"o-7", "dan", 1}}},
  };
  std::vector<oe::enriched_order> want{
    {{"o-1", "ada", 2000}, 2, 650, decision::approved},
    {{"o-2", "ada", 2001}, 2, 650, decision::declined},
    {{"o-3", "bob", 10}, 0, 0, decision::unknown_customer},
    {{"o-4", "cy", 8800}, 1, 820, decision::approved},
    {{"o-5", "ada", 2001}, 3, 820, decision::approved},
    {{"o-6", "bob", 10}, 1, 550, decision::declined},
    {{"o-7", "dan", 1}, 0, 0, decision::unknown_customer},
  };
  auto got = run_rounds(cluster.first(), rounds);
  // The sample's own expectation and check agree with the hand-made one.
  CHECK(oe::expected_enrichment(rounds) == want);
  auto report = oe::check(oe::all_orders(rounds), want, got);
  CHECK(report.summary() == "7 orders, 7 enriched (3 approved, 2 declined, 2 unknown customer), "
                            "0 lost, 0 duplicated, 0 wrong, 0 out of order");
  REQUIRE(got.size() == want.size());
  std::sort(got.begin(), got.end(), [](auto& a, auto& b) { return a.o.id < b.o.id; });
  for (std::size_t i = 0; i < want.size(); ++i) {
    INFO(want[i].o.id << ": got " << nlohmann::json(got[i]).dump());
    CHECK(got[i] == want[i]);
  }
}

TEST_CASE("order enrichment: three rounds of updates and orders over three nodes: every order "
          "exactly once, with its customer's score of that round, in order per customer, the "
          "remote ones many to a packet") {
  customers_cluster cluster{3};
  oe::workload_options w{.customers = 40, .rounds = 3, .updates = 150, .orders = 400, .seed = 7};
  auto rounds = oe::make_workload(w);
  auto sent = oe::all_orders(rounds);
  auto want = oe::expected_enrichment(rounds);
  // The workload tests something: scores change between rounds, some customers
  // have none, and the rule both approves and declines.
  std::set<std::int64_t> versions_seen;
  for (auto& e : want)
    versions_seen.insert(e.score_version);
  CHECK(versions_seen.size() > 3);

  auto got = run_rounds(cluster.first(), rounds);
  auto report = oe::check(sent, want, got);
  for (auto& p : report.problems)
    MESSAGE(p);
  MESSAGE(report.summary());
  CHECK(report.ok());
  CHECK(report.enriched == sent.size());
  CHECK(report.unknown > 0);
  CHECK(report.approved > 0);
  CHECK(report.declined > 0);
  // Not a remote call per order: the commands for customers on the other nodes
  // went many to a packet.
  auto forwarded = counter(cluster.first(), "troupe_sharding_forwarded_commands_total");
  auto packets = counter(cluster.first(), "troupe_sharding_forwarded_batches_total");
  MESSAGE("forwarded " << forwarded << " commands in " << packets << " packets");
  CHECK(packets > 0);
  CHECK(forwarded > packets);
}

TEST_CASE("order enrichment: the check reports lost, duplicated, wrong and reordered orders") {
  std::vector<oe::round> rounds{{{{"ada", 1, 700}},
                                 {{"o-1", "ada", 100}, {"o-2", "ada", 200}, {"o-3", "bob", 5}}}};
  auto sent = oe::all_orders(rounds);
  auto want = oe::expected_enrichment(rounds);
  CHECK(oe::check(sent, want, want).ok());
  CHECK(oe::check(sent, want, want).summary()
        == "3 orders, 3 enriched (2 approved, 0 declined, 1 unknown customer), 0 lost, "
           "0 duplicated, 0 wrong, 0 out of order");

  auto lost = oe::check(sent, want, {want[0], want[1]});
  CHECK(lost.lost == 1);
  CHECK_FALSE(lost.ok());
  auto twice = oe::check(sent, want, {want[0], want[1], want[1], want[2]});
  CHECK(twice.duplicated == 1);
  CHECK_FALSE(twice.ok());
  auto stale = want;
  stale[1].score_version = 0;
  CHECK(oe::check(sent, want, stale).wrong == 1);
  auto reordered = oe::check(sent, want, {want[1], want[0], want[2]});
  CHECK(reordered.out_of_order == 1);
  CHECK_FALSE(reordered.ok());
  // Orders of different customers may come out in any order.
  CHECK(oe::check(sent, want, {want[2], want[0], want[1]}).ok());
}

TEST_CASE("order enrichment: troupe-order-enrichment writes every enriched order to --out and "
          "prints the summary, and refuses a journal that exists") {
  test::temp_dir dir;
  auto out = dir.file("orders.jsonl");
  test::child_process p{program(), {"--nodes", "2", "--customers", "20", "--updates", "30",
                                    "--orders", "50", "--out", out}};
  REQUIRE(p.started());
  std::vector<std::string> lines;
  while (auto line = p.read_line(120s))
    lines.push_back(*line);
  CHECK(p.wait(30s) == 0);
  REQUIRE_FALSE(lines.empty());

  std::ifstream in{out};
  std::set<std::string> ids;
  std::size_t approved = 0, declined = 0, unknown = 0, written = 0;
  for (std::string line; std::getline(in, line); ++written) {
    auto e = nlohmann::json::parse(line).get<oe::enriched_order>();
    ids.insert(e.o.id);
    approved += e.verdict == oe::decision::approved;
    declined += e.verdict == oe::decision::declined;
    unknown += e.verdict == oe::decision::unknown_customer;
  }
  CHECK(written == 100);
  CHECK(ids.size() == 100);
  CHECK(unknown > 0);
  CHECK(lines.back()
        == fmt::format("100 orders, 100 enriched ({} approved, {} declined, {} unknown customer), "
                       "0 lost, 0 duplicated, 0 wrong, 0 out of order",
                       approved, declined, unknown));
  CHECK(std::find(lines.begin(), lines.end(), "enriched orders written to " + out) != lines.end());

  auto journal = dir.file("scores.db");
  std::ofstream{journal} << "x";
  test::child_process refused{program(), {"--persistence.journal.path", journal, "--out", out}};
  CHECK(refused.wait(30s) == 2);
}
