// troupe-bank: bank accounts as event-sourced entities on a SQLite journal.
//
//   troupe-bank [--persistence.journal.path=bank.db]   open acct-42, deposit, withdraw
//   troupe-bank replay acct-42 --db bank.db            the state after each event
//
// Run it twice: the second run recovers the account from the journal.
#include "account.hpp"

#include "troupe/actors/ask.hpp"
#include "troupe/actors/node.hpp"
#include "troupe/persistence/entity.hpp"
#include "troupe/persistence/journal_service.hpp"
#include "troupe/persistence/replay_tool.hpp"

#include <fmt/core.h>

#include <string_view>

using namespace std::chrono_literals;
using troupe::persistence::done;

namespace {

void report(std::string_view what, const troupe::expected<done>& r) {
  if (r)
    fmt::print("{}: ok\n", what);
  else
    fmt::print("{}: refused: {}\n", what, r.error().message());
}

} // namespace

int main(int argc, char** argv) {
  auto codec = std::make_shared<troupe::codec_registry>();
  bank::register_types(*codec);
  if (argc > 1 && std::string_view{argv[1]} == "replay")
    return troupe::persistence::replay_main<bank::account>(argc - 1, argv + 1, codec);

  auto schema = troupe::node_config_keys();
  troupe::persistence::add_config_keys(schema);
  schema.add("persistence.journal.path", troupe::config_type::string, std::string{"bank.db"},
             "The bank's SQLite journal.");
  // A sample creates its journal on the first run; a deployment creates it once,
  // explicitly (docs/persistence-storage.md), so a lost journal is never replaced.
  schema.add("persistence.journal.create-if-missing", troupe::config_type::boolean, true,
             "Create bank.db on the first run.");
  auto cfg = troupe::config::load(std::move(schema), argc, argv);
  if (!cfg) {
    fmt::print(stderr, "{}\n", cfg.error().to_string());
    return 2;
  }
  auto node = troupe::node::start(std::move(*cfg), {.codec = codec});
  if (!node) {
    fmt::print(stderr, "{}\n", node.error().to_string());
    return 1;
  }
  if (auto journal = troupe::persistence::install_journal(**node); !journal) {
    fmt::print(stderr, "{}\n", journal.error().to_string());
    return 1;
  }

  auto acct = troupe::persistence::spawn_entity<bank::account>(**node, "acct-42");
  if (!acct) {
    fmt::print(stderr, "{}\n", acct.error().to_string());
    return 1;
  }
  auto& sys = (*node)->system();
  report("open acct-42", troupe::ask<done>(sys, *acct, 2s, bank::open_account{"ada"}));
  report("deposit 100", troupe::ask<done>(sys, *acct, 2s, bank::deposit{100}));
  report("withdraw 30", troupe::ask<done>(sys, *acct, 2s, bank::withdraw{30}));
  report("withdraw 1000", acct->ask(bank::withdraw{1000}, 2s));
  auto balance = troupe::ask<std::int64_t>(sys, *acct, 2s, bank::get_balance{});
  if (!balance) {
    fmt::print(stderr, "{}\n", balance.error().to_string());
    return 1;
  }
  fmt::print("balance of acct-42: {}\n", *balance);
  return 0;
}
