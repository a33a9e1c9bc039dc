#include "troupe/membership/gossip.hpp"

#include <algorithm>

namespace troupe::membership {

namespace {

template <class Vec>
auto find_by_node(Vec& xs, const node_identity& node) {
  auto i = std::lower_bound(xs.begin(), xs.end(), node,
                            [](const auto& x, const node_identity& n) { return x.node < n; });
  return (i != xs.end() && i->node == node) ? &*i : nullptr;
}

bool counts_as_observer(const gossip& g, const node_identity& observer) {
  auto m = g.find(observer);
  return m && m->status != member_status::down && m->status != member_status::exiting;
}

} // namespace

const member* gossip::find(const node_identity& node) const noexcept {
  return find_by_node(members, node);
}

member* gossip::find(const node_identity& node) noexcept {
  return find_by_node(members, node);
}

bool gossip::is_tombstoned(const node_identity& node) const noexcept {
  return find_by_node(tombstones, node) != nullptr;
}

bool gossip::has_seen(const node_identity& node) const noexcept {
  return std::binary_search(seen.begin(), seen.end(), node);
}

std::vector<node_identity> gossip::unreachable() const {
  auto subjects = overview.unreachable_subjects(
    [this](const node_identity& observer) { return !counts_as_observer(*this, observer); });
  std::erase_if(subjects, [this](const node_identity& s) { return find(s) == nullptr; });
  return subjects;
}

std::vector<node_identity> gossip::unreachable_as_seen_by(const node_identity& self) const {
  auto subjects = overview.unreachable_subjects([&](const node_identity& observer) {
    return observer != self && !counts_as_observer(*this, observer);
  });
  std::erase_if(subjects, [&](const node_identity& s) { return !find(s); });
  return subjects;
}

bool gossip::is_reachable(const node_identity& self, const node_identity& node) const {
  if (node == self)
    return true;
  for (auto& r : overview.rows())
    if (counts_as_observer(*this, r.observer)
        && std::binary_search(r.unreachable.begin(), r.unreachable.end(), node))
      return false;
  return true;
}

bool gossip::reachable_from(const node_identity& self, const node_identity& node) const {
  return is_reachable(self, node) && overview.is_reachable_by(self, node);
}

bool gossip::converged() const {
  for (auto& node : unreachable()) {
    auto s = find(node)->status;
    if (s != member_status::down && s != member_status::exiting)
      return false;
  }
  // Until a member is up, joining ones count too (as in Akka): otherwise two
  // joiners with different partial views could each lead, each move its view's
  // members up, and give one member two up numbers (and singletons two homes).
  bool forming = std::none_of(members.begin(), members.end(),
                              [](const member& m) { return is_up_or_leaving(m.status); });
  return std::all_of(members.begin(), members.end(), [&](const member& m) {
    bool counts = is_up_or_leaving(m.status)
                  || (forming && (m.status == member_status::joining
                                  || m.status == member_status::weakly_up));
    return !counts || has_seen(m.node);
  });
}

namespace {

template <class Reachable>
std::optional<node_identity> leader_by(const gossip& g, Reachable reachable) {
  const member* fallback = nullptr;
  for (auto& m : g.members) {
    if (m.status == member_status::down || !reachable(m.node))
      continue;
    if (is_up_or_leaving(m.status))
      return m.node;
    // Joining and weakly-up rank before exiting; members are in address order.
    if (!fallback || (fallback->status == member_status::exiting
                      && m.status != member_status::exiting))
      fallback = &m;
  }
  if (fallback)
    return fallback->node;
  return std::nullopt;
}

} // namespace

std::optional<node_identity> gossip::leader(const node_identity& self) const {
  return leader_by(*this, [&](const node_identity& n) { return is_reachable(self, n); });
}

std::optional<node_identity> gossip::leader_as_seen_by(const node_identity& self) const {
  return leader_by(*this, [&](const node_identity& n) { return reachable_from(self, n); });
}

const member* gossip::oldest(std::string_view role) const {
  const member* result = nullptr;
  for (auto& m : members)
    if (is_up_or_leaving(m.status) && (role.empty() || m.has_role(role))
        && (!result || m.is_older_than(*result)))
      result = &m;
  return result;
}

void gossip::put(member m) {
  auto i = std::lower_bound(members.begin(), members.end(), m.node,
                            [](const member& x, const node_identity& n) { return x.node < n; });
  if (i != members.end() && i->node == m.node)
    *i = std::move(m);
  else
    members.insert(i, std::move(m));
}

void gossip::remove(const node_identity& node, timestamp now) {
  std::erase_if(members, [&](const member& m) { return m.node == node; });
  std::erase(seen, node);
  version.prune(node);
  overview.retain([&](const node_identity& n) { return n != node; });
  auto i = std::lower_bound(tombstones.begin(), tombstones.end(), node,
                            [](const tombstone& t, const node_identity& n) { return t.node < n; });
  if (i == tombstones.end() || i->node != node)
    tombstones.insert(i, tombstone{node, now});
}

void gossip::mark_seen(const node_identity& node) {
  auto i = std::lower_bound(seen.begin(), seen.end(), node);
  if (i == seen.end() || *i != node)
    seen.insert(i, node);
}

void gossip::changed_by(const node_identity& self) {
  version.increment(self);
  seen.assign(1, self);
}

void gossip::prune_tombstones(timestamp cutoff) {
  std::erase_if(tombstones, [&](const tombstone& t) { return t.removed_at < cutoff; });
}

gossip gossip::merge(const gossip& a, const gossip& b) {
  gossip result;
  // Tombstones: union; the earlier removal time wins (any is a valid witness).
  std::merge(a.tombstones.begin(), a.tombstones.end(), b.tombstones.begin(), b.tombstones.end(),
             std::back_inserter(result.tombstones),
             [](const tombstone& x, const tombstone& y) {
               return x.node != y.node ? x.node < y.node : x.removed_at < y.removed_at;
             });
  result.tombstones.erase(std::unique(result.tombstones.begin(), result.tombstones.end(),
                                      [](const tombstone& x, const tombstone& y) {
                                        return x.node == y.node;
                                      }),
                          result.tombstones.end());
  // Members: per node the later status; tombstoned ones are gone.
  auto i = a.members.begin();
  auto j = b.members.begin();
  auto emit = [&](const member& m) {
    if (!result.is_tombstoned(m.node))
      result.members.push_back(m);
  };
  while (i != a.members.end() || j != b.members.end()) {
    if (j == b.members.end() || (i != a.members.end() && i->node < j->node)) {
      emit(*i++);
    } else if (i == a.members.end() || j->node < i->node) {
      emit(*j++);
    } else {
      auto pa = merge_precedence(i->status);
      auto pb = merge_precedence(j->status);
      member m = pa >= pb ? *i : *j;
      m.up_number = std::max(i->up_number, j->up_number);
      emit(m);
      ++i;
      ++j;
    }
  }
  result.version = a.version.merge(b.version);
  for (auto& t : result.tombstones)
    result.version.prune(t.node);
  result.overview = reachability::merge(a.overview, b.overview);
  result.overview.retain([&](const node_identity& n) { return result.find(n) != nullptr; });
  return result;
}

} // namespace troupe::membership
