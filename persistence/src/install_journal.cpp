// install_journal: opens the journal the node's config describes and hangs the
// journal_service on the node (extension + stop hook).
#include "troupe/persistence/journal_service.hpp"

#include "troupe/actors/node.hpp"
#include "troupe/persistence/memory_journal.hpp"
#include "troupe/persistence/postgres_journal.hpp"
#include "troupe/persistence/sqlite_journal.hpp"

#include <fmt/core.h>

namespace troupe::persistence {

namespace detail {
// journal_actor.cpp
expected<void> start_journal_actor(node& n, std::shared_ptr<journal_service> svc);
} // namespace detail

namespace {

/// The node_health component a lost journal marks unhealthy.
constexpr std::string_view health_component = "persistence.journal";

// The config checked the ranges (journal_config_keys.cpp).
journal_service::options service_options(const config& cfg) {
  journal_service::options opts;
  opts.max_batch_events =
    static_cast<std::size_t>(cfg.get_int("persistence.journal.max-batch-events"));
  opts.reader_threads = static_cast<std::size_t>(cfg.get_int("persistence.journal.reader-threads"));
  opts.max_queued_writes =
    static_cast<std::size_t>(cfg.get_int("persistence.journal.max-queued-writes"));
  return opts;
}

expected<void> check_schema(const config& cfg) {
  if (cfg.schema().find("persistence.journal.backend") == nullptr)
    return error{errc::invalid_config,
                 "install_journal: the node's config has no persistence.journal.* keys; add "
                 "them with troupe::persistence::add_config_keys(schema)"};
  return {};
}

} // namespace

namespace {

expected<std::shared_ptr<journal_service>> install_postgres_journal(node& n, const config& cfg) {
  postgres_options opts;
  opts.uri = cfg.get_string("persistence.journal.postgres.uri");
  if (opts.uri.empty())
    return error{errc::invalid_config,
                 "persistence.journal.backend is postgres but persistence.journal.postgres.uri is "
                 "empty; set it to a libpq connection URI, e.g. "
                 "postgresql://user:password@host:5432/db"};
  opts.pool_size = static_cast<std::size_t>(cfg.get_int("persistence.journal.postgres.pool-size"));
  opts.connect_timeout_s = static_cast<int>(std::chrono::ceil<std::chrono::seconds>(
    cfg.get_duration("persistence.journal.postgres.connect-timeout")).count());
  auto ms = [&](const char* key) {
    return std::chrono::ceil<std::chrono::milliseconds>(cfg.get_duration(key));
  };
  opts.lock_timeout = ms("persistence.journal.postgres.lock-timeout");
  opts.statement_timeout = ms("persistence.journal.postgres.statement-timeout");
  opts.idle_in_transaction_timeout = ms("persistence.journal.postgres.idle-in-transaction-timeout");
  auto j = postgres_journal::open(opts);
  if (!j)
    return std::move(j).error();
  // Only `off` loses acknowledged writes on a crash (remote_write, remote_apply and
  // local all flush the WAL locally before COMMIT returns); troupe's write
  // transactions turn it on for themselves (docs/persistence-storage.md).
  if ((*j)->synchronous_commit() == "off")
    n.log().warn("persistence/journal",
                 "postgres journal {}: the server's synchronous_commit is 'off'; troupe's write "
                 "transactions set it 'on' for themselves (with 'off' an acknowledged write "
                 "and its offset could be lost, and the offset reused, when the server "
                 "crashes), so it does not speed the journal up",
                 (*j)->server());
  n.log().info("persistence/journal", "postgres journal {} open (synchronous_commit={}, journal id {})",
               (*j)->server(), (*j)->synchronous_commit(), (*j)->journal_id());
  return install_journal(n, *j, *j);
}

} // namespace

expected<std::shared_ptr<journal_service>>
install_journal(node& n, std::shared_ptr<journal_backend> journal,
                std::shared_ptr<snapshot_backend> snapshots) {
  auto& cfg = n.config();
  if (auto ok = check_schema(cfg); !ok)
    return std::move(ok).error();
  if (!journal || !snapshots)
    return error{errc::invalid_argument, "install_journal: a backend is missing"};
  if (n.context().stopping())
    return error{errc::shutting_down, "install_journal: the node is stopping"};
  if (find_journal(n))
    return error{errc::invalid_argument, "install_journal: the node already has a journal"};
  auto opts = service_options(cfg);
  // A lost journal (its file deleted or replaced while open) fails every write
  // from then on; the node says so once, loudly, and reports itself unhealthy.
  journal->on_lost([ctx = &n.context()](const error& e) {
    if (ctx->health().mark_unhealthy(health_component, e.message()))
      ctx->log().error("persistence/journal", "{}", e.to_string());
  });
  auto backend = journal;
  auto svc = journal_service::start(std::move(journal), std::move(snapshots), opts, n.log(),
                                    n.metrics());
  n.context().set_extension<journal_service>(svc);
  // Runs after every actor stopped, so no entity writes into a stopped service;
  // the backend may outlive the node (a caller's shared_ptr): forget the node.
  n.add_stop_hook("persistence.journal", [svc, backend] {
    svc->stop();
    backend->on_lost({});
  });
  if (auto ok = detail::start_journal_actor(n, svc); !ok)
    return std::move(ok).error();
  return svc;
}

expected<std::shared_ptr<journal_service>> install_journal(node& n) {
  auto& cfg = n.config();
  if (auto ok = check_schema(cfg); !ok)
    return std::move(ok).error();
  auto& backend = cfg.get_string("persistence.journal.backend");
  if (backend == "memory") {
    auto j = std::make_shared<memory_journal>();
    return install_journal(n, j, j);
  }
  if (backend == "postgres")
    return install_postgres_journal(n, cfg);
  if (backend != "sqlite")
    return error{errc::invalid_config,
                 fmt::format("persistence.journal.backend must be sqlite, postgres or memory "
                             "(got '{}')",
                             backend)};
  sqlite_options opts;
  opts.path = cfg.get_string("persistence.journal.path");
  auto sync = parse_sync_mode(cfg.get_string("persistence.journal.synchronous"));
  if (!sync)
    return error{errc::invalid_config,
                 fmt::format("persistence.journal.synchronous: {}", sync.error().message())};
  opts.synchronous = *sync;
  opts.busy_timeout = cfg.get_duration("persistence.journal.busy-timeout");
  opts.create_if_missing = cfg.get_bool("persistence.journal.create-if-missing");
  opts.max_page_count = cfg.get_int("persistence.journal.max-page-count");
  auto j = sqlite_journal::open(opts);
  if (!j)
    return std::move(j).error();
  n.log().info("persistence/journal", "journal '{}' open (synchronous={}, journal id {})",
               opts.path, to_string(opts.synchronous), (*j)->journal_id());
  return install_journal(n, *j, *j);
}

std::shared_ptr<journal_service> find_journal(node& n) {
  return n.context().extension<journal_service>();
}

} // namespace troupe::persistence
