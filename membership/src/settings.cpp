#include "troupe/membership/settings.hpp"

#include "troupe/actors/config.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>

namespace troupe::membership {

namespace {

using namespace std::chrono_literals;

constexpr std::array<std::string_view, 5> strategy_names{"keep-majority", "static-quorum",
                                                          "keep-oldest", "down-all", "off"};

error bad_value(std::string_view key, std::string what) {
  return error{errc::invalid_config, fmt::format("config key '{}': {}", key, what)};
}

expected<std::size_t> positive(const config& cfg, std::string_view key) {
  auto v = cfg.get_int(key);
  if (v < 1)
    return bad_value(key, fmt::format("must be at least 1, got {}", v));
  return static_cast<std::size_t>(v);
}

expected<duration> positive_duration(const config& cfg, std::string_view key) {
  auto v = cfg.get_duration(key);
  if (v <= duration::zero())
    return bad_value(key, "must be greater than 0");
  return v;
}

} // namespace

std::string_view to_string(downing_strategy s) noexcept {
  return strategy_names[static_cast<std::size_t>(s)];
}

std::optional<downing_strategy> downing_strategy_from_string(std::string_view text) noexcept {
  for (std::size_t i = 0; i < strategy_names.size(); ++i)
    if (strategy_names[i] == text)
      return static_cast<downing_strategy>(i);
  return std::nullopt;
}

void membership_settings::require_equal(std::string key, std::string value) {
  auto i = std::lower_bound(compatibility.begin(), compatibility.end(), key,
                            [](const auto& kv, const std::string& k) { return kv.first < k; });
  if (i != compatibility.end() && i->first == key)
    i->second = std::move(value);
  else
    compatibility.emplace(i, std::move(key), std::move(value));
}

void add_config_keys(config_schema& s) {
  membership_settings d;
  auto& fd = d.detector;
  auto& sbr = d.split_brain;
  s.add("cluster.seed-nodes", config_type::string_list, std::vector<std::string>{},
        "host:port of the seed nodes, in the same order on every node. The first one "
        "bootstraps the cluster by joining itself when no other seed answers within "
        "cluster.seed-node-timeout; the others join through any seed that is a member.");
  s.add("cluster.roles", config_type::string_list, std::vector<std::string>{},
        "Roles of this node (singletons and shard regions can be limited to a role).");
  s.add("cluster.app-version", config_type::string, d.app_version,
        "Version of the application on this node; sharding does not rebalance while "
        "members run different versions.");
  s.add("cluster.min-nr-of-members", config_type::integer,
        static_cast<std::int64_t>(d.min_nr_of_members),
        "The leader moves joining members up only once the cluster has this many.");
  s.add("cluster.gossip-interval", config_type::duration, d.gossip_interval,
        "How often a node gossips its membership state to a random peer (three times as "
        "often while fewer than half the members have seen the latest state).");
  s.add("cluster.leader-actions-interval", config_type::duration, d.leader_actions_interval,
        "How often the leader checks for convergence and moves members along.");
  s.add("cluster.seed-node-timeout", config_type::duration, d.seed_node_timeout,
        "How long the first seed node waits for another seed to answer before it "
        "bootstraps a new cluster.");
  s.add("cluster.join-retry-interval", config_type::duration, d.join_retry_interval,
        "How often a joining node asks the seed nodes again.");
  s.add("cluster.retry-unsuccessful-join-after", config_type::duration,
        d.retry_unsuccessful_join_after,
        "A join that got no welcome for this long starts over with the seed nodes.");
  s.add("cluster.allow-weakly-up-members", config_type::duration, *d.weakly_up_after,
        "Joining members become weakly-up after this long without convergence (for "
        "example while a member is unreachable); 0 disables weakly-up.");
  s.add("cluster.failure-detector.heartbeat-interval", config_type::duration,
        d.heartbeat_interval, "How often a node sends heartbeats to the members it monitors.");
  s.add("cluster.failure-detector.threshold", config_type::number, fd.threshold,
        "Phi above which a monitored member is marked unreachable.");
  s.add("cluster.failure-detector.acceptable-heartbeat-pause", config_type::duration,
        fd.acceptable_pause,
        "Silence tolerated on top of the usual heartbeat interval (GC pauses, load).");
  s.add("cluster.failure-detector.min-std-deviation", config_type::duration,
        fd.min_std_deviation, "Floor for the deviation of heartbeat intervals in phi.");
  s.add("cluster.failure-detector.max-sample-size", config_type::integer,
        static_cast<std::int64_t>(fd.max_sample_size),
        "Heartbeat intervals remembered per monitored member.");
  s.add("cluster.failure-detector.monitored-by-nr-of-members", config_type::integer,
        static_cast<std::int64_t>(d.monitored_by_nr_of_members),
        "How many members watch each member (its neighbours on a hash ring).");
  s.add("cluster.unreachable-on-connection-loss", config_type::boolean,
        d.unreachable_on_connection_loss,
        "Mark a member unreachable as soon as the transport loses its connection (it is "
        "reachable again with its next heartbeat reply); only downing removes members.");
  s.add("cluster.split-brain.strategy", config_type::string,
        std::string{to_string(sbr.strategy)},
        "keep-majority, static-quorum, keep-oldest, down-all or off: how the leader of "
        "each side decides which side of a partition to down.");
  s.add("cluster.split-brain.stable-after", config_type::duration, sbr.stable_after,
        "How long the set of unreachable members must stay unchanged before a decision.");
  s.add("cluster.split-brain.down-all-when-unstable", config_type::boolean, true,
        "Down every member if reachability keeps changing for stable-after plus three "
        "quarters of stable-after.");
  s.add("cluster.split-brain.down-all-when-indirectly-connected", config_type::number,
        sbr.down_all_when_indirectly_connected,
        "Down every member when a decision would down more than this fraction of the "
        "members for being indirectly connected (0 disables it).");
  s.add("cluster.split-brain.quorum-size", config_type::integer, std::int64_t{0},
        "static-quorum: members a side needs to stay up (required for that strategy).");
  s.add("cluster.split-brain.down-if-alone", config_type::boolean, sbr.down_if_alone,
        "keep-oldest: if the oldest member is alone on its side, down it instead.");
  s.add("cluster.split-brain.role", config_type::string, std::string{},
        "Count only members with this role in decisions (empty: all members).");
  s.add("cluster.prune-tombstones-after", config_type::duration, d.prune_tombstones_after,
        "How long removed incarnations are remembered (so they can never rejoin).");

  // Ranges (docs/configuration.md shows them); a value outside is invalid_config.
  s.set_range("cluster.min-nr-of-members", config_range::of(1, 10000));
  s.set_range("cluster.gossip-interval", config_range::of(10ms, 1min));
  s.set_range("cluster.leader-actions-interval", config_range::of(10ms, 1min));
  s.set_range("cluster.seed-node-timeout", config_range::of(10ms, 10min));
  s.set_range("cluster.join-retry-interval", config_range::of(10ms, 1min));
  s.set_range("cluster.retry-unsuccessful-join-after", config_range::of(100ms, 10min));
  s.set_range("cluster.allow-weakly-up-members", config_range::zero_or(100ms, 1h));
  s.set_range("cluster.failure-detector.heartbeat-interval", config_range::of(10ms, 1min));
  s.set_range("cluster.failure-detector.threshold", config_range::of(1, 100));
  s.set_range("cluster.failure-detector.acceptable-heartbeat-pause", config_range::of(0ms, 10min));
  s.set_range("cluster.failure-detector.min-std-deviation", config_range::of(1ms, 1min));
  s.set_range("cluster.failure-detector.max-sample-size", config_range::of(1, 100000));
  s.set_range("cluster.failure-detector.monitored-by-nr-of-members", config_range::of(1, 1000));
  s.set_range("cluster.split-brain.strategy",
              config_range::one_of({"keep-majority", "static-quorum", "keep-oldest", "down-all",
                                    "off"}));
  s.set_range("cluster.split-brain.stable-after", config_range::of(10ms, 1h));
  s.set_range("cluster.split-brain.down-all-when-indirectly-connected", config_range::of(0, 1));
  s.set_range("cluster.split-brain.quorum-size", config_range::of(0, 100000));
  s.set_range("cluster.prune-tombstones-after", config_range::of(1min, 720h));
}

expected<membership_settings> settings_from(const config& cfg) {
  membership_settings s;
  s.cluster_name = cfg.get_string("node.cluster-name");
  for (auto& text : cfg.get_string_list("cluster.seed-nodes")) {
    auto a = remote::node_address::parse(text);
    if (!a)
      return bad_value("cluster.seed-nodes", a.error().message());
    s.seed_nodes.push_back(*a);
  }
  s.roles = cfg.get_string_list("cluster.roles");
  s.app_version = cfg.get_string("cluster.app-version");
  auto take = [&](auto& field, auto value) -> expected<void> {
    if (!value)
      return value.error();
    field = *value;
    return {};
  };
  for (auto r : {take(s.min_nr_of_members, positive(cfg, "cluster.min-nr-of-members")),
                 take(s.gossip_interval, positive_duration(cfg, "cluster.gossip-interval")),
                 take(s.leader_actions_interval,
                      positive_duration(cfg, "cluster.leader-actions-interval")),
                 take(s.seed_node_timeout, positive_duration(cfg, "cluster.seed-node-timeout")),
                 take(s.join_retry_interval, positive_duration(cfg, "cluster.join-retry-interval")),
                 take(s.retry_unsuccessful_join_after,
                      positive_duration(cfg, "cluster.retry-unsuccessful-join-after")),
                 take(s.heartbeat_interval,
                      positive_duration(cfg, "cluster.failure-detector.heartbeat-interval")),
                 take(s.detector.max_sample_size,
                      positive(cfg, "cluster.failure-detector.max-sample-size")),
                 take(s.monitored_by_nr_of_members,
                      positive(cfg, "cluster.failure-detector.monitored-by-nr-of-members")),
                 take(s.split_brain.stable_after,
                      positive_duration(cfg, "cluster.split-brain.stable-after")),
                 take(s.prune_tombstones_after,
                      positive_duration(cfg, "cluster.prune-tombstones-after"))})
    if (!r)
      return r.error();
  auto weakly = cfg.get_duration("cluster.allow-weakly-up-members");
  if (weakly < duration::zero())
    return bad_value("cluster.allow-weakly-up-members", "must not be negative");
  s.weakly_up_after = weakly == duration::zero() ? std::nullopt : std::optional{weakly};
  s.detector.threshold = cfg.get_number("cluster.failure-detector.threshold");
  if (!(s.detector.threshold > 0))
    return bad_value("cluster.failure-detector.threshold", "must be greater than 0");
  s.detector.acceptable_pause = cfg.get_duration("cluster.failure-detector.acceptable-heartbeat-pause");
  s.detector.min_std_deviation = cfg.get_duration("cluster.failure-detector.min-std-deviation");
  if (s.detector.acceptable_pause < duration::zero())
    return bad_value("cluster.failure-detector.acceptable-heartbeat-pause", "must not be negative");
  if (s.detector.min_std_deviation <= duration::zero())
    return bad_value("cluster.failure-detector.min-std-deviation", "must be greater than 0");
  s.detector.first_heartbeat_estimate = s.heartbeat_interval;
  s.unreachable_on_connection_loss = cfg.get_bool("cluster.unreachable-on-connection-loss");
  auto& sbr = s.split_brain;
  auto strategy = downing_strategy_from_string(cfg.get_string("cluster.split-brain.strategy"));
  if (!strategy)
    return bad_value("cluster.split-brain.strategy",
                     fmt::format("'{}' is not one of keep-majority, static-quorum, keep-oldest, "
                                 "down-all, off",
                                 cfg.get_string("cluster.split-brain.strategy")));
  sbr.strategy = *strategy;
  sbr.down_all_when_unstable = cfg.get_bool("cluster.split-brain.down-all-when-unstable")
                                 ? std::optional{sbr.stable_after * 3 / 4}
                                 : std::nullopt;
  sbr.down_all_when_indirectly_connected =
    cfg.get_number("cluster.split-brain.down-all-when-indirectly-connected");
  if (!(sbr.down_all_when_indirectly_connected >= 0 && sbr.down_all_when_indirectly_connected <= 1))
    return bad_value("cluster.split-brain.down-all-when-indirectly-connected",
                     "must be between 0 and 1");
  auto quorum = cfg.get_int("cluster.split-brain.quorum-size");
  if (sbr.strategy == downing_strategy::static_quorum && quorum < 1)
    return bad_value("cluster.split-brain.quorum-size",
                     "static-quorum needs a quorum size of at least 1");
  sbr.quorum_size = static_cast<std::size_t>(std::max<std::int64_t>(quorum, 0));
  sbr.down_if_alone = cfg.get_bool("cluster.split-brain.down-if-alone");
  sbr.role = cfg.get_string("cluster.split-brain.role");
  return s;
}

} // namespace troupe::membership
