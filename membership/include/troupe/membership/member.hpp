// Members of a troupe cluster and the states they move through.
//
// A member is one incarnation of a node (address + incarnation id, see
// troupe/actors/remote/address.hpp) with its roles and application version. Its
// status only moves forward along the allowed transitions below, the same as Akka
// Cluster's (docs/membership.md, "Member states"):
//
//   joining   -> weakly_up, up, leaving, down, removed
//   weakly_up -> up, leaving, down, removed
//   up        -> leaving, down, removed
//   leaving   -> exiting, down, removed
//   exiting   -> removed, down
//   down      -> removed
//   removed   (final: a removed incarnation never comes back)
//
// Thread-safety: value types.
#pragma once

#include "troupe/actors/remote/address.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace troupe::membership {

using remote::node_address;
using remote::node_identity;

enum class member_status : std::uint8_t {
  joining,
  weakly_up,
  up,
  leaving,
  exiting,
  down,
  removed,
};

/// "joining", "weakly-up", "up", "leaving", "exiting", "down", "removed".
std::string_view to_string(member_status s) noexcept;
std::optional<member_status> member_status_from_string(std::string_view text) noexcept;

/// True if `to` directly follows `from` in the table above.
bool is_allowed_transition(member_status from, member_status to) noexcept;

/// True if `to` is `from` or reachable from it in one or more allowed transitions:
/// what an observer may see between two gossips that skipped intermediate states.
bool can_move(member_status from, member_status to) noexcept;

/// The precedence when two gossips disagree on a member's status: the later state
/// in the transition order wins (down and removed win over everything).
int merge_precedence(member_status s) noexcept;

struct member {
  node_identity node;
  member_status status = member_status::joining;
  /// Order in which the leader moved members to up (1, 2, ...); 0 until then.
  /// The member with the smallest up number is the oldest.
  std::uint32_t up_number = 0;
  std::vector<std::string> roles;  ///< sorted, without duplicates
  std::string app_version;

  bool has_role(std::string_view role) const noexcept;
  /// Older = moved up earlier; ties (never in a converged view) by address.
  bool is_older_than(const member& other) const noexcept;

  friend bool operator==(const member&, const member&) = default;
};

/// Statuses that count as a working member of the cluster (singleton and sharding
/// place work only on these).
inline bool is_up_or_leaving(member_status s) noexcept {
  return s == member_status::up || s == member_status::leaving;
}

} // namespace troupe::membership
