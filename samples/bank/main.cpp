// troupe-bank: bank accounts as event-sourced entities on a SQLite journal.
//
//   troupe-bank [--persistence.journal.path bank.db]   open acct-42, deposit, withdraw
//   troupe-bank replay acct-42 --db bank.db            the state after each event
//   troupe-bank replay --verify --db bank.db           every account's events fold
//
// Run it twice: the second run recovers the account from the journal.
// --help, --help-config and --version as in every troupe program.
#include "account.hpp"

#include "troupe/actors/ask.hpp"
#include "troupe/actors/node.hpp"
#include "troupe/cli/command_line.hpp"
#include "troupe/persistence/entity.hpp"
#include "troupe/persistence/journal_service.hpp"
#include "troupe/persistence/replay_tool.hpp"

#include <fmt/core.h>

#include <limits>
#include <string>
#include <string_view>
#include <vector>

using namespace std::chrono_literals;
using troupe::persistence::done;

namespace {

void report(std::string_view what, const troupe::expected<done>& r) {
  if (r)
    fmt::print("{}: ok\n", what);
  else
    fmt::print("{}: refused: {}\n", what, r.error().message());
}

/// `replay`: its arguments checked here, then troupe::persistence::replay_main.
struct replay_args {
  std::string id;
  std::string db;
  std::int64_t from = 1;
  std::int64_t to = 0;
  bool verify = false;
};

CLI::App* add_replay(CLI::App& app, replay_args& r) {
  auto* replay = app.add_subcommand("replay", "Print an account's state after each stored event, "
                                              "or check that every account's events fold");
  auto* id = replay->add_option("ID", r.id, "Account id (acct-42) or persistence id "
                                            "(account|acct-42)");
  replay->add_flag("--verify", r.verify, "Fold every account and report problems")->excludes(id);
  replay->add_option("--db", r.db, "The SQLite journal")->required()->type_name("FILE");
  auto max = std::numeric_limits<std::int64_t>::max();
  troupe::cli::add_integer(*replay, "--from", r.from, 1, max, "Print from this sequence number");
  troupe::cli::add_integer(*replay, "--to", r.to, 1, max, "Stop at this sequence number");
  return replay;
}

int run_replay(const CLI::App& replay, const replay_args& r,
               std::shared_ptr<const troupe::codec_registry> codec) {
  if (r.id.empty() && !r.verify)
    return troupe::cli::usage_error(replay, "give an account ID or --verify");
  std::vector<std::string> args{"replay", r.verify ? "--verify" : r.id, "--db", r.db};
  if (replay.count("--from") > 0)
    args.insert(args.end(), {"--from", std::to_string(r.from)});
  if (replay.count("--to") > 0)
    args.insert(args.end(), {"--to", std::to_string(r.to)});
  std::vector<const char*> argv;
  for (auto& a : args)
    argv.push_back(a.c_str());
  return troupe::persistence::replay_main<bank::account>(static_cast<int>(argv.size()),
                                                         argv.data(), std::move(codec));
}

} // namespace

int main(int argc, char** argv) {
  auto codec = std::make_shared<troupe::codec_registry>();
  bank::register_types(*codec);

  auto schema = troupe::node_config_keys();
  troupe::persistence::add_config_keys(schema);
  schema.add("persistence.journal.path", troupe::config_type::string, std::string{"bank.db"},
             "The bank's SQLite journal.");
  // A sample creates its journal on the first run; a deployment creates it once,
  // explicitly (docs/persistence-storage.md), so a lost journal is never replaced.
  schema.add("persistence.journal.create-if-missing", troupe::config_type::boolean, true,
             "Create bank.db on the first run.");
  CLI::App app{"Bank accounts as event-sourced entities on a SQLite journal: opens acct-42, "
               "deposits, withdraws. Run it twice: the second run recovers the account.",
               "troupe-bank"};
  troupe::cli::apply_conventions(app);
  troupe::cli::config_options keys{app, schema};
  replay_args r;
  auto* replay = add_replay(app, r);
  if (auto rc = troupe::cli::parse(app, argc, argv))
    return *rc;
  if (replay->parsed())
    return run_replay(*replay, r, codec);
  auto cfg = keys.load(schema);
  if (!cfg)
    return troupe::cli::config_error(app, cfg.error());
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
