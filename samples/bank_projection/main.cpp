// troupe-bank-projection: streams the bank's events by tag into a read model, a
// SQLite table of balances in a file of its own, with exactly-once offsets.
//
//   troupe-bank                                        writes bank.db (samples/bank)
//   troupe-bank-projection                             bank.db -> bank-read-model.db
//   troupe-bank-projection --journal J --read-model R --live
//   sqlite3 bank-read-model.db 'SELECT * FROM accounts'
//
// The source is events_by_tag(journal, "account", after) (every bank event carries
// the tag account::event_tag), starting after the offset the read model committed;
// without --live it ends at the events that existed when it started, with --live it
// keeps polling for new ones until SIGINT or SIGTERM.
//
// Exactly-once: the events arrive in batches (at most --batch, or whatever came
// within 100 ms), and each batch is applied in ONE SQLite transaction in the
// read-model file that updates the accounts table AND moves the offset row
// (projection.last_offset, events_applied). Both commit or neither does: a crash
// (kill -9) at any point leaves the read model at the end of the last committed
// batch with its offset, and the next run resumes right after it. Inside the
// transaction, events at or below the stored offset are skipped, so even two runs
// at once (each transaction takes the write lock first) apply every event once.
// The journal is only read (opened read-only).
#include "../bank/account.hpp"

#include "troupe/actors/node.hpp"
#include "troupe/cli/command_line.hpp"
#include "troupe/persistence/sqlite_journal.hpp"
#include "troupe/streams/journal_source.hpp"
#include "troupe/streams/streams.hpp"

#include <fmt/core.h>
#include <sqlite3.h>

#include <csignal>
#include <limits>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

using namespace std::chrono_literals;
namespace ts = troupe::streams;
using troupe::persistence::event_record;
using troupe::persistence::offset_type;

namespace {

constexpr const char* schema_sql =
  "CREATE TABLE IF NOT EXISTS accounts("
  "  id TEXT PRIMARY KEY, owner TEXT NOT NULL DEFAULT '', status TEXT NOT NULL DEFAULT 'open',"
  "  balance INTEGER NOT NULL DEFAULT 0, events INTEGER NOT NULL DEFAULT 0);"
  "CREATE TABLE IF NOT EXISTS projection("
  "  name TEXT PRIMARY KEY, tag TEXT NOT NULL, last_offset INTEGER NOT NULL,"
  "  events_applied INTEGER NOT NULL);";

constexpr const char* projection_name = "bank-balances";

/// The read model: its own SQLite file, one connection, used by one thread at a time.
class read_model {
public:
  static troupe::expected<std::unique_ptr<read_model>> open(const std::string& path) {
    auto m = std::unique_ptr<read_model>{new read_model{path}};
    if (sqlite3_open_v2(path.c_str(), &m->db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr)
        != SQLITE_OK)
      return m->failure("open");
    sqlite3_busy_timeout(m->db_, 5000);
    for (auto sql : {"PRAGMA journal_mode=WAL", "PRAGMA synchronous=FULL", schema_sql})
      if (sqlite3_exec(m->db_, sql, nullptr, nullptr, nullptr) != SQLITE_OK)
        return m->failure(sql);
    return m;
  }
  ~read_model() { sqlite3_close_v2(db_); }

  /// The offset of the last event applied (0: none) and how many were applied.
  troupe::expected<std::pair<offset_type, std::int64_t>> position() {
    auto st = prepare("SELECT last_offset, events_applied FROM projection WHERE name = ?1");
    if (!st)
      return std::move(st).error();
    sqlite3_bind_text(st->get(), 1, projection_name, -1, SQLITE_STATIC);
    std::pair<offset_type, std::int64_t> out{0, 0};
    auto rc = sqlite3_step(st->get());
    if (rc == SQLITE_ROW)
      out = {static_cast<offset_type>(sqlite3_column_int64(st->get(), 0)),
             sqlite3_column_int64(st->get(), 1)};
    else if (rc != SQLITE_DONE)
      return failure("read the offset");
    return out;
  }

  /// Applies `batch` and moves the offset past it, in one transaction.
  troupe::expected<void> apply(const std::vector<event_record>& batch,
                               const troupe::codec_registry& codec) {
    if (sqlite3_exec(db_, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr) != SQLITE_OK)
      return failure("begin");
    auto r = apply_in_transaction(batch, codec);
    if (!r) {
      sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
      return r;
    }
    if (sqlite3_exec(db_, "COMMIT", nullptr, nullptr, nullptr) != SQLITE_OK) {
      auto e = failure("commit");
      sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
      return e;
    }
    return {};
  }

  /// The number of accounts and their total balance.
  troupe::expected<std::pair<std::int64_t, std::int64_t>> totals() {
    auto st = prepare("SELECT count(*), coalesce(sum(balance), 0) FROM accounts");
    if (!st)
      return std::move(st).error();
    if (sqlite3_step(st->get()) != SQLITE_ROW)
      return failure("sum the balances");
    return std::pair{sqlite3_column_int64(st->get(), 0), sqlite3_column_int64(st->get(), 1)};
  }

private:
  using statement = std::unique_ptr<sqlite3_stmt, decltype(&sqlite3_finalize)>;

  explicit read_model(std::string path) : path_(std::move(path)) {}

  troupe::error failure(std::string_view what) const {
    return troupe::error{troupe::errc::io_error,
                         fmt::format("read model '{}': {}: {}", path_, what,
                                     db_ ? sqlite3_errmsg(db_) : "out of memory")};
  }

  troupe::expected<statement> prepare(const char* sql) {
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(db_, sql, -1, &st, nullptr) != SQLITE_OK)
      return failure(sql);
    return statement{st, &sqlite3_finalize};
  }

  troupe::expected<void> apply_in_transaction(const std::vector<event_record>& batch,
                                              const troupe::codec_registry& codec) {
    auto pos = position();  // under the write lock: what is committed now
    if (!pos)
      return std::move(pos).error();
    auto [last, applied] = *pos;
    auto upsert = prepare(
      "INSERT INTO accounts(id, owner, status, balance, events) VALUES(?1, coalesce(?2, ''), coalesce(?3, 'open'), ?4, 1) "
      "ON CONFLICT(id) DO UPDATE SET owner = CASE WHEN ?2 IS NULL THEN owner ELSE ?2 END, "
      "status = CASE WHEN ?3 IS NULL THEN status ELSE ?3 END, balance = balance + ?4, "
      "events = events + 1");
    if (!upsert)
      return std::move(upsert).error();
    for (auto& e : batch) {
      if (e.offset <= last)
        continue;  // applied already (another run got there first)
      auto bar = e.persistence_id.find('|');
      auto id = bar == std::string::npos ? e.persistence_id : e.persistence_id.substr(bar + 1);
      std::optional<std::string> owner, status;
      std::int64_t delta = 0;
      if (e.manifest == "bank.account-opened") {
        auto x = codec.decode<bank::account_opened>(e.manifest, e.version, e.payload);
        if (!x)
          return std::move(x).error();
        owner = x->owner;
        status = "open";
      } else if (e.manifest == "bank.deposited") {
        auto x = codec.decode<bank::deposited>(e.manifest, e.version, e.payload);
        if (!x)
          return std::move(x).error();
        delta = x->amount;
      } else if (e.manifest == "bank.withdrawn") {
        auto x = codec.decode<bank::withdrawn>(e.manifest, e.version, e.payload);
        if (!x)
          return std::move(x).error();
        delta = -x->amount;
      } else if (e.manifest == "bank.account-closed") {
        status = "closed";
      }  // another manifest under the tag: counted, no effect on the balance
      auto* st = upsert->get();
      sqlite3_reset(st);
      sqlite3_bind_text(st, 1, id.c_str(), -1, SQLITE_TRANSIENT);
      if (owner)
        sqlite3_bind_text(st, 2, owner->c_str(), -1, SQLITE_TRANSIENT);
      else
        sqlite3_bind_null(st, 2);
      if (status)
        sqlite3_bind_text(st, 3, status->c_str(), -1, SQLITE_TRANSIENT);
      else
        sqlite3_bind_null(st, 3);
      sqlite3_bind_int64(st, 4, delta);
      if (sqlite3_step(st) != SQLITE_DONE)
        return failure("update the account");
      last = e.offset;
      ++applied;
    }
    auto save = prepare("INSERT INTO projection(name, tag, last_offset, events_applied) "
                        "VALUES(?1, ?2, ?3, ?4) ON CONFLICT(name) DO UPDATE SET "
                        "last_offset = ?3, events_applied = ?4");
    if (!save)
      return std::move(save).error();
    sqlite3_bind_text(save->get(), 1, projection_name, -1, SQLITE_STATIC);
    sqlite3_bind_text(save->get(), 2, bank::account::event_tag.data(),
                      static_cast<int>(bank::account::event_tag.size()), SQLITE_STATIC);
    sqlite3_bind_int64(save->get(), 3, static_cast<std::int64_t>(last));
    sqlite3_bind_int64(save->get(), 4, applied);
    if (sqlite3_step(save->get()) != SQLITE_DONE)
      return failure("save the offset");
    return {};
  }

  std::string path_;
  sqlite3* db_ = nullptr;
};

/// Set by SIGINT and SIGTERM; the main thread then stops the stream.
volatile std::sig_atomic_t stop_requested = 0;
extern "C" void request_stop(int) { stop_requested = 1; }

struct flags {
  std::string journal = "bank.db";
  std::string read_model = "bank-read-model.db";
  bool live = false;
  std::int64_t batch = 100;
};

} // namespace

int main(int argc, char** argv) {
  auto codec = std::make_shared<troupe::codec_registry>();
  bank::register_types(*codec);

  auto schema = troupe::node_config_keys();
  CLI::App app{"Streams the bank's events (tag 'account') from its SQLite journal into a read "
               "model, a table of balances in a SQLite file of its own, with exactly-once "
               "offsets: each batch of events and the offset after it commit in one "
               "transaction. Resumes after the committed offset.",
               "troupe-bank-projection"};
  troupe::cli::apply_conventions(app);
  troupe::cli::config_options keys{app, schema};
  flags f;
  app.add_option("--journal", f.journal, "The bank's SQLite journal, read only (default: bank.db, "
                                         "as troupe-bank writes it)")
    ->type_name("FILE");
  app.add_option("--read-model", f.read_model,
                 "The read model's SQLite file, created if missing (default: bank-read-model.db)")
    ->type_name("FILE");
  app.add_flag("--live", f.live, "Keep polling for new events until SIGINT or SIGTERM (default: "
                                 "stop at the events that existed at the start)");
  troupe::cli::add_integer(app, "--batch", f.batch, 1, 100'000,
                           "At most this many events per transaction (default: 100)");
  if (auto rc = troupe::cli::parse(app, argc, argv))
    return *rc;
  auto cfg = keys.load(schema);
  if (!cfg)
    return troupe::cli::config_error(app, cfg.error());

  auto journal = troupe::persistence::sqlite_journal::open({.path = f.journal, .read_only = true});
  if (!journal) {
    fmt::print(stderr, "{}\n", journal.error().to_string());
    return 1;
  }
  auto model = read_model::open(f.read_model);
  if (!model) {
    fmt::print(stderr, "{}\n", model.error().to_string());
    return 1;
  }
  auto start = (*model)->position();
  if (!start) {
    fmt::print(stderr, "{}\n", start.error().to_string());
    return 1;
  }
  auto node = troupe::node::start(std::move(*cfg), {.codec = codec});
  if (!node) {
    fmt::print(stderr, "{}\n", node.error().to_string());
    return 1;
  }
  fmt::print("resuming after offset {} ({} events applied)\n", start->first, start->second);
  std::fflush(stdout);

  ts::kill_switch stop;
  std::signal(SIGINT, request_stop);
  std::signal(SIGTERM, request_stop);
  auto batch = static_cast<std::size_t>(f.batch);
  auto& m = **model;
  // The sink runs the transactions on the stream's island (one actor thread): this
  // process does nothing else. A failed transaction is rolled back and fails the stream.
  auto done = ts::events_by_tag(*journal, std::string{bank::account::event_tag}, start->first,
                                {.live = f.live, .page_size = std::max<std::size_t>(batch, 64)})
                .via(stop.flow())
                .via(ts::grouped_within(batch, 100ms))
                .to(ts::for_each<std::vector<event_record>>([&m, codec](const std::vector<event_record>& b) {
                  if (auto r = m.apply(b, *codec); !r)
                    throw std::runtime_error(r.error().to_string());
                }))
                .run(**node, {.name = projection_name});
  if (!done) {
    fmt::print(stderr, "{}\n", done.error().to_string());
    return 1;
  }
  // The stream ends by itself (current), or after a signal (live): the kill switch
  // completes it, after the batch in hand is applied (a for_each is never cut short).
  for (bool stopping = false; !done->ready();) {
    if (stop_requested && !stopping) {
      stop.shutdown();
      stopping = true;
    }
    done->wait(50ms);
  }
  auto r = done->wait(0ms);
  if (!r) {
    fmt::print(stderr, "{}\n", r.error().to_string());
    return 1;
  }
  auto end = m.position();
  auto totals = m.totals();
  if (!end || !totals) {
    fmt::print(stderr, "{}\n", (!end ? end.error() : totals.error()).to_string());
    return 1;
  }
  fmt::print("applied {} events this run; read model at offset {}: {} events applied, "
             "{} accounts, total balance {}\n",
             end->second - start->second, end->first, end->second, totals->first, totals->second);
  return 0;
}
