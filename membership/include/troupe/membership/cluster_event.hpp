// What membership tells its subscribers: member status changes, reachability
// changes, a new leader, and what happened to this node itself.
//
// Subscribers of a running cluster first get the current state as a sequence of
// events, then every change in the order this node saw it.
//
// Thread-safety: value types.
#pragma once

#include "troupe/membership/member.hpp"

#include <optional>
#include <string>
#include <string_view>

namespace troupe::membership {

struct cluster_event {
  enum class kind {
    member_joined,     ///< subject is joining
    member_weakly_up,
    member_up,
    member_left,       ///< subject is leaving
    member_exited,     ///< subject is exiting
    member_downed,
    member_removed,    ///< subject left the member set; `previous` says from where
    unreachable_member,
    reachable_member,
    leader_changed,    ///< `leader` is the new leader (empty: none)
    self_downed,       ///< this node was downed: it must stop its work and exit
    self_removed,      ///< this node was removed (after leaving, or while downed)
    join_refused,      ///< the cluster refused this node; `reason` says why
  };
  kind what = kind::member_joined;
  member subject;
  member_status previous = member_status::joining;  ///< member_removed only
  std::optional<node_identity> leader;              ///< leader_changed only
  std::string reason;                               ///< join_refused, self_downed

  friend bool operator==(const cluster_event&, const cluster_event&) = default;
};

std::string_view to_string(cluster_event::kind k) noexcept;
/// One line for logs: "member_up 127.0.0.1:7355#00ab... (roles: a,b)".
std::string to_string(const cluster_event& e);

} // namespace troupe::membership
