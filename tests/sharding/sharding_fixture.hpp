// What in-process sharding tests share: the nodes' config keys, short sharding
// timings, and the tally entity (tests/streams/tally_entity.hpp) sharded on a node.
#pragma once

#include "streams/tally_entity.hpp"

#include "troupe/membership/management_endpoint.hpp"
#include "troupe/persistence/journal_service.hpp"
#include "troupe/persistence/memory_journal.hpp"
#include "troupe/sharding/sharding.hpp"

#include <doctest/doctest.h>

#include <chrono>
#include <memory>

namespace troupe::test {

/// The config keys of a node that runs sharding (node, persistence, management).
inline config_schema sharding_schema() {
  auto schema = node_config_keys();
  persistence::add_config_keys(schema);
  membership::add_management_config_keys(schema);
  return schema;
}

/// `shards` shards, no passivation, and hand-offs and rebalances quick enough for
/// tests (they wait on what the cluster reports, never on sleeps).
inline sharding::sharding_settings fast_sharding_settings(std::uint32_t shards) {
  using namespace std::chrono_literals;
  sharding::sharding_settings s;
  s.number_of_shards = shards;
  s.passivate_idle_after = 0s;
  s.rebalance_interval = 500ms;
  s.begin_hand_off_timeout = 2s;
  s.hand_off_timeout = 3s;
  return s;
}

/// The journal (shared by the nodes) and the tally's region on node `n`.
inline void start_sharded_tally(node& n, const std::shared_ptr<persistence::memory_journal>& journal,
                                const sharding::sharding_settings& settings) {
  tally::register_types(n.codec());
  REQUIRE(persistence::install_journal(n, journal, journal));
  auto r = sharding::start<tally::entity>(n, settings);
  INFO((r ? std::string{"ok"} : r.error().to_string()));
  REQUIRE(r);
}

} // namespace troupe::test
