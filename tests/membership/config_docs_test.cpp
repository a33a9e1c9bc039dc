// The membership and management keys: documented with type, default and range in
// docs/configuration.md, and each one refused outside its range.
#include "support/config_docs.hpp"

#include "troupe/membership/management_endpoint.hpp"
#include "troupe/membership/settings.hpp"

#include <doctest/doctest.h>

TEST_CASE("docs/configuration.md lists every membership and management key") {
  troupe::config_schema schema;
  troupe::membership::add_config_keys(schema);
  troupe::membership::add_management_config_keys(schema);
  troupe::test::check_documented(schema);
}

TEST_CASE("config ranges: every membership and management key, in range, on the boundary and beyond") {
  troupe::config_schema schema;
  troupe::membership::add_config_keys(schema);
  troupe::membership::add_management_config_keys(schema);
  troupe::test::check_range_table(
    schema,
    {
      {"cluster.allow-weakly-up-members", "7s", {"0", "100ms", "1h"}, {"99ms", "2h", "-1s"}},
      {"cluster.app-version", "1.2.3", {""}, {}},
      {"cluster.failure-detector.acceptable-heartbeat-pause", "2s", {"0", "10m"}, {"11m", "-1s"}},
      {"cluster.failure-detector.heartbeat-interval", "1s", {"10ms", "1m"}, {"0", "9ms", "2m"}},
      {"cluster.failure-detector.max-sample-size", "1000", {"1", "100000"}, {"0", "100001", "-1"}},
      {"cluster.failure-detector.min-std-deviation", "100ms", {"1ms", "1m"}, {"0", "2m"}},
      {"cluster.failure-detector.monitored-by-nr-of-members", "9", {"1", "1000"}, {"0", "1001"}},
      {"cluster.failure-detector.threshold", "8.0", {"1", "100"}, {"0.5", "100.5", "many"}},
      {"cluster.gossip-interval", "500ms", {"10ms", "1m"}, {"0", "9ms", "61s"}},
      {"cluster.join-retry-interval", "500ms", {"10ms", "1m"}, {"0", "2m"}},
      {"cluster.leader-actions-interval", "250ms", {"10ms", "1m"}, {"0", "2m"}},
      {"cluster.min-nr-of-members", "3", {"1", "10000"}, {"0", "10001", "-1"}},
      {"cluster.prune-tombstones-after", "24h", {"1m", "720h"}, {"59s", "721h"}},
      {"cluster.retry-unsuccessful-join-after", "5s", {"100ms", "10m"}, {"99ms", "11m"}},
      {"cluster.roles", "backend,frontend", {""}, {}},
      {"cluster.seed-node-timeout", "3s", {"10ms", "10m"}, {"0", "11m"}},
      {"cluster.seed-nodes", "127.0.0.1:7001,127.0.0.1:7002", {""}, {}},
      {"cluster.split-brain.down-all-when-indirectly-connected", "0.5", {"0", "1"}, {"-0.1", "1.5"}},
      {"cluster.split-brain.down-all-when-unstable", "true", {"false"}, {"maybe"}},
      {"cluster.split-brain.down-if-alone", "true", {"false"}, {"maybe"}},
      {"cluster.split-brain.quorum-size", "2", {"0", "100000"}, {"-1", "100001"}},
      {"cluster.split-brain.role", "backend", {""}, {}},
      {"cluster.split-brain.stable-after", "3s", {"10ms", "1h"}, {"0", "2h"}},
      {"cluster.split-brain.strategy",
       "keep-majority",
       {"static-quorum", "keep-oldest", "down-all", "off"},
       {"keep-minority", "KEEP-MAJORITY", ""}},
      {"cluster.unreachable-on-connection-loss", "true", {"false"}, {"maybe"}},
      {"management.http.host", "0.0.0.0", {""}, {}},
      {"management.http.port", "8558", {"0", "65535"}, {"-1", "65536"}},
    });
}
