// Sharding across real processes: three troupe-bank-node processes on one SQLite
// journal and a client member in this process. A paused (SIGSTOP) owner that
// wakes after its shard moved is fenced by the journal (nothing it writes lands,
// its entity stops); the coordinator's node killed with SIGKILL, the next
// coordinator recovers every allocation from the journal. Waits are on what the
// nodes and the journal report, never on sleeps.
#include "../../samples/bank/sharded_bank.hpp"
#include "support/child_process.hpp"
#include "support/free_ports.hpp"
#include "support/temp_dir.hpp"
#include "support/wait.hpp"

#include "troupe/membership/management_client.hpp"
#include "troupe/persistence/sqlite_journal.hpp"
#include "troupe/sharding/snapshot.hpp"

#include <doctest/doctest.h>
#include <sqlite3.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <csignal>
#include <deque>
#include <filesystem>
#include <future>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

using namespace std::chrono_literals;
using troupe::test::child_process;
using troupe::test::wait_until;

namespace {

/// The node program is built into build/samples/bank, the tests into build/tests/bin.
std::string bank_node_path() {
  auto bin = std::filesystem::path{troupe::test::program_path("x")}.parent_path();
  return (bin.parent_path().parent_path() / "samples/bank/troupe-bank-node").string();
}

/// Short failure detection for tests (docs/membership.md, "Tuning").
std::vector<std::string> fast_flags(const std::string& seeds) {
  return {"--cluster.seed-nodes=" + seeds,
          "--log.level=warn",
          "--cluster.gossip-interval=200ms",
          "--cluster.leader-actions-interval=100ms",
          "--cluster.join-retry-interval=200ms",
          "--cluster.failure-detector.heartbeat-interval=200ms",
          "--cluster.failure-detector.acceptable-heartbeat-pause=800ms",
          "--cluster.split-brain.stable-after=1500ms",
          "--cluster.allow-weakly-up-members=0",
          "--transport.heartbeat-interval=200ms",
          "--transport.failure-timeout=1s"};
}

class bank_cluster {
public:
  /// `node_flags` go to every node besides the fast failure detection.
  explicit bank_cluster(std::size_t n, std::vector<std::string> node_flags = {})
      : ports_(troupe::test::free_ports(2 * n)), nodes_(n), node_flags_(std::move(node_flags)) {
    for (std::size_t i = 0; i < n; ++i)
      seeds_ += fmt::format("{}127.0.0.1:{}", i == 0 ? "" : ",", ports_[i]);
    troupe::persistence::sqlite_options so;
    so.path = journal_path();
    so.create_if_missing = true;
    REQUIRE(troupe::persistence::sqlite_journal::open(so));
  }

  std::string journal_path() const { return dir_.file("bank.db"); }
  std::uint16_t port(std::size_t i) const { return ports_[i]; }

  /// Starts node i; its log (stderr) comes through its stdout pipe.
  void start(std::size_t i) {
    std::vector<std::string> args{"-c", "exec \"$0\" \"$@\" 2>&1", bank_node_path(),
                                  "--port", std::to_string(ports_[i]), "--roles",
                                  std::string{bank::host_role}, "--journal", journal_path(),
                                  "--http-port", std::to_string(ports_[nodes_.size() + i]),
                                  fmt::format("--node.name=bank{}", i)};
    for (auto& f : fast_flags(seeds_))
      args.push_back(f);
    for (auto& f : node_flags_)
      args.push_back(f);
    nodes_[i] = std::make_unique<child_process>("/bin/sh", args);
    REQUIRE(nodes_[i]->started());
    // Its ports are bound before anything else starts: the free ports were only
    // free when picked, and a later ephemeral port (the client's, a connection's)
    // could take one first ("Address already in use").
    std::string seen;
    auto up = nodes_[i]->wait_for_line(fmt::format("troupe-bank-node bank{} listening", i), 30s,
                                       &seen);
    REQUIRE_MESSAGE(up.has_value(), "bank" << i << " did not start listening:\n" << seen);
  }

  child_process& node(std::size_t i) { return *nodes_[i]; }

  /// What the nodes logged and nobody read yet: shown when a wait fails, so a
  /// failure in CI says what the nodes saw.
  /// (At most a few seconds per node: a node that keeps logging ends the read.)
  std::string unread_logs() {
    std::string out;
    for (std::size_t i = 0; i < nodes_.size(); ++i) {
      if (!nodes_[i])
        continue;
      auto until = std::chrono::steady_clock::now() + 3s;
      while (std::chrono::steady_clock::now() < until)
        if (auto line = nodes_[i]->read_line(200ms))
          out += fmt::format("bank{}: {}\n", i, *line);
        else
          break;
    }
    return out;
  }

  /// Node i's metric lines that start with `prefix` (none when it does not answer).
  std::vector<std::string> metrics(std::size_t i, const std::string& prefix) {
    std::vector<std::string> found;
    auto r = troupe::membership::management_call({"127.0.0.1", ports_[nodes_.size() + i]}, "GET",
                                                 "/metrics", {}, 2s);
    if (!r)
      return found;
    std::istringstream lines{r->body};
    for (std::string line; std::getline(lines, line);)
      if (line.rfind(prefix, 0) == 0)
        found.push_back(line);
    return found;
  }

  /// The hosting regions the coordinator knows, from whichever node runs it
  /// (troupe_sharding_coordinator_regions; 0 when no node answers).
  std::size_t coordinator_regions() {
    std::size_t most = 0;
    const std::string prefix = "troupe_sharding_coordinator_regions{type=\"account\"} ";
    for (std::size_t i = 0; i < nodes_.size(); ++i)
      for (auto& line : metrics(i, prefix))
        most = std::max(most, static_cast<std::size_t>(std::stod(line.substr(prefix.size()))));
    return most;
  }

  /// What a failed wait shows: the client's view of the cluster, where the
  /// coordinator runs, the shards per node and what the nodes logged.
  std::string explain(const bank::client& client) {
    auto v = client.cluster->view();
    std::string out = "cluster (client's view):\n";
    for (auto& m : v.state->members)
      out += fmt::format("  {} {} up#{} seen={}\n", m.node.to_string(),
                         troupe::membership::to_string(m.status), m.up_number,
                         v.state->has_seen(m.node));
    out += fmt::format("  converged={} unreachable={}\n", v.state->converged(),
                       v.state->unreachable().size());
    auto coordinator = troupe::sharding::coordinator_location(*v.state, bank::host_role);
    out += fmt::format("coordinator: {}\nshards per node:", coordinator ? coordinator->to_string()
                                                                         : std::string{"none"});
    auto homes = allocations();
    for (std::size_t i = 0; i < nodes_.size(); ++i) {
      std::size_t n = 0;
      for (auto& [s, a] : homes)
        n += a.region.address.port == ports_[i];
      out += fmt::format(" bank{}={}", i, n);
    }
    // The sharding metrics (hand-offs and their outcomes, shards, buffers) of each
    // node still answering.
    for (std::size_t i = 0; i < nodes_.size(); ++i)
      for (auto& line : metrics(i, "troupe_sharding_"))
        if (line.find("_bucket{") == std::string::npos)
          out += fmt::format("\nbank{} {}", i, line);
    return out + "\nthe nodes logged:\n" + unread_logs();
  }

  /// Starts every node and the client, and waits until all are up.
  bank::client start_all() {
    for (std::size_t i = 0; i < nodes_.size(); ++i)
      start(i);
    auto c = bank::start_client(fast_flags(seeds_), journal_path(), 60s);
    REQUIRE_MESSAGE(c, (c ? "" : c.error().to_string()));
    auto members = nodes_.size() + 1;
    REQUIRE_MESSAGE(
      wait_until(
        [&] { return c->cluster->view().count(troupe::membership::member_status::up) == members; },
        60s),
      "not every member is up\n" << explain(*c));
    // Every node's region registered with the coordinator, so the first commands
    // spread the shards over all of them (a region that registers later gets
    // shards only through rebalance rounds and the traffic after them).
    REQUIRE_MESSAGE(wait_until([&] { return coordinator_regions() == nodes_.size(); }, 60s),
                    "the coordinator does not know every region\n" << explain(*c));
    return std::move(*c);
  }

  /// The shared journal file, opened read-only beside the nodes (tried again until
  /// it opens: the nodes may not have created it yet).
  std::shared_ptr<troupe::persistence::sqlite_journal> open_journal() const {
    std::shared_ptr<troupe::persistence::sqlite_journal> j;
    std::string last_error;
    auto opened = wait_until([&] {
      troupe::persistence::sqlite_options so;
      so.path = journal_path();
      // Read-only, as a tool reads it: a writable open takes the write lock to
      // check the schema, and three busy writers can starve it (it timed out with
      // "database is locked" on a loaded machine).
      so.read_only = true;
      auto r = troupe::persistence::sqlite_journal::open(so);
      if (r)
        j = *r;
      else
        last_error = r.error().to_string();
      return static_cast<bool>(r);
    }, 30s);
    REQUIRE_MESSAGE(opened, last_error);
    return j;
  }

  /// The shared journal's write lock, held by a connection of the test's own
  /// (BEGIN IMMEDIATE) until release(): every writer waits for it meanwhile.
  class write_lock {
  public:
    explicit write_lock(const std::string& path) {
      auto opened = sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READWRITE, nullptr);
      if (opened == SQLITE_OK) {
        sqlite3_busy_timeout(db_, 30'000);
        if (sqlite3_exec(db_, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr) == SQLITE_OK)
          return;
      }
      std::string why = sqlite3_errmsg(db_);
      sqlite3_close(db_);
      db_ = nullptr;
      FAIL("cannot take the journal's write lock: " << why);
    }
    write_lock(const write_lock&) = delete;
    write_lock& operator=(const write_lock&) = delete;
    ~write_lock() { release(); }
    void release() {
      if (db_ == nullptr)
        return;
      sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
      sqlite3_close(db_);
      db_ = nullptr;
    }

  private:
    sqlite3* db_ = nullptr;
  };

  std::unique_ptr<write_lock> hold_write_lock() const {
    return std::make_unique<write_lock>(journal_path());
  }

  /// The sum of node i's samples of the metric `name` (0 when it does not answer).
  double metric_sum(std::size_t i, const std::string& name) {
    double sum = 0;
    for (auto& line : metrics(i, name)) {
      auto after = line[name.size()];  // a longer name shares the prefix
      if (after == '{' || after == ' ')
        sum += std::stod(line.substr(line.rfind(' ') + 1));
    }
    return sum;
  }

  /// Stops node i with SIGSTOP and waits until every thread of it is stopped.
  void pause(std::size_t i) {
    node(i).signal(SIGSTOP);
    // The stop reaches each thread on its own, after kill() returned.
    REQUIRE(wait_until([&] { return node(i).stopped(); }, 10s));
  }

  /// The allocations the coordinator stored, by shard (read from the journal file).
  std::map<troupe::sharding::shard_id, troupe::sharding::shard_allocation> allocations() const {
    auto j = open_journal();
    auto a = troupe::sharding::current_allocations(*j, bank::account::entity_type);
    REQUIRE(a);
    std::map<troupe::sharding::shard_id, troupe::sharding::shard_allocation> by_shard;
    for (auto& x : *a)
      by_shard[x.shard] = x;
    return by_shard;
  }

  /// The events stored for an account.
  std::vector<troupe::persistence::event_record> events(const std::string& id) const {
    auto j = open_journal();
    auto e = j->read_events(fmt::format("account|{}", id), 1, UINT64_MAX, 100000);
    REQUIRE(e);
    return *e;
  }

private:
  troupe::test::temp_dir dir_;
  std::vector<std::uint16_t> ports_;
  std::string seeds_;
  std::vector<std::unique_ptr<child_process>> nodes_;
  std::vector<std::string> node_flags_;
};

troupe::sharding::shard_id shard_of_account(const std::string& id) {
  return troupe::sharding::shard_of(id, bank::number_of_shards);
}

/// Opens accounts acct-0 .. acct-(n-1), each until acknowledged.
std::vector<std::string> open_accounts(troupe::node& client, int n) {
  std::vector<std::string> ids;
  for (int k = 0; k < n; ++k) {
    auto id = fmt::format("acct-{}", k);
    auto acct = troupe::sharding::entity_for<bank::account>(client, id);
    REQUIRE(wait_until([&] { return acct.ask(bank::open_account{"owner"}, 3s).has_value(); }, 60s));
    REQUIRE(wait_until(
      [&] { return acct.ask(bank::deposit{100, fmt::format("open-{}", k)}, 3s).has_value(); },
      60s));
    ids.push_back(id);
  }
  return ids;
}

/// Whether the least-shard strategy has nothing left to rebalance among the
/// first `nodes` nodes (so allocations stay put unless a node fails).
bool balanced(const bank_cluster& c, std::size_t nodes) {
  std::vector<std::size_t> count(nodes, 0);
  std::size_t total = 0;
  for (auto& [s, a] : c.allocations())
    for (std::size_t i = 0; i < nodes; ++i)
      if (a.region.address.port == c.port(i)) {
        ++count[i];
        ++total;
      }
  auto optimum = (total + nodes - 1) / nodes;
  return *std::min_element(count.begin(), count.end()) + 1 >= optimum;
}

/// The node index whose port hosts `shard`, if any.
std::optional<std::size_t> home_of(const bank_cluster& c, std::size_t nodes,
                                   troupe::sharding::shard_id shard) {
  auto a = c.allocations();
  auto it = a.find(shard);
  if (it == a.end())
    return std::nullopt;
  for (std::size_t i = 0; i < nodes; ++i)
    if (it->second.region.address.port == c.port(i))
      return i;
  return std::nullopt;
}

} // namespace

TEST_CASE("sharding processes: a SIGSTOP-paused owner that wakes after its shard moved is fenced "
          "and nothing it writes lands") {
  // The paused owner's journal writer waits for the write lock through the whole
  // pause (the busy timeout counts the paused time too).
  bank_cluster c{3, {"--persistence.journal.busy-timeout=300s"}};
  auto client = c.start_all();
  auto& n = *client.node;
  auto ids = open_accounts(n, 30);
  REQUIRE_MESSAGE(wait_until([&] { return balanced(c, 3); }, 60s),
                  "the shards did not balance\n" << c.explain(client));
  // An account whose shard the third node hosts (not the coordinator's node, the oldest).
  std::string victim;
  for (auto& id : ids)
    if (home_of(c, 3, shard_of_account(id)) == std::size_t{2}) {
      victim = id;
      break;
    }
  REQUIRE_MESSAGE(!victim.empty(), "no account has its shard on the third node");
  auto shard = shard_of_account(victim);
  auto old_epoch = c.allocations().at(shard).epoch;
  auto acct = troupe::sharding::entity_for<bank::account>(n, victim);

  // Three deposits reach the owner's entity while the test holds the journal's
  // write lock: the first one's write waits for the lock inside the owner's
  // journal writer (which holds no lock itself), the others in the entity's
  // stash. The owner is paused there, long enough for its shard to move; when it
  // wakes, that write goes on under the old epoch and the journal refuses it,
  // before the woken node can learn that the others downed it. None may be stored.
  // The entity runs and its shard has raised its fence: nothing on the owner's
  // way to the first persist writes to the journal (a read-only ask).
  REQUIRE(wait_until([&] { return acct.ask(bank::get_balance{}, 3s).has_value(); }, 60s));
  // Declared before the lock: on a failure the lock goes first, then these wait
  // for their asks to end.
  std::vector<std::future<troupe::expected<troupe::persistence::done>>> stale;
  auto lock = c.hold_write_lock();
  for (int i = 0; i < 3; ++i)
    stale.push_back(std::async(std::launch::async, [&acct, i] {
      return acct.ask(bank::deposit{1, fmt::format("stale-{}", i)}, 60s);
    }));
  REQUIRE_MESSAGE(
    wait_until(
      [&] { return c.metric_sum(2, "troupe_persistence_entity_stashed_commands") >= 2; }, 30s),
    "the stale deposits did not reach the owner's entity\n" << c.explain(client));
  c.pause(2);
  lock->release();

  // The survivors down the paused node and the shard moves, under a newer epoch.
  auto moved = wait_until(
    [&] {
      auto h = home_of(c, 3, shard);
      return h && *h != 2;
    },
    60s);
  REQUIRE_MESSAGE(moved, "the paused owner's shard did not move\n" << c.explain(client));
  CHECK(c.allocations().at(shard).epoch > old_epoch);
  REQUIRE(wait_until([&] { return acct.ask(bank::deposit{10, "after-move"}, 3s).has_value(); },
                     60s));

  c.node(2).signal(SIGCONT);
  // The woken node's write of the first stale deposit is refused (its journal
  // service and its entity both log it); the entity stops, fenced.
  bool fenced = false;
  std::deque<std::string> seen;  // the woken node's last lines, for a failure
  auto reading_until = std::chrono::steady_clock::now() + 60s;
  while (std::chrono::steady_clock::now() < reading_until) {
    auto line = c.node(2).read_line(5s);
    if (!line) {
      if (!c.node(2).output_open())
        break;  // it exited
      continue;
    }
    // The region's line or the journal service's, naming the victim.
    if (line->find("was fenced") != std::string::npos
        && line->find(victim + "'") != std::string::npos) {
      fenced = true;
      break;
    }
    seen.push_back(*line);
    if (seen.size() > 40)
      seen.pop_front();
  }
  // Lazily evaluated (doctest): the wait runs only on a failure.
  auto how_it_ended = [&] {
    if (c.node(2).output_open())
      return std::string{"its output is still open"};
    auto status = c.node(2).wait(5s);
    return status ? fmt::format("it exited with status {}", *status)
                  : std::string{"its output closed but it had not exited 5 s later"};
  };
  CHECK_MESSAGE(fenced, "the woken owner's entity was not fenced; " << how_it_ended()
                                                                   << "; its last lines:\n"
                          << fmt::format("{}", fmt::join(seen, "\n")));
  for (auto& f : stale) {
    auto r = f.get();
    CHECK_FALSE(r.has_value());
  }
  // The journal holds the opening, the first deposit and the deposit after the
  // move, in contiguous sequence numbers, and nothing of the stale owner.
  auto events = c.events(victim);
  std::string stored;
  for (auto& e : events)
    stored += fmt::format("\n  seq {} writer {}: {} {}", e.seq, e.writer, e.manifest,
                          nlohmann::json::from_cbor(e.payload, true, false).dump());
  REQUIRE_MESSAGE(events.size() == 3, "the journal holds:" << stored << "\nthe woken node logged:\n"
                                                          << fmt::format("{}", fmt::join(seen, "\n")));
  for (std::size_t i = 0; i < events.size(); ++i)
    CHECK(events[i].seq == i + 1);
  auto balance = acct.ask(bank::get_balance{}, 5s);
  REQUIRE(balance);
  CHECK(*balance == 110);
  n.shutdown();
}

TEST_CASE("sharding processes: the coordinator's node killed with SIGKILL, the next coordinator "
          "recovers every allocation and moves only the dead node's shards") {
  bank_cluster c{3};
  auto client = c.start_all();
  auto& n = *client.node;
  auto ids = open_accounts(n, 30);
  REQUIRE_MESSAGE(wait_until([&] { return balanced(c, 3); }, 60s),
                  "the shards did not balance\n" << c.explain(client));
  auto coordinator = troupe::sharding::coordinator_location(*client.cluster->view().state,
                                                            bank::host_role);
  REQUIRE(coordinator);
  std::size_t dead = 3;
  for (std::size_t i = 0; i < 3; ++i)
    if (coordinator->address.port == c.port(i))
      dead = i;
  REQUIRE(dead < 3);
  auto before = c.allocations();

  c.node(dead).kill();
  REQUIRE(c.node(dead).wait(10s));
  // Every shard the dead node hosted gets a new home, stored by the next
  // coordinator (which could not append without recovering the earlier state).
  REQUIRE(wait_until(
    [&] {
      auto now = c.allocations();
      for (auto& [s, a] : before) {
        auto it = now.find(s);
        if (it == now.end() || it->second.region.address.port == c.port(dead))
          return false;
      }
      return true;
    },
    60s));
  // The next coordinator counts the two surviving regions (troupe_sharding_coordinator_regions).
  CHECK(wait_until([&] { return c.coordinator_regions() == 2; }, 30s));
  auto after = c.allocations();
  for (auto& [s, a] : before) {
    INFO("shard " << s);
    REQUIRE(after.count(s) == 1);
    if (a.region.address.port == c.port(dead)) {
      CHECK(after.at(s).epoch > a.epoch);
    } else {
      // A shard on a survivor stays where it was, under the same epoch.
      CHECK(after.at(s).region == a.region);
      CHECK(after.at(s).epoch == a.epoch);
    }
  }
  // Every account answers, with its balance recovered from the journal.
  for (auto& id : ids) {
    auto acct = troupe::sharding::entity_for<bank::account>(n, id);
    std::int64_t balance = -1;
    REQUIRE(wait_until(
      [&] {
        auto r = acct.ask(bank::get_balance{}, 3s);
        if (r)
          balance = *r;
        return r.has_value();
      },
      60s));
    CHECK(balance == 100);
  }
  n.shutdown();
}
