// The bank's accounts as sharded entities: one definition of how every node (the
// hosting nodes and the demo's client) starts them, so they agree on it.
#pragma once

#include "account.hpp"

#include "troupe/actors/node.hpp"
#include "troupe/actors/remote/transport.hpp"
#include "troupe/membership/cluster.hpp"
#include "troupe/membership/settings.hpp"
#include "troupe/persistence/journal_service.hpp"
#include "troupe/persistence/postgres_journal.hpp"
#include "troupe/sharding/sharding.hpp"

#include <memory>
#include <string>
#include <vector>

namespace bank {

/// Members with this role host accounts; others only route to them.
inline constexpr std::string_view host_role = "bank";
/// Shards of the account type (the same on every node: sharding checks it at join).
inline constexpr std::uint32_t number_of_shards = 30;

inline troupe::sharding::sharding_settings sharding_settings() {
  troupe::sharding::sharding_settings s;
  s.number_of_shards = number_of_shards;
  s.role = std::string{host_role};
  return s;
}

/// Every member must agree on the account type's shards: a node with another
/// number is refused at join (membership's compatibility check).
inline troupe::expected<void> configure_cluster(const troupe::config&,
                                                troupe::membership::membership_settings& s) {
  troupe::sharding::require_same_shards(s, account::entity_type, sharding_settings());
  return {};
}

/// Registers the account's types in the node's codec and starts its region.
inline troupe::expected<void> start_accounts(troupe::node& n) {
  register_types(n.codec());
  return troupe::sharding::start<account>(n, sharding_settings());
}

/// A running client member: a node without the bank role whose region routes
/// to the accounts and hosts none (the demo's and the tests' client).
struct client {
  std::unique_ptr<troupe::node> node;
  std::shared_ptr<troupe::persistence::journal_service> journal;
  std::shared_ptr<troupe::membership::cluster> cluster;
};

/// Starts a client member with `flags` (at least --cluster.seed-nodes=...) on
/// the shared journal at `journal_path` (a SQLite file or a postgresql:// URI),
/// and waits until it is up.
inline troupe::expected<client> start_client(std::vector<std::string> flags,
                                             const std::string& journal_path,
                                             troupe::duration up_within) {
  auto schema = troupe::node_config_keys();
  troupe::persistence::add_config_keys(schema);
  troupe::membership::add_config_keys(schema);
  troupe::config_sources src;
  src.flags = std::move(flags);
  src.flags.push_back("--cluster.roles=client");
  if (troupe::persistence::is_postgres_uri(journal_path)) {
    src.flags.push_back("--persistence.journal.backend=postgres");
    src.flags.push_back("--persistence.journal.postgres.uri=" + journal_path);
  } else {
    src.flags.push_back("--persistence.journal.path=" + journal_path);
  }
  auto cfg = troupe::config::load(std::move(schema), src);
  if (!cfg)
    return std::move(cfg).error();
  auto settings = troupe::membership::settings_from(*cfg);
  if (!settings)
    return std::move(settings).error();
  if (auto ok = configure_cluster(*cfg, *settings); !ok)
    return std::move(ok).error();
  auto n = troupe::node::start(std::move(*cfg));
  if (!n)
    return std::move(n).error();
  client c;
  c.node = std::move(*n);
  if (auto t = troupe::remote::transport::start(*c.node); !t)
    return std::move(t).error();
  auto journal = troupe::persistence::install_journal(*c.node);
  if (!journal)
    return std::move(journal).error();
  c.journal = *journal;
  auto cluster = troupe::membership::cluster::start(*c.node, *settings);
  if (!cluster)
    return std::move(cluster).error();
  c.cluster = *cluster;
  if (auto r = start_accounts(*c.node); !r)
    return std::move(r).error();
  if (auto r = c.cluster->wait_until_up(up_within); !r)
    return std::move(r).error();
  return c;
}

} // namespace bank
