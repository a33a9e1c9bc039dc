// troupe: the command-line tool (`troupe --help`, `troupe journal --help`, ...).
//   troupe journal list|events|verify|stats --db FILE|URI [options], create --db FILE
//   troupe cluster members|shards|leave|down --http HOST:PORT [--address HOST:PORT]
// Exit codes: 0 ok, 1 failure, 2 usage error (tools/cli/troupe/cli/command_line.hpp).
#include "cluster_command.hpp"
#include "journal_command.hpp"

#include "troupe/cli/command_line.hpp"

#include <string>
#include <vector>

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (!args.empty() && args[0] == "journal")
    return troupe::tools::journal_command({args.begin() + 1, args.end()});
  if (!args.empty() && args[0] == "cluster")
    return troupe::tools::cluster_command({args.begin() + 1, args.end()});
  CLI::App app{"Inspect troupe journals and steer troupe clusters.", "troupe"};
  troupe::cli::apply_conventions(app);
  app.require_subcommand(1);
  app.add_subcommand("journal", "Inspect a SQLite or PostgreSQL journal (troupe journal --help)");
  app.add_subcommand("cluster", "Inspect and steer a running cluster (troupe cluster --help)");
  app.footer("Exit codes: 0 ok, 1 failure, 2 usage error.");
  if (auto rc = troupe::cli::parse(app, args))
    return *rc;
  return troupe::cli::exit_usage;  // not reached: a subcommand is required
}
