// troupe::node_main: the program around a cluster node. troupe-node is
// `return troupe::node_main(argc, argv);`, and a user's own binary is the same with
// its entity types registered in `setup`:
//
//   int main(int argc, char** argv) {
//     troupe::node_program p;
//     p.name = "bank-node";
//     p.setup = [](troupe::node& n, troupe::membership::cluster& c) -> troupe::expected<void> {
//       ...  // register entity types, singletons; runs before the node joins
//       return {};
//     };
//     return troupe::node_main(argc, argv, p);
//   }
//
// One set of flags for every troupe node binary (--help lists them):
//   --host H --port N                      the transport's address (node.host/port)
//   --seeds H:P,H:P                        cluster.seed-nodes
//   --roles a,b                            cluster.roles
//   --journal FILE                         an SQLite journal (persistence.*)
//   --http-port N (--http-host H)          the management endpoint
//   --config FILE                          a JSON config file
//   --key=value / --key value              any configuration key (--help-config)
//   --version, --help, --help-config
// It starts the node, the transport, the journal (if asked), the cluster and the
// management endpoint, runs `setup`, joins, and serves until SIGTERM or SIGINT
// (graceful: the node leaves the cluster in its shutdown phases) or until its
// membership ends. Exit codes: 0 after a graceful stop, 1 on a runtime failure,
// 2 on a usage or configuration error, 3 when the cluster downed, removed or
// refused this node.
//
// Once everything runs it prints one line on stdout:
//   troupe-node <name> up: transport=<host:port> incarnation=<hex> http=<host:port>
// ("up" is printed when the node joined; "listening" earlier, before it joined).
#pragma once

#include "troupe/actors/expected.hpp"

#include <functional>
#include <string>

namespace troupe {

class node;
class config;
class config_schema;

namespace membership {
class cluster;
struct membership_settings;
} // namespace membership

struct node_program {
  std::string name = "troupe-node";
  std::string description = "A troupe cluster node.";
  /// The program's own configuration keys, beside the node's and the cluster's.
  std::function<void(config_schema&)> add_config_keys;
  /// Adjusts the cluster settings before the cluster starts (e.g. compatibility
  /// entries that every member must share: membership_settings::require_equal).
  std::function<expected<void>(const config&, membership::membership_settings&)> configure_cluster;
  /// Runs once the node, its transport, journal and cluster run, before it joins.
  std::function<expected<void>(node&, membership::cluster&)> setup;
};

/// Runs a cluster node; returns the process exit code.
int node_main(int argc, char** argv, node_program program = {});

} // namespace troupe
