#include "troupe/node_main.hpp"

#include "troupe/actors/config.hpp"
#include "troupe/actors/node.hpp"
#include "troupe/actors/remote/transport.hpp"
#include "troupe/cli/command_line.hpp"
#include "troupe/membership/cluster.hpp"
#include "troupe/membership/management_endpoint.hpp"
#include "troupe/membership/settings.hpp"
#include "troupe/persistence/journal_service.hpp"
#include "troupe/persistence/postgres_journal.hpp"

#include <fmt/format.h>

#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <mutex>
#include <pthread.h>
#include <thread>

namespace troupe {

namespace {

enum exit_code { ok = 0, failure = 1, downed = 3 };  // 2, usage: cli::exit_usage

/// Blocks SIGINT and SIGTERM in this thread (and the threads it starts) and
/// reports them from a thread of its own.
class signal_waiter {
public:
  signal_waiter() {
    sigemptyset(&set_);
    sigaddset(&set_, SIGINT);
    sigaddset(&set_, SIGTERM);
    sigaddset(&set_, SIGUSR1);  // our own wake-up at the end
    pthread_sigmask(SIG_BLOCK, &set_, nullptr);
  }
  ~signal_waiter() {
    if (thread_.joinable()) {
      kill(getpid(), SIGUSR1);
      thread_.join();
    }
  }
  template <class F>
  void start(F on_signal) {
    thread_ = std::thread{[this, on_signal] {
      int sig = 0;
      sigwait(&set_, &sig);
      if (sig != SIGUSR1)
        on_signal(sig);
    }};
  }

private:
  sigset_t set_;
  std::thread thread_;
};

struct program_flags {
  std::string host;
  std::int64_t port = -1;
  std::string seeds;
  std::string roles;
  std::string journal;
  std::string http_host;
  std::int64_t http_port = -1;
};

/// The program flags are shorthands for configuration keys.
void set_keys(const program_flags& f, cli::config_options& keys) {
  auto set = [&](const char* key, const std::string& value) {
    if (!value.empty())
      keys.set(key, value);
  };
  set("node.host", f.host);
  set("node.port", f.port >= 0 ? std::to_string(f.port) : "");
  set("cluster.seed-nodes", f.seeds);
  set("cluster.roles", f.roles);
  if (persistence::is_postgres_uri(f.journal)) {
    set("persistence.journal.backend", "postgres");
    set("persistence.journal.postgres.uri", f.journal);
  } else {
    set("persistence.journal.path", f.journal);
  }
  set("management.http.host", f.http_host);
  set("management.http.port", f.http_port >= 0 ? std::to_string(f.http_port) : "");
}

} // namespace

int node_main(int argc, char** argv, node_program program) {
  auto schema = node_config_keys();
  persistence::add_config_keys(schema);
  membership::add_config_keys(schema);
  membership::add_management_config_keys(schema);
  if (program.add_config_keys)
    program.add_config_keys(schema);

  CLI::App app{program.description, program.name};
  cli::apply_conventions(app);
  program_flags f;
  app.add_option("--host", f.host, "Interface the transport listens on (node.host)");
  cli::add_integer(app, "--port", f.port, 0, 65535, "Transport port; 0 picks one (node.port)");
  app.add_option("--seeds", f.seeds, "Seed nodes host:port,host:port (cluster.seed-nodes)");
  app.add_option("--roles", f.roles, "Roles of this node, comma-separated (cluster.roles)");
  app.add_option("--journal", f.journal,
                 "SQLite journal file (persistence.journal.path), or a PostgreSQL journal's "
                 "postgresql:// URI (persistence.journal.backend=postgres and "
                 "persistence.journal.postgres.uri)");
  app.add_option("--http-host", f.http_host, "Interface of the management endpoint");
  cli::add_integer(app, "--http-port", f.http_port, 0, 65535,
                   "Management endpoint port; 0 picks one");
  cli::config_options keys{app, schema};
  app.footer("Any configuration key is a flag too: --KEY=VALUE or --KEY VALUE "
             "(--help-config lists them). Exit codes: 0 stopped, 1 failure, 2 usage or "
             "configuration error, 3 downed or refused by the cluster.");
  if (auto rc = cli::parse(app, argc, argv))
    return *rc;
  set_keys(f, keys);
  auto cfg = keys.load(schema);
  if (!cfg)
    return cli::config_error(app, cfg.error());
  auto settings = membership::settings_from(*cfg);
  if (!settings)
    return cli::config_error(app, settings.error());
  if (program.configure_cluster)
    if (auto r = program.configure_cluster(*cfg, *settings); !r)
      return cli::config_error(app, r.error());

  signal_waiter signals;  // before any thread starts: they inherit the mask
  auto n = node::start(std::move(*cfg));
  if (!n && n.error().code() == errc::invalid_config)
    return cli::config_error(app, n.error());
  if (!n) {
    std::fprintf(stderr, "%s: %s\n", program.name.c_str(), n.error().to_string().c_str());
    return failure;
  }
  auto fail = [&](const error& e) {
    std::fprintf(stderr, "%s: %s\n", program.name.c_str(), e.to_string().c_str());
    (*n)->shutdown();
    return failure;
  };
  auto t = remote::transport::start(**n);
  if (!t)
    return fail(t.error());
  if (!f.journal.empty())
    if (auto j = persistence::install_journal(**n); !j)
      return fail(j.error());
  auto seeds = settings->seed_nodes;
  settings->seed_nodes.clear();  // join only after setup
  auto c = membership::cluster::start(**n, std::move(*settings));
  if (!c)
    return fail(c.error());
  auto http = membership::management_endpoint::start(**n);
  if (!http)
    return fail(http.error());

  std::mutex mtx;
  std::condition_variable cv;
  bool stop_requested = false;
  std::optional<membership::cluster_event> ended;
  signals.start([&](int sig) {
    std::lock_guard<std::mutex> guard{mtx};
    (*n)->log().info("node", "signal {}: leaving the cluster and stopping", sig);
    stop_requested = true;
    cv.notify_all();
  });
  (*c)->on_terminated([&](const membership::cluster_event& e) {
    std::lock_guard<std::mutex> guard{mtx};
    ended = e;
    cv.notify_all();
  });
  auto http_address = fmt::format("{}:{}", (*n)->config().get_string("management.http.host"),
                                  (*http)->port());
  auto identity = (*t)->identity();
  auto announce = [&, name = (*n)->name()](std::string_view what) {
    std::printf("%s %s %s: transport=%s incarnation=%016llx http=%s\n", program.name.c_str(),
                name.c_str(), std::string{what}.c_str(), identity.address.to_string().c_str(),
                static_cast<unsigned long long>(identity.incarnation), http_address.c_str());
    std::fflush(stdout);
  };
  (*c)->subscribe([announce, self = identity](const membership::cluster_event& e) {
    if (e.what == membership::cluster_event::kind::member_up && e.subject.node == self)
      announce("up");
  });
  if (program.setup)
    if (auto r = program.setup(**n, **c); !r)
      return fail(r.error());
  announce("listening");
  if (!seeds.empty())
    (void) (*c)->join(seeds);

  {
    std::unique_lock<std::mutex> lock{mtx};
    cv.wait(lock, [&] { return stop_requested || ended.has_value(); });
  }
  auto report = (*n)->shutdown();
  if (ended) {
    std::fprintf(stderr, "%s: stopped: %s\n", program.name.c_str(),
                 membership::to_string(*ended).c_str());
    return ended->what == membership::cluster_event::kind::self_removed ? ok : downed;
  }
  return report.clean ? ok : failure;
}

} // namespace troupe
