#include "troupe/node_main.hpp"

#include "troupe/actors/config.hpp"
#include "troupe/actors/node.hpp"
#include "troupe/actors/remote/transport.hpp"
#include "troupe/membership/cluster.hpp"
#include "troupe/membership/management_endpoint.hpp"
#include "troupe/membership/settings.hpp"
#include "troupe/persistence/journal_service.hpp"
#include "troupe/version.hpp"

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <mutex>
#include <pthread.h>
#include <thread>

namespace troupe {

namespace {

enum exit_code { ok = 0, failure = 1, usage = 2, downed = 3 };

/// Levenshtein distance, for "did you mean".
std::size_t distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j)
    row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    auto diagonal = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      auto up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] != b[j - 1] ? 1 : 0)});
      diagonal = up;
    }
  }
  return row[b.size()];
}

std::string suggestion(std::string_view wrong, const std::vector<std::string>& known) {
  std::string best;
  auto best_distance = std::size_t{3};
  for (auto& k : known)
    if (auto d = distance(wrong, k); d < best_distance) {
      best_distance = d;
      best = k;
    }
  return best.empty() ? std::string{} : fmt::format("; did you mean '{}'?", best);
}

int usage_error(const std::string& program, const std::string& what) {
  std::fprintf(stderr, "%s: %s (see --help)\n", program.c_str(), what.c_str());
  return usage;
}

void print_config_keys(const config_schema& schema) {
  config defaults{schema};
  for (auto* k : schema.keys())
    std::printf("--%s  (%s, default %s)\n    %s\n", k->name.c_str(),
                std::string{to_string(k->type)}.c_str(), defaults.dump().empty() ? "" : "",
                k->help.c_str());
}

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
  int port = -1;
  std::string seeds;
  std::string roles;
  std::string journal;
  std::string http_host;
  int http_port = -1;
  std::string config_file;
  bool help_config = false;
};

/// Turns the program flags and the remaining `--key[=| ]value` arguments into the
/// flags config::load reads.
expected<std::vector<std::string>> config_flags(const program_flags& f,
                                                const std::vector<std::string>& extras,
                                                const config_schema& schema) {
  std::vector<std::string> out;
  auto set = [&](std::string_view key, const std::string& value) {
    out.push_back(fmt::format("--{}={}", key, value));
  };
  if (!f.host.empty())
    set("node.host", f.host);
  if (f.port >= 0)
    set("node.port", std::to_string(f.port));
  if (!f.seeds.empty())
    set("cluster.seed-nodes", f.seeds);
  if (!f.roles.empty())
    set("cluster.roles", f.roles);
  if (!f.journal.empty())
    set("persistence.journal.path", f.journal);
  if (!f.http_host.empty())
    set("management.http.host", f.http_host);
  if (f.http_port >= 0)
    set("management.http.port", std::to_string(f.http_port));
  if (!f.config_file.empty())
    out.push_back("--config=" + f.config_file);
  std::vector<std::string> known;
  for (auto* k : schema.keys())
    known.push_back(k->name);
  for (std::size_t i = 0; i < extras.size(); ++i) {
    auto& a = extras[i];
    if (a.rfind("--", 0) != 0)
      return error{errc::invalid_argument, fmt::format("unexpected argument '{}'", a)};
    auto eq = a.find('=');
    auto key = a.substr(2, eq == std::string::npos ? std::string::npos : eq - 2);
    if (!schema.find(key))
      return error{errc::invalid_argument,
                   fmt::format("unknown option '--{}'{}", key, suggestion(key, known))};
    if (eq != std::string::npos) {
      out.push_back(a);
    } else if (i + 1 < extras.size()) {
      set(key, extras[++i]);
    } else {
      return error{errc::invalid_argument, fmt::format("option '--{}' needs a value", key)};
    }
  }
  return out;
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
  program_flags f;
  app.set_version_flag("--version", std::string{TROUPE_VERSION});
  app.add_option("--host", f.host, "Interface the transport listens on (node.host)");
  app.add_option("--port", f.port, "Transport port; 0 picks one (node.port)")
    ->check(CLI::Range(0, 65535));
  app.add_option("--seeds", f.seeds, "Seed nodes host:port,host:port (cluster.seed-nodes)");
  app.add_option("--roles", f.roles, "Roles of this node, comma-separated (cluster.roles)");
  app.add_option("--journal", f.journal, "SQLite journal file (persistence.journal.path)");
  app.add_option("--http-host", f.http_host, "Interface of the management endpoint");
  app.add_option("--http-port", f.http_port, "Management endpoint port; 0 picks one")
    ->check(CLI::Range(0, 65535));
  app.add_option("--config", f.config_file, "JSON configuration file");
  app.add_flag("--help-config", f.help_config, "List every configuration key and exit");
  app.allow_extras();
  app.footer("Any configuration key is a flag too: --key=value or --key value "
             "(--help-config lists them). Exit codes: 0 stopped, 1 failure, 2 usage, "
             "3 downed or refused by the cluster.");
  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {
    return app.exit(e);  // --help, --version: stdout, 0
  } catch (const CLI::ParseError& e) {
    return usage_error(program.name, e.what());
  }
  if (f.help_config) {
    print_config_keys(schema);
    return ok;
  }
  auto flags = config_flags(f, app.remaining(), schema);
  if (!flags)
    return usage_error(program.name, flags.error().message());
  std::vector<const char*> args{argv[0]};
  for (auto& x : *flags)
    args.push_back(x.c_str());
  auto cfg = config::load(std::move(schema), static_cast<int>(args.size()), args.data());
  if (!cfg)
    return usage_error(program.name, cfg.error().to_string());
  auto settings = membership::settings_from(*cfg);
  if (!settings)
    return usage_error(program.name, settings.error().to_string());
  if (program.configure_cluster)
    if (auto r = program.configure_cluster(*cfg, *settings); !r)
      return usage_error(program.name, r.error().to_string());

  signal_waiter signals;  // before any thread starts: they inherit the mask
  auto n = node::start(std::move(*cfg));
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
