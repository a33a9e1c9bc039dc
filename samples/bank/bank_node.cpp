// troupe-bank-node: a cluster node that hosts the bank's accounts (samples/bank).
//
//   troupe-bank-node --port 7001 --seeds 127.0.0.1:7001 --roles bank --journal bank.db
//
// The flags are troupe-node's (--help lists them): this program is node_main with
// the account type registered in its setup.
#include "sharded_bank.hpp"

#include "troupe/membership/cluster.hpp"
#include "troupe/node_main.hpp"

int main(int argc, char** argv) {
  troupe::node_program p;
  p.name = "troupe-bank-node";
  p.description = "A node of the sharded bank (samples/bank): hosts bank accounts.";
  p.configure_cluster = bank::configure_cluster;
  p.setup = [](troupe::node& n, troupe::membership::cluster&) { return bank::start_accounts(n); };
  return troupe::node_main(argc, argv, std::move(p));
}
