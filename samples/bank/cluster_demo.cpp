// troupe-bank-demo: the sharded bank on a 3-node cluster (`./run demo`).
//
// Starts three troupe-bank-node processes on 127.0.0.1 sharing one journal (a SQLite
// file, or with `--journal postgres --postgres-uri URI` a fresh schema on that
// PostgreSQL server; `./run demo --journal postgres` starts a throwaway server),
// joins them as a client (a member without the "bank" role: it routes, it hosts
// nothing), opens accounts and drives transfers between them from several
// threads, kills one node with SIGKILL part-way, and keeps going while its shards
// move to the survivors and their accounts recover from the journal. It ends with
// the members, the shard distribution and an audit computed from the journal: the
// total balance is unchanged, and every acknowledged transfer is stored exactly
// once. Exit code 0 when the audit holds, 1 when it does not, 2 on usage errors.
//
// Transfers (docs/sharding.md, "The bank demo"): a transfer is a withdrawal from
// one account and a deposit to another, both carrying the transfer's id. The
// client sends each leg until it is acknowledged (a lost reply, a node that died,
// a shard on the move: send it again); an account applies each leg at most once,
// so a leg sent twice moves money once. A transfer whose withdrawal is refused
// (insufficient balance) moves nothing. Money is "in flight" only between the two
// legs of a transfer the client is still driving; the client finishes every
// transfer it started, so at the end the total is exactly what was deposited.
#include "audit.hpp"
#include "sharded_bank.hpp"

#include "troupe/actors/remote/transport.hpp"
#include "troupe/membership/cluster.hpp"
#include "troupe/membership/settings.hpp"
#include "troupe/persistence/journal_service.hpp"
#include "troupe/persistence/postgres_journal.hpp"
#include "troupe/persistence/sqlite_journal.hpp"

#include <libpq-fe.h>

#include "troupe/cli/command_line.hpp"
#include <fmt/format.h>

#include <arpa/inet.h>
#include <csignal>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <random>
#include <thread>

using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

struct options {
  std::int64_t accounts = 100;
  std::int64_t transfers = 3000;
  std::int64_t workers = 8;
  bool kill = true;
  std::string dir;
  std::string journal = "sqlite";
  std::string postgres_uri;
};

constexpr std::int64_t opening_balance = 1000;

/// A free TCP port on 127.0.0.1 (bound and released; the node binds it next).
std::uint16_t free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

/// Failure detection tuned for a demo on one machine: a dead node is downed in
/// about 4 s instead of the production default's 8.
std::vector<std::string> cluster_flags(const std::string& seeds) {
  return {"--cluster.seed-nodes=" + seeds,
          "--cluster.gossip-interval=200ms",
          "--cluster.failure-detector.heartbeat-interval=300ms",
          "--cluster.failure-detector.acceptable-heartbeat-pause=1s",
          "--cluster.split-brain.stable-after=2s",
          "--cluster.allow-weakly-up-members=0",
          "--log.level=warn"};
}

struct child {
  pid_t pid = -1;
  std::uint16_t port = 0;
  bool alive = false;
};

child start_node(const fs::path& program, const fs::path& dir, int index, std::uint16_t port,
                 const std::string& seeds, const std::string& journal) {
  std::vector<std::string> args{program.string(), "--port", std::to_string(port), "--roles",
                                std::string{bank::host_role}, "--journal", journal,
                                "--http-port", "0"};
  for (auto& f : cluster_flags(seeds))
    args.push_back(f);
  std::vector<char*> argv;
  for (auto& a : args)
    argv.push_back(a.data());
  argv.push_back(nullptr);
  auto log = (dir / fmt::format("node-{}.log", index)).string();
  child c;
  c.port = port;
  c.pid = ::fork();
  if (c.pid == 0) {
    // The node dies with the demo, however the demo ends.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
      ::dup2(fd, 1);
      ::dup2(fd, 2);
    }
    ::execv(program.c_str(), argv.data());
    ::_exit(127);
  }
  c.alive = c.pid > 0;
  return c;
}

/// Sends a leg until it is acknowledged (true) or refused by the account (false).
template <class Ask>
bool drive_leg(Ask ask, std::atomic<std::uint64_t>& retries) {
  for (;;) {
    auto r = ask();
    if (r)
      return true;
    if (r.error().code() == troupe::errc::invalid_argument)
      return false;  // the account's own refusal (insufficient balance)
    ++retries;
    std::this_thread::sleep_for(100ms);  // the shard may be moving: try again soon
  }
}

std::string account_id(int k) {
  return fmt::format("acct-{}", k);
}

struct run_state {
  std::atomic<int> started{0};
  std::atomic<int> acknowledged{0};
  std::atomic<int> refused{0};
  std::atomic<std::uint64_t> retries{0};
  std::mutex mtx;
  std::vector<std::string> acked_ids;
};

void transfer_worker(troupe::node& client, const options& o, run_state& st, unsigned seed) {
  std::mt19937 rng{seed};
  std::uniform_int_distribution<int> pick{0, static_cast<int>(o.accounts) - 1};
  std::uniform_int_distribution<int> amount{1, 200};
  for (;;) {
    auto n = st.started++;
    if (n >= o.transfers)
      return;
    auto from = pick(rng);
    auto to = pick(rng);
    while (to == from)
      to = pick(rng);
    auto id = fmt::format("t-{}", n);
    auto a = amount(rng);
    auto src = troupe::sharding::entity_for<bank::account>(client, account_id(from));
    auto dst = troupe::sharding::entity_for<bank::account>(client, account_id(to));
    if (!drive_leg([&] { return src.ask(bank::withdraw{a, id}, 3s); }, st.retries)) {
      ++st.refused;
      continue;
    }
    drive_leg([&] { return dst.ask(bank::deposit{a, id}, 3s); }, st.retries);
    ++st.acknowledged;
    std::lock_guard<std::mutex> guard{st.mtx};
    st.acked_ids.push_back(id);
  }
}

std::size_t up_members(troupe::membership::cluster& c) {
  return c.view().count(troupe::membership::member_status::up);
}

/// How many shards each node hosts, from the coordinator's journal.
std::map<std::string, int> shard_distribution(troupe::persistence::journal_backend& j) {
  std::map<std::string, int> count;
  if (auto all = troupe::sharding::current_allocations(j, bank::account::entity_type))
    for (auto& a : *all)
      ++count[a.region.address.to_string()];
  return count;
}

/// A new, empty schema for this run on the server at `uri`; the URI that uses it.
troupe::expected<std::string> fresh_postgres_schema(const std::string& uri) {
  auto schema = fmt::format("troupe_bank_demo_{}", ::getpid());
  auto c = PQconnectdb(uri.c_str());
  std::string message;
  if (PQstatus(c) != CONNECTION_OK) {
    message = PQerrorMessage(c);
  } else {
    auto r = PQexec(c, fmt::format("DROP SCHEMA IF EXISTS {0} CASCADE; CREATE SCHEMA {0}", schema).c_str());
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
      message = PQresultErrorMessage(r);
    PQclear(r);
  }
  PQfinish(c);
  if (!message.empty())
    return troupe::error{troupe::errc::io_error,
                         fmt::format("cannot create schema {}: {}", schema, message)};
  return uri + (uri.find('?') == std::string::npos ? "?" : "&") + "options=-csearch_path%3D" + schema;
}

/// The journal every process of the demo opens: a new SQLite file in `dir`, or a
/// new schema on the PostgreSQL server.
troupe::expected<std::string> create_journal(const options& o, const fs::path& dir) {
  if (o.journal == "postgres") {
    auto uri = fresh_postgres_schema(o.postgres_uri);
    if (!uri)
      return uri;
    troupe::persistence::postgres_options po;
    po.uri = *uri;
    auto j = troupe::persistence::postgres_journal::open(po);
    if (!j)
      return std::move(j).error();
    fmt::print("troupe bank demo: 3 nodes on 127.0.0.1, one PostgreSQL journal ({}, synchronous_commit={})\n",
               (*j)->server(), (*j)->synchronous_commit());
    return uri;
  }
  auto journal_path = dir / "bank.db";
  fs::remove(journal_path);
  troupe::persistence::sqlite_options so;
  so.path = journal_path.string();
  so.create_if_missing = true;
  auto j = troupe::persistence::sqlite_journal::open(so);
  if (!j)
    return std::move(j).error();
  fmt::print("troupe bank demo: 3 nodes on 127.0.0.1, one SQLite journal ({})\n", journal_path.string());
  return journal_path.string();
}

int run(const options& o, const fs::path& self_dir) {
  fs::path dir = o.dir.empty() ? fs::temp_directory_path() / fmt::format("troupe-bank-demo-{}", ::getpid())
                               : fs::path{o.dir};
  fs::create_directories(dir);
  auto created = create_journal(o, dir);
  if (!created) {
    fmt::print(stderr, "cannot create the journal: {}\n", created.error().to_string());
    return 1;
  }
  auto journal_path = *created;
  std::vector<child> nodes;
  std::vector<std::uint16_t> ports{free_port(), free_port(), free_port()};
  std::string seeds = fmt::format("127.0.0.1:{},127.0.0.1:{},127.0.0.1:{}", ports[0], ports[1], ports[2]);
  for (int i = 0; i < 3; ++i) {
    nodes.push_back(start_node(self_dir / "troupe-bank-node", dir, i + 1, ports[i], seeds, journal_path));
    if (!nodes.back().alive) {
      fmt::print(stderr, "cannot start troupe-bank-node next to this program ({})\n", self_dir.string());
      return 1;
    }
  }
  auto stop_nodes = [&] {
    for (auto& c : nodes)
      if (c.alive) {
        ::kill(c.pid, SIGTERM);
        int status = 0;
        ::waitpid(c.pid, &status, 0);
        c.alive = false;
      }
  };

  auto fail = [&](const troupe::error& e) {
    fmt::print(stderr, "demo failed: {}\n", e.to_string());
    stop_nodes();
    return 1;
  };
  // The client: a member without the bank role (its region routes, hosts nothing).
  auto started = bank::start_client(cluster_flags(seeds), journal_path, 60s);
  if (!started)
    return fail(started.error());
  auto& n = *started->node;
  auto& cluster = started->cluster;
  auto& journal = started->journal;
  for (int waited = 0; up_members(*cluster) < 4 && waited < 600; ++waited)
    std::this_thread::sleep_for(100ms);
  fmt::print("cluster up: {} members (3 bank nodes and this client)\n", up_members(*cluster));

  run_state st;
  for (int k = 0; k < o.accounts; ++k) {
    auto acct = troupe::sharding::entity_for<bank::account>(n, account_id(k));
    drive_leg([&] { return acct.ask(bank::open_account{fmt::format("owner-{}", k)}, 3s); }, st.retries);
    drive_leg([&] { return acct.ask(bank::deposit{opening_balance, fmt::format("open-{}", k)}, 3s); },
              st.retries);
  }
  std::int64_t expected_total = opening_balance * o.accounts;
  fmt::print("opened {} accounts with {} each (total {})\n", o.accounts, opening_balance, expected_total);

  auto began = std::chrono::steady_clock::now();
  std::vector<std::thread> workers;
  for (int w = 0; w < o.workers; ++w)
    workers.emplace_back([&, w] { transfer_worker(n, o, st, 1234u + static_cast<unsigned>(w)); });
  bool killed = !o.kill;
  for (;;) {
    std::this_thread::sleep_for(1s);
    int done = st.acknowledged.load() + st.refused.load();
    fmt::print("  transfers: {:5}/{} done ({} refused for insufficient balance), {} resends, {} members up\n",
               done, o.transfers, st.refused.load(), st.retries.load(), up_members(*cluster));
    std::fflush(stdout);
    if (!killed && done >= o.transfers / 3) {
      ::kill(nodes[2].pid, SIGKILL);
      ::waitpid(nodes[2].pid, nullptr, 0);
      nodes[2].alive = false;
      killed = true;
      fmt::print("killed node 3 (pid {}) with SIGKILL: its shards move to the survivors\n", nodes[2].pid);
    }
    if (done >= o.transfers)
      break;
  }
  for (auto& w : workers)
    w.join();
  auto took = std::chrono::duration<double>(std::chrono::steady_clock::now() - began).count();
  fmt::print("{} transfers in {:.1f} s\n", o.transfers, took);

  // What the accounts say, through sharding.
  std::int64_t live_total = 0;
  for (int k = 0; k < o.accounts; ++k) {
    auto acct = troupe::sharding::entity_for<bank::account>(n, account_id(k));
    std::int64_t b = 0;
    drive_leg([&] {
      auto r = acct.ask(bank::get_balance{}, 3s);
      if (r)
        b = *r;
      return r;
    }, st.retries);
    live_total += b;
  }

  fmt::print("\nmembers:\n");
  auto view = cluster->view();  // keeps the members alive while they are printed
  for (auto& m : view.state->members)
    fmt::print("  {} {} roles={}\n", m.node.address.to_string(), to_string(m.status),
               fmt::join(m.roles, ","));
  fmt::print("shards per node (from the coordinator's journal):\n");
  for (auto& [node, count] : shard_distribution(journal->journal()))
    fmt::print("  {}: {} shards\n", node, count);

  // The audit, from the journal alone.
  std::vector<std::string> ids;
  for (int k = 0; k < o.accounts; ++k)
    ids.push_back(account_id(k));
  auto a = bank::audit(journal->journal(), n.codec(), ids);
  if (!a)
    return fail(a.error());
  std::size_t lost = 0, duplicated = 0, unfinished = 0;
  for (auto& id : st.acked_ids) {
    auto it = a->transfers.find(id);
    if (it == a->transfers.end() || it->second.withdrawn == 0 || it->second.deposited == 0)
      ++lost;
  }
  for (auto& [id, legs] : a->transfers) {
    if (legs.withdrawn > 1 || legs.deposited > 1)
      ++duplicated;
    if (id.rfind("t-", 0) == 0 && legs.withdrawn != legs.deposited)
      ++unfinished;  // (opening deposits are one leg by design)
  }
  bool conserved = a->total == expected_total && live_total == expected_total;
  fmt::print("\ntotal balance: {} in the journal, {} from the accounts, {} expected: {}\n", a->total,
             live_total, expected_total, conserved ? "conserved" : "NOT CONSERVED");
  fmt::print("{} acknowledged, {} lost, {} duplicated ({} refused, {} half-done)\n",
             st.acked_ids.size(), lost, duplicated, st.refused.load(), unfinished);
  for (auto& p : a->problems)
    fmt::print("  journal problem: {}\n", p);
  bool ok = conserved && lost == 0 && duplicated == 0 && unfinished == 0 && a->problems.empty();
  n.shutdown();
  stop_nodes();
  if (o.journal == "postgres")
    fmt::print("{} (logs in {}, journal in schema troupe_bank_demo_{})\n", ok ? "OK" : "FAILED",
               dir.string(), ::getpid());
  else
    fmt::print("{} (logs and journal in {})\n", ok ? "OK" : "FAILED", dir.string());
  return ok ? 0 : 1;
}

} // namespace

int main(int argc, char** argv) {
  options o;
  CLI::App app{"The sharded bank on a 3-node cluster: transfers, a node killed part-way, and an "
               "audit from the journal.",
               "troupe-bank-demo"};
  troupe::cli::apply_conventions(app);
  troupe::cli::add_integer(app, "--accounts", o.accounts, 2, 100000, "Accounts to open");
  troupe::cli::add_integer(app, "--transfers", o.transfers, 1, 10000000, "Transfers to make");
  troupe::cli::add_integer(app, "--workers", o.workers, 1, 256, "Client threads driving transfers");
  app.add_flag("!--no-kill", o.kill, "Do not kill a node part-way");
  app.add_option("--dir", o.dir, "Where the journal and the node logs go (default: a new temp dir)");
  app.add_option("--journal", o.journal, "The shared journal: sqlite (a file in --dir) or postgres "
                                         "(a new schema on --postgres-uri's server)")
    ->check(CLI::IsMember({"sqlite", "postgres"}));
  auto* uri = app.add_option("--postgres-uri", o.postgres_uri,
                             "The PostgreSQL server for --journal postgres (a libpq URI; "
                             "`./run demo --journal postgres` starts a throwaway one)");
  if (auto rc = troupe::cli::parse(app, argc, argv))
    return *rc;
  if (o.journal == "postgres" && uri->count() == 0) {
    fmt::print(stderr, "troupe-bank-demo: --journal postgres needs --postgres-uri URI\n");
    return 2;
  }
  ::signal(SIGPIPE, SIG_IGN);
  auto self_dir = fs::canonical("/proc/self/exe").parent_path();
  return run(o, self_dir);
}
