// The order enrichment sample's streams (docs/streams.md, "Samples"), shared by
// troupe-order-enrichment (main.cpp) and its test
// (tests/streams/order_enrichment_test.cpp):
//
//   updates -> to_scores(node)                 each update: set_score to its customer
//   orders  -> enrich_orders(node) -> out      each order: enrich to its customer,
//                                              out comes the enriched order
//
// A stream–table join without a remote call per element: the "table" is the
// customer_credit entities (credit.hpp), sharded over the cluster, and each order
// goes to its customer's entity, which joins it there with the score it holds.
// The work moves to the data: nothing reads the score back to the stream, an
// order costs one command whether the entity is local or remote, and commands
// for entities on another node travel many to a packet (the sharding layer
// forwards them in batches, docs/sharding.md "Forwarding in batches"). The entity
// flow keeps one command per customer in flight, so the orders of a customer are
// joined, and come out, in their order.
//
// Also here: a deterministic workload in rounds (a round's updates complete
// before its orders start), the enriched orders it must give, and the check.
#pragma once

#include "credit.hpp"

#include "troupe/actors/node.hpp"
#include "troupe/sharding/sharding.hpp"
#include "troupe/streams/streams.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

namespace order_enrichment {

namespace ts = troupe::streams;

/// Shards of the customer type (the same on every node).
inline constexpr std::uint32_t number_of_shards = 30;

inline troupe::sharding::sharding_settings sharding_settings() {
  troupe::sharding::sharding_settings s;
  s.number_of_shards = number_of_shards;
  return s;
}

/// Registers the customer's types in the node's codec and starts its region (on
/// every node, after the transport, the cluster and the journal).
inline troupe::expected<void> start_customers(troupe::node& n,
                                              troupe::sharding::sharding_settings s = sharding_settings()) {
  register_types(n.codec());
  return troupe::sharding::start<customer_credit>(n, std::move(s));
}

/// The table's own stream: each update becomes a set_score to its customer's
/// entity (at most opts.ask.parallelism in flight, in order per customer).
inline ts::sink<credit_update, ts::completion> to_scores(troupe::node& n,
                                                         ts::entity_sink_options opts = {}) {
  return ts::to_entities<customer_credit, credit_update>(
    n, [](const credit_update& u) { return u.customer; },
    [](const credit_update& u) { return set_score{u.version, u.score}; }, std::move(opts));
}

/// The join: each order goes to its customer's entity, which answers it enriched.
/// Out in completion order, in order per customer.
inline ts::flow<order, enriched_order> enrich_orders(troupe::node& n,
                                                     ts::entity_sink_options opts = {}) {
  return ts::flow<order, enriched_order>{ts::entities_flow<customer_credit, order>(
    n, [](const order& o) { return o.customer; }, [](const order& o) { return enrich{o}; },
    std::move(opts))};
}

// ---- the workload ----------------------------------------------------------------

struct workload_options {
  std::int64_t customers = 100;
  std::int64_t rounds = 2;
  std::int64_t updates = 500;  ///< score updates per round
  std::int64_t orders = 1000;  ///< orders per round
  /// Every this-many-th customer never gets a score (its orders: unknown_customer).
  std::int64_t unknown_every = 10;
  std::uint64_t seed = 1;
};

struct round {
  std::vector<credit_update> updates;
  std::vector<order> orders;
};

inline std::string customer_name(std::int64_t i) {
  return fmt::format("c-{}", i);
}

/// Rounds of updates and orders drawn from `seed` (the same on every platform:
/// plain arithmetic on mt19937_64's output). Customers c-0..c-(customers-1); those
/// with i % unknown_every == unknown_every - 1 get no updates; versions count up
/// per customer across rounds; order ids o-1, o-2, ... across rounds.
inline std::vector<round> make_workload(const workload_options& w) {
  std::mt19937_64 rng{w.seed};
  auto pick = [&rng](std::int64_t n) { return static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(n)); };
  std::vector<std::int64_t> scored;
  for (std::int64_t i = 0; i < w.customers; ++i)
    if (w.unknown_every <= 0 || i % w.unknown_every != w.unknown_every - 1)
      scored.push_back(i);
  std::vector<std::int64_t> versions(static_cast<std::size_t>(w.customers), 0);
  std::vector<round> out(static_cast<std::size_t>(w.rounds));
  std::int64_t next_order = 1;
  for (auto& r : out) {
    for (std::int64_t k = 0; k < w.updates && !scored.empty(); ++k) {
      auto c = scored[static_cast<std::size_t>(pick(static_cast<std::int64_t>(scored.size())))];
      auto score = static_cast<std::int32_t>(min_score + pick(max_score - min_score + 1));
      r.updates.push_back({customer_name(c), ++versions[static_cast<std::size_t>(c)], score});
    }
    for (std::int64_t k = 0; k < w.orders; ++k)
      r.orders.push_back({fmt::format("o-{}", next_order++), customer_name(pick(w.customers)),
                          1 + pick(5000)});
  }
  return out;
}

/// The orders of every round, in the order they are sent.
inline std::vector<order> all_orders(const std::vector<round>& rounds) {
  std::vector<order> out;
  for (auto& r : rounds)
    out.insert(out.end(), r.orders.begin(), r.orders.end());
  return out;
}

/// What all_orders(rounds) must come out as when each round's updates are applied
/// before its orders are joined (run_rounds): the newest version wins, per customer.
inline std::vector<enriched_order> expected_enrichment(const std::vector<round>& rounds) {
  std::unordered_map<std::string, credit_state> table;
  std::vector<enriched_order> out;
  for (auto& r : rounds) {
    for (auto& u : r.updates)
      if (auto& s = table[u.customer]; u.version > s.version)
        s = {u.version, u.score};
    for (auto& o : r.orders)
      out.push_back(join(table[o.customer], o));
  }
  return out;
}

// ---- running it ------------------------------------------------------------------

struct run_options {
  ts::entity_sink_options entities;  ///< for both streams
  troupe::duration round_timeout = std::chrono::minutes{5};
};

/// Runs `rounds` on node `n`, one after the other: a round's updates to the end
/// (every one acknowledged, so durable), then its orders through the join, each
/// enriched order to `out` (called on the stream's actor, one at a time). Stops
/// at the first stream that fails.
inline troupe::expected<void> run_rounds(troupe::node& n, const std::vector<round>& rounds,
                                         const run_options& opts,
                                         std::function<void(const enriched_order&)> out) {
  for (std::size_t i = 0; i < rounds.size(); ++i) {
    auto updates = ts::from_container(rounds[i].updates)
                     .to(to_scores(n, opts.entities))
                     .run(n, {.name = fmt::format("credit-updates-{}", i + 1)});
    if (!updates)
      return std::move(updates).error();
    if (auto r = updates->wait(opts.round_timeout); !r)
      return std::move(r).error();
    auto joined = ts::from_container(rounds[i].orders)
                    .via(enrich_orders(n, opts.entities))
                    .to(ts::for_each<enriched_order>(out))
                    .run(n, {.name = fmt::format("orders-{}", i + 1)});
    if (!joined)
      return std::move(joined).error();
    if (auto r = joined->wait(opts.round_timeout); !r)
      return std::move(r).error();
  }
  return {};
}

// ---- the check -------------------------------------------------------------------

struct check_report {
  std::size_t orders = 0;    ///< sent
  std::size_t enriched = 0;  ///< came out (distinct orders)
  std::size_t approved = 0, declined = 0, unknown = 0;
  std::size_t lost = 0;          ///< sent, never came out
  std::size_t duplicated = 0;    ///< came out again
  std::size_t wrong = 0;         ///< came out other than expected (or never sent)
  std::size_t out_of_order = 0;  ///< came out before an earlier order of its customer
  std::vector<std::string> problems;  ///< the first few, described

  bool ok() const { return lost == 0 && duplicated == 0 && wrong == 0 && out_of_order == 0; }

  std::string summary() const {
    return fmt::format("{} orders, {} enriched ({} approved, {} declined, {} unknown customer), "
                       "{} lost, {} duplicated, {} wrong, {} out of order",
                       orders, enriched, approved, declined, unknown, lost, duplicated, wrong,
                       out_of_order);
  }
};

/// Compares `got` (in the order the orders came out) with `want`, which is
/// aligned with `sent`: every order exactly once, as expected, and the orders of
/// each customer in the order they were sent.
inline check_report check(const std::vector<order>& sent, const std::vector<enriched_order>& want,
                          const std::vector<enriched_order>& got) {
  check_report r;
  r.orders = sent.size();
  std::unordered_map<std::string, std::size_t> index;
  for (std::size_t i = 0; i < sent.size(); ++i)
    index.emplace(sent[i].id, i);
  std::vector<bool> seen(sent.size(), false);
  std::map<std::string, std::size_t> last_of_customer;  // index of its last order out
  auto problem = [&r](std::string what) {
    if (r.problems.size() < 10)
      r.problems.push_back(std::move(what));
  };
  for (auto& g : got) {
    auto i = index.find(g.o.id);
    if (i == index.end()) {
      ++r.wrong;
      problem(fmt::format("order {} was never sent", g.o.id));
      continue;
    }
    auto k = i->second;
    if (seen[k]) {
      ++r.duplicated;
      problem(fmt::format("order {} came out again", g.o.id));
      continue;
    }
    seen[k] = true;
    ++r.enriched;
    switch (g.verdict) {
      case decision::approved: ++r.approved; break;
      case decision::declined: ++r.declined; break;
      case decision::unknown_customer: ++r.unknown; break;
    }
    if (k >= want.size() || !(g == want[k])) {
      ++r.wrong;
      problem(fmt::format("order {} came out with score {} (version {}), expected {} (version {})",
                          g.o.id, g.score, g.score_version, k < want.size() ? want[k].score : 0,
                          k < want.size() ? want[k].score_version : 0));
    }
    auto [last, first] = last_of_customer.try_emplace(g.o.customer, k);
    if (!first) {
      if (k < last->second) {
        ++r.out_of_order;
        problem(fmt::format("order {} of {} came out after a later one", g.o.id, g.o.customer));
      }
      last->second = std::max(last->second, k);
    }
  }
  for (std::size_t k = 0; k < sent.size(); ++k)
    if (!seen[k]) {
      ++r.lost;
      problem(fmt::format("order {} never came out", sent[k].id));
    }
  return r;
}

} // namespace order_enrichment
