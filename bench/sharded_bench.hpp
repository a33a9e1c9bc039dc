// What the sharding benchmarks share: a one-node cluster with the bank's account
// type sharded on an in-memory journal, and an asking actor that keeps a window
// of asks in flight.
#pragma once

#include "harness.hpp"

#include "../samples/bank/account.hpp"

#include "troupe/actors/node.hpp"
#include "troupe/actors/remote/transport.hpp"
#include "troupe/membership/cluster.hpp"
#include "troupe/persistence/journal_service.hpp"
#include "troupe/persistence/memory_journal.hpp"
#include "troupe/sharding/sharding.hpp"

#include <caf/all.hpp>

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <string_view>
#include <thread>

namespace troupe::bench::sharded {

using namespace std::chrono_literals;

struct counters {
  std::atomic<std::uint64_t> done{0};
  std::atomic<std::uint64_t> failed{0};
  std::atomic<bool> stop{false};
};

class ask_loop;

/// Completes one ask: counts it and starts the next. A raw pointer to the asker's
/// loop (alive while the asker runs, and only the asker calls it), so wrapping it
/// in a std::function allocates nothing: the harness adds no allocation of its own
/// to each ask it measures.
struct ask_done {
  ask_loop* loop;
  void operator()(bool ok) const;
};

/// Starts one ask of the entity `k` and calls `done(ok)` on its answer.
using ask_fn = std::function<void(caf::event_based_actor*, int k, ask_done done)>;

/// Which entity an asker asks next.
enum class order {
  random,    ///< a random one of 0..n-1
  each_once, ///< 0, 1, ..., n-1, then the asker stops
  cycling,   ///< 0, 1, ..., n-1, 0, 1, ... (compare.py's Erlang peer asks this way)
};

/// An asker's state: which entity comes next, and its counters.
class ask_loop {
public:
  ask_loop(caf::event_based_actor* self, std::shared_ptr<counters> c, ask_fn ask_one, int n,
           order pick)
      : self_(self), c_(std::move(c)), ask_one_(std::move(ask_one)), n_(n), pick_(pick) {}

  /// Starts the next ask (none once stopped, or after n in each_once order).
  void next() {
    if (c_->stop.load(std::memory_order_relaxed) || (pick_ == order::each_once && issued_ >= n_))
      return;
    int k = 0;
    if (pick_ == order::random) {
      k = static_cast<int>(rng_() % static_cast<unsigned>(n_));
    } else {
      k = issued_ % n_;
      // each_once stops at n; cycling wraps, so no count overflows in a long run.
      issued_ = pick_ == order::cycling ? (issued_ + 1) % n_ : issued_ + 1;
    }
    ask_one_(self_, k, ask_done{this});
  }

  void done(bool ok) {
    (ok ? c_->done : c_->failed).fetch_add(1, std::memory_order_relaxed);
    next();
  }

private:
  caf::event_based_actor* self_;
  std::shared_ptr<counters> c_;
  ask_fn ask_one_;
  int n_;
  order pick_;
  int issued_ = 0;
  std::mt19937 rng_{42};
};

inline void ask_done::operator()(bool ok) const {
  loop->done(ok);
}

/// Keeps `window` asks in flight over entities 0..n-1, picked in `pick` order.
inline caf::behavior asker(caf::event_based_actor* self, std::shared_ptr<counters> c, ask_fn ask_one,
                           int n, int window, order pick) {
  auto loop = std::make_shared<ask_loop>(self, std::move(c), std::move(ask_one), n, pick);
  for (int i = 0; i < window; ++i)
    loop->next();
  // The behavior keeps the loop alive as long as the actor runs.
  return {[loop](caf::unit_t) {}};
}

/// Asks answered per second over `seconds`; then tells the asker to stop.
inline double measure(counters& c, double seconds) {
  auto start = now_seconds();
  auto base = c.done.load();
  while (now_seconds() - start < seconds)
    std::this_thread::sleep_for(10ms);
  auto n = c.done.load() - base;
  auto took = now_seconds() - start;
  c.stop = true;
  return static_cast<double>(n) / took;
}

/// What askers measured: asks answered per second, and the asks that failed.
struct ask_figures {
  double rate = 0;
  std::uint64_t failed = 0;
};

/// `askers` actors on `sys`, each keeping `window` asks in flight over entities
/// 0..entities-1 picked in `pick` order, for `seconds`; then they stop.
inline ask_figures asker_rate(caf::actor_system& sys, const ask_fn& ask, int entities,
                              int askers, int window, order pick, double seconds) {
  auto c = std::make_shared<counters>();
  std::vector<caf::actor> actors;
  for (int i = 0; i < askers; ++i)
    actors.push_back(sys.spawn(asker, c, ask, entities, window, pick));
  auto rate = measure(*c, seconds);
  for (auto& a : actors)
    caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
  return {rate, c->failed.load()};
}

/// Asks/s of `askers` actors, each keeping `window` asks in flight over random
/// entities 0..entities-1, for `seconds`; fails the benchmark `name` on a failed ask.
inline double ask_rate(node& n, const ask_fn& ask, int entities, int askers, int window,
                       double seconds, std::string_view name) {
  auto f = asker_rate(n.system(), ask, entities, askers, window, order::random, seconds);
  if (f.failed > 0)
    die(fmt::format("{}: {} asks failed", name, f.failed));
  return f.rate;
}

/// Asks `open` of entities 0..entities-1, each once, 500 at a time, until every
/// one is answered; fails the benchmark `name` on a failed ask.
inline void open_all(node& n, const ask_fn& open, int entities, std::string_view name) {
  auto c = std::make_shared<counters>();
  auto a = n.system().spawn(asker, c, open, entities, 500, order::each_once);
  while (c->done.load() + c->failed.load() < static_cast<std::uint64_t>(entities))
    std::this_thread::sleep_for(20ms);
  caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
  if (c->failed.load() > 0)
    die(fmt::format("{}: opening the entities failed", name));
}

/// Where a benchmark node joins and what it hosts.
struct cluster_role {
  /// The seed to join; none: the node is its own seed (a one-node cluster).
  std::optional<remote::node_address> seed;
  std::vector<std::string> roles;
};

/// A node in a one-node cluster (or joining `where.seed`), the account type
/// sharded over an in-memory journal, or over the SQLite journal at `sqlite_path`
/// (WAL + synchronous=FULL).
inline std::unique_ptr<node> start_node(sharding::sharding_settings s = {},
                                        const std::string& sqlite_path = {},
                                        const cluster_role& where = {}) {
  auto schema = node_config_keys();
  persistence::add_config_keys(schema);
  config cfg{std::move(schema)};
  (void) cfg.set_text("log.level", "warn");
  if (!sqlite_path.empty()) {
    (void) cfg.set_text("persistence.journal.synchronous", "full");
    (void) cfg.set_text("persistence.journal.create-if-missing", "true");
    (void) cfg.set("persistence.journal.path", sqlite_path);
  }
  auto n = node::start(std::move(cfg));
  if (!n)
    die(n.error().to_string());
  auto& nd = **n;
  auto t = remote::transport::start(nd);
  if (!t)
    die(t.error().to_string());
  auto journal = std::make_shared<persistence::memory_journal>();
  auto installed = sqlite_path.empty() ? persistence::install_journal(nd, journal, journal)
                                       : persistence::install_journal(nd);
  if (!installed)
    die(installed.error().to_string());
  membership::membership_settings ms;
  ms.seed_nodes = {where.seed ? *where.seed : (*t)->address()};
  ms.roles = where.roles;
  auto c = membership::cluster::start(nd, ms);
  if (!c || !(*c)->wait_until_up(30s))
    die("the benchmark's cluster did not come up");
  bank::register_types(nd.codec());
  s.passivate_idle_after = 0s;
  if (auto r = sharding::start<bank::account>(nd, s); !r)
    die(r.error().to_string());
  return std::move(*n);
}

/// get_balance asks through sharding's entity_ref.
inline ask_fn balance_asks(node& n, int count) {
  auto refs = std::make_shared<std::vector<sharding::entity_ref<bank::account>>>();
  for (int k = 0; k < count; ++k)
    refs->push_back(sharding::entity_for<bank::account>(n, fmt::format("acct-{}", k)));
  return [refs](caf::event_based_actor* self, int k, ask_done done) {
    (*refs)[static_cast<std::size_t>(k)].ask(
      self, bank::get_balance{}, 30s,
      [done](expected<std::int64_t> b) { done(static_cast<bool>(b)); });
  };
}

} // namespace troupe::bench::sharded
