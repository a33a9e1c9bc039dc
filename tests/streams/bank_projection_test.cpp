// The bank projection sample (samples/bank_projection) in its own processes: a bank
// journal written here with the bank's entity, the projection killed with SIGKILL
// twice part-way through (once current, once live), run again to the end, and its
// read model compared with the balances folded straight from the journal: every
// event applied exactly once.
#include "../../samples/bank/audit.hpp"

#include "support/child_process.hpp"
#include "support/node_fixture.hpp"
#include "support/temp_dir.hpp"
#include "support/wait.hpp"

#include "troupe/persistence/entity.hpp"
#include "troupe/persistence/journal_service.hpp"

#include <doctest/doctest.h>
#include <sqlite3.h>

#include <atomic>
#include <csignal>
#include <filesystem>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {

/// The sample is built into build/samples/bank_projection, the tests into build/tests/bin.
std::string projection_path() {
  auto bin = std::filesystem::path{troupe::test::program_path("x")}.parent_path();
  return (bin.parent_path().parent_path() / "samples/bank_projection/troupe-bank-projection")
    .string();
}

struct position {
  std::int64_t offset = 0;
  std::int64_t applied = 0;
};

struct account_row {
  std::int64_t balance = 0;
  std::int64_t events = 0;
  friend bool operator==(const account_row&, const account_row&) = default;
};

/// Runs `sql` on the read model (read-only); nullopt while the file or its tables
/// do not exist yet.
template <class Row>
std::optional<std::vector<Row>> query(const std::string& path, const char* sql, Row (*row)(sqlite3_stmt*)) {
  if (!std::filesystem::exists(path))
    return std::nullopt;
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
    sqlite3_close_v2(db);
    return std::nullopt;
  }
  sqlite3_busy_timeout(db, 5000);
  sqlite3_stmt* st = nullptr;
  std::optional<std::vector<Row>> out;
  if (sqlite3_prepare_v2(db, sql, -1, &st, nullptr) == SQLITE_OK) {
    out.emplace();
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
      out->push_back(row(st));
    if (rc != SQLITE_DONE)
      out.reset();
  }
  sqlite3_finalize(st);
  sqlite3_close_v2(db);
  return out;
}

position read_position(const std::string& path) {
  auto rows = query<position>(
    path, "SELECT last_offset, events_applied FROM projection WHERE name = 'bank-balances'",
    [](sqlite3_stmt* st) {
      return position{sqlite3_column_int64(st, 0), sqlite3_column_int64(st, 1)};
    });
  return rows && !rows->empty() ? rows->front() : position{};
}

std::map<std::string, account_row> read_accounts(const std::string& path) {
  using entry = std::pair<std::string, account_row>;
  auto rows = query<entry>(path, "SELECT id, balance, events FROM accounts", [](sqlite3_stmt* st) {
    return entry{reinterpret_cast<const char*>(sqlite3_column_text(st, 0)),
                 account_row{sqlite3_column_int64(st, 1), sqlite3_column_int64(st, 2)}};
  });
  REQUIRE(rows);
  return {rows->begin(), rows->end()};
}

using account_ref = troupe::persistence::entity_ref<bank::account>;

/// Each account: opened with its first round, then `rounds` deposits and
/// withdrawals (never refused: every round adds more than it takes), from a thread
/// per account.
void drive(const std::vector<account_ref>& refs, int first_round, int rounds) {
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (std::size_t a = 0; a < refs.size(); ++a)
    threads.emplace_back([&, a] {
      auto& ref = refs[a];
      if (first_round == 0 && !ref.ask(bank::open_account{"owner-" + std::to_string(a)}, 10s))
        ++failures;
      for (int i = first_round; i < first_round + rounds; ++i) {
        if (!ref.ask(bank::deposit{(i % 7 + 2) * 10, ""}, 10s))
          ++failures;
        if (!ref.ask(bank::withdraw{(i % 5 + 1) * 3, ""}, 10s))
          ++failures;
      }
    });
  for (auto& t : threads)
    t.join();
  REQUIRE(failures.load() == 0);
}

/// The balances and event counts folded straight from the journal.
std::map<std::string, account_row> from_journal(troupe::node& node,
                                                const std::vector<std::string>& ids) {
  auto& journal = troupe::persistence::find_journal(node)->journal();
  auto audit = bank::audit(journal, node.codec(), ids);
  REQUIRE(audit);
  REQUIRE(audit->problems.empty());
  std::map<std::string, account_row> out;
  for (auto& id : ids) {
    auto events = journal.read_events(
      troupe::persistence::persistence_id_of(std::string{bank::account::entity_type}, id), 1,
      troupe::persistence::max_sequence_nr, std::numeric_limits<std::size_t>::max());
    REQUIRE(events);
    out[id] = account_row{audit->balances.at(id), static_cast<std::int64_t>(events->size())};
  }
  return out;
}

std::int64_t total_events(const std::map<std::string, account_row>& m) {
  std::int64_t n = 0;
  for (auto& [id, row] : m)
    n += row.events;
  return n;
}

} // namespace

TEST_CASE("bank projection: killed with SIGKILL part-way twice and run again, its read model applies every journal event exactly once") {
  troupe::test::temp_dir dir;
  auto journal = dir.file("bank.db");
  auto model = dir.file("read-model.db");
  auto schema = troupe::node_config_keys();
  troupe::persistence::add_config_keys(schema);
  auto codec = std::make_shared<troupe::codec_registry>();
  bank::register_types(*codec);
  auto node = troupe::test::make_node({"persistence.journal.create-if-missing=true",
                                       "persistence.journal.synchronous=normal",
                                       "persistence.journal.path=" + journal},
                                      std::move(schema), troupe::node::options{codec});
  REQUIRE(troupe::persistence::install_journal(*node));
  std::vector<std::string> ids;
  std::vector<account_ref> refs;
  for (int i = 0; i < 16; ++i) {
    ids.push_back("acct-" + std::to_string(i));
    auto ref = troupe::persistence::spawn_entity<bank::account>(*node, ids.back());
    REQUIRE(ref);
    refs.push_back(*ref);
  }
  drive(refs, 0, 100);  // 16 * 201 events
  auto expected = from_journal(*node, ids);
  auto total = total_events(expected);
  REQUIRE(total == 16 * 201);

  auto run = [&](std::vector<std::string> extra) {
    std::vector<std::string> args{"--journal", journal, "--read-model", model, "--log.level=warn"};
    args.insert(args.end(), extra.begin(), extra.end());
    return std::make_unique<troupe::test::child_process>(projection_path(), args);
  };

  // 1. Current (not live), small batches; killed once a fifth is applied.
  {
    auto p = run({"--batch", "3"});
    REQUIRE(p->started());
    auto first = p->read_line(30s);
    REQUIRE(first);
    CHECK(*first == "resuming after offset 0 (0 events applied)");
    REQUIRE(troupe::test::wait_until([&] { return read_position(model).applied >= total / 5; }, 60s));
    p->kill();
    REQUIRE(p->wait(30s) == 128 + 9);
  }
  auto at_kill = read_position(model);
  INFO("first kill at ", at_kill.applied, " of ", total);
  CHECK(at_kill.applied < total);  // part-way

  // 2. Live, from the committed offset; killed once half is applied.
  {
    auto p = run({"--batch", "3", "--live"});
    REQUIRE(p->started());
    auto first = p->read_line(30s);
    REQUIRE(first);
    CHECK(first->find(fmt::format("({} events applied)", at_kill.applied)) != std::string::npos);
    REQUIRE(troupe::test::wait_until([&] { return read_position(model).applied >= total / 2; }, 60s));
    p->kill();
    REQUIRE(p->wait(30s) == 128 + 9);
  }
  auto second_kill = read_position(model);
  INFO("second kill at ", second_kill.applied, " of ", total);
  CHECK(second_kill.applied < total);
  CHECK(second_kill.applied >= at_kill.applied);

  // 3. Live again: it catches up, then sees the events written while it runs; SIGTERM ends it.
  {
    auto p = run({"--live"});
    REQUIRE(p->started());
    REQUIRE(p->read_line(30s));
    REQUIRE(troupe::test::wait_until([&] { return read_position(model).applied == total; }, 60s));
    drive(refs, 100, 10);  // 16 * 20 more, while it polls
    expected = from_journal(*node, ids);
    total = total_events(expected);
    REQUIRE(troupe::test::wait_until([&] { return read_position(model).applied == total; }, 60s));
    p->signal(SIGTERM);
    auto last = p->wait_for_line("applied ", 30s);
    REQUIRE(last);
    CHECK(last->find(fmt::format("{} events applied", total)) != std::string::npos);
    CHECK(p->wait(30s) == 0);
  }

  // 4. Current, to the end: nothing left to apply.
  {
    auto p = run({});
    REQUIRE(p->started());
    auto last = p->wait_for_line("applied ", 60s);
    REQUIRE(last);
    CHECK(last->find("applied 0 events this run") != std::string::npos);
    CHECK(p->wait(30s) == 0);
  }

  auto pos = read_position(model);
  CHECK(pos.applied == total);
  auto tail = troupe::persistence::find_journal(*node)->journal().events_by_tag(
    std::string{bank::account::event_tag}, 0, std::numeric_limits<std::size_t>::max());
  REQUIRE(tail);
  REQUIRE(static_cast<std::int64_t>(tail->size()) == total);
  CHECK(pos.offset == static_cast<std::int64_t>(tail->back().offset));
  CHECK(read_accounts(model) == expected);  // balances and events per account: each once
}
