#include "troupe/membership/cluster_event.hpp"

#include "cluster_event_diff.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>

namespace troupe::membership {

namespace {

constexpr std::array<std::string_view, 13> kind_names{
  "member_joined",      "member_weakly_up", "member_up",      "member_left",  "member_exited",
  "member_downed",      "member_removed",   "unreachable_member", "reachable_member",
  "leader_changed",     "self_downed",      "self_removed",   "join_refused"};

cluster_event::kind event_for(member_status s) {
  switch (s) {
    case member_status::joining: return cluster_event::kind::member_joined;
    case member_status::weakly_up: return cluster_event::kind::member_weakly_up;
    case member_status::up: return cluster_event::kind::member_up;
    case member_status::leaving: return cluster_event::kind::member_left;
    case member_status::exiting: return cluster_event::kind::member_exited;
    case member_status::down:
    case member_status::removed: break;
  }
  return cluster_event::kind::member_downed;
}

} // namespace

std::string_view to_string(cluster_event::kind k) noexcept {
  return kind_names[static_cast<std::size_t>(k)];
}

std::string to_string(const cluster_event& e) {
  using k = cluster_event::kind;
  switch (e.what) {
    case k::leader_changed:
      return fmt::format("leader_changed {}", e.leader ? e.leader->to_string() : "(none)");
    case k::member_removed:
      return fmt::format("member_removed {} (was {})", e.subject.node.to_string(),
                         to_string(e.previous));
    case k::self_downed:
    case k::join_refused:
      return fmt::format("{} {}: {}", to_string(e.what), e.subject.node.to_string(), e.reason);
    default:
      break;
  }
  std::string roles;
  for (auto& r : e.subject.roles)
    roles += (roles.empty() ? "" : ",") + r;
  return fmt::format("{} {}{}", to_string(e.what), e.subject.node.to_string(),
                     roles.empty() ? "" : fmt::format(" (roles: {})", roles));
}

void diff_events(const gossip& before, const gossip& after, const node_identity& self,
                 std::vector<cluster_event>& out) {
  auto emit = [&](cluster_event::kind what, const member& m) -> cluster_event& {
    auto& e = out.emplace_back();
    e.what = what;
    e.subject = m;
    return e;
  };
  for (auto& m : after.members) {
    auto old = before.find(m.node);
    if (!old || old->status != m.status)
      emit(event_for(m.status), m);
  }
  for (auto& m : before.members)
    if (!after.find(m.node))
      emit(cluster_event::kind::member_removed, m).previous = m.status;
  auto was = before.unreachable();
  auto is = after.unreachable();
  for (auto& n : is)
    if (!std::binary_search(was.begin(), was.end(), n))
      emit(cluster_event::kind::unreachable_member, *after.find(n));
  for (auto& n : was)
    if (auto m = after.find(n); m && !std::binary_search(is.begin(), is.end(), n))
      emit(cluster_event::kind::reachable_member, *m);
  auto old_leader = before.leader(self);
  auto new_leader = after.leader(self);
  if (old_leader != new_leader) {
    auto& e = out.emplace_back();
    e.what = cluster_event::kind::leader_changed;
    e.leader = new_leader;
  }
}

} // namespace troupe::membership
