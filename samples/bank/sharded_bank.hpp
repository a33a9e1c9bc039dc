// The bank's accounts as sharded entities: one definition of how every node (the
// hosting nodes and the demo's client) starts them, so they agree on it.
#pragma once

#include "account.hpp"

#include "troupe/actors/node.hpp"
#include "troupe/sharding/sharding.hpp"

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

/// Registers the account's types in the node's codec and starts its region.
inline troupe::expected<void> start_accounts(troupe::node& n) {
  register_types(n.codec());
  return troupe::sharding::start<account>(n, sharding_settings());
}

} // namespace bank
