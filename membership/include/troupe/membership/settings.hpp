// Settings of the membership layer (config keys `cluster.*`, docs/configuration.md).
//
// The defaults are chosen for a localhost or LAN cluster: a crashed node is
// removed everywhere within the failover budget of docs/membership.md (at most
// 10 s), while a pause shorter than `split-brain.stable-after` downs nobody.
//
// Thread-safety: value types.
#pragma once

#include "troupe/actors/expected.hpp"
#include "troupe/actors/remote/address.hpp"
#include "troupe/membership/phi_accrual_detector.hpp"
#include "troupe/membership/timestamp.hpp"

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace troupe {
class config;
class config_schema;
} // namespace troupe

namespace troupe::membership {

enum class downing_strategy {
  keep_majority,  ///< the side with more members stays (tie: the lowest address)
  static_quorum,  ///< a side with at least quorum-size members stays
  keep_oldest,    ///< the side with the oldest member stays
  down_all,       ///< every member is downed
  off,            ///< nobody is downed automatically (operator downs by hand)
};

std::string_view to_string(downing_strategy s) noexcept;
std::optional<downing_strategy> downing_strategy_from_string(std::string_view text) noexcept;

struct split_brain_settings {
  downing_strategy strategy = downing_strategy::keep_majority;
  /// How long the unreachable set must stay unchanged before a decision.
  duration stable_after = std::chrono::seconds{3};
  /// Down everyone if reachability keeps changing for stable-after plus this long;
  /// nullopt disables it.
  std::optional<duration> down_all_when_unstable = std::chrono::milliseconds{2250};
  /// Down every member instead when the members downed for indirect connections
  /// would be more than this fraction of all members (a badly broken network has
  /// no fully connected side worth keeping); 0 disables it.
  double down_all_when_indirectly_connected = 0.5;
  std::size_t quorum_size = 0;  ///< static-quorum only
  bool down_if_alone = true;    ///< keep-oldest only: an oldest alone on its side goes
  std::string role;             ///< count only members with this role (empty: all)
};

struct membership_settings {
  std::string cluster_name = "troupe";
  std::vector<remote::node_address> seed_nodes;
  std::vector<std::string> roles;
  std::string app_version = "0.0.0";
  /// Values that must be equal on every member (checked at join); layers add
  /// entries, e.g. sharding its number of shards per entity type. Sorted by key.
  std::vector<std::pair<std::string, std::string>> compatibility;

  duration gossip_interval = std::chrono::milliseconds{500};
  duration leader_actions_interval = std::chrono::milliseconds{250};
  duration seed_node_timeout = std::chrono::seconds{3};
  duration join_retry_interval = std::chrono::milliseconds{500};
  duration retry_unsuccessful_join_after = std::chrono::seconds{5};
  /// Joining members become weakly-up after this long without convergence;
  /// nullopt disables weakly-up.
  std::optional<duration> weakly_up_after = std::chrono::seconds{7};
  std::size_t min_nr_of_members = 1;

  duration heartbeat_interval = std::chrono::seconds{1};
  std::size_t monitored_by_nr_of_members = 9;
  phi_settings detector{};
  /// A lost transport connection marks the peer unreachable at once (it becomes
  /// reachable again with the next heartbeat reply); only downing removes it.
  bool unreachable_on_connection_loss = true;

  split_brain_settings split_brain{};
  duration prune_tombstones_after = std::chrono::hours{24};
  double gossip_different_view_probability = 0.8;
  std::size_t reduce_gossip_different_view_probability = 400;

  /// Adds a compatibility entry (keeps `compatibility` sorted).
  void require_equal(std::string key, std::string value);
};

/// Declares the `cluster.*` keys in `schema`.
void add_config_keys(config_schema& schema);
/// Reads the `cluster.*` keys; fails with invalid_config naming the key.
expected<membership_settings> settings_from(const config& cfg);

} // namespace troupe::membership
