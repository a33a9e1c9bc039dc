#include "troupe/sharding/snapshot.hpp"

#include <algorithm>
#include <set>

namespace troupe::sharding {

using membership::member_status;

cluster_snapshot cluster_snapshot_of(const membership::gossip& g, std::string_view role) {
  cluster_snapshot s;
  s.stable = g.converged() && g.unreachable().empty();
  std::set<std::string_view> versions;
  for (auto& m : g.members) {
    if (m.status != member_status::down)
      s.members.push_back(m.node);
    if (m.status == member_status::up && (role.empty() || m.has_role(role))) {
      s.eligible.push_back(m.node);
      versions.insert(m.app_version);
    }
    if (m.status == member_status::joining || m.status == member_status::weakly_up)
      s.stable = false;
  }
  if (versions.size() > 1)
    s.stable = false;
  std::sort(s.members.begin(), s.members.end());
  std::sort(s.eligible.begin(), s.eligible.end());
  return s;
}

std::optional<node_identity> coordinator_location(const membership::gossip& g,
                                                  std::string_view role) {
  const membership::member* oldest = nullptr;
  for (auto& m : g.members)
    if (m.status == member_status::up && (role.empty() || m.has_role(role))
        && (!oldest || m.is_older_than(*oldest)))
      oldest = &m;
  return oldest ? std::optional{oldest->node} : std::nullopt;
}

} // namespace troupe::sharding
