#include "troupe/membership/split_brain_resolver.hpp"

#include <fmt/format.h>

#include <algorithm>

namespace troupe::membership {

namespace {

using side = std::vector<const member*>;

/// How a side is counted. Both sides must never keep running, so each side is
/// pessimistic: its own side counts what it knows for sure (up and leaving
/// members), the other side counts what the other side may believe (a joining or
/// weakly-up member may have been moved up there before the partition hid it; a
/// member that was up and is down here may not know it was downed; an exiting
/// one may still count there).
enum class view { certain, possible };

bool counted(const split_brain_settings& s, const member& m, view v) {
  bool live = false;
  switch (m.status) {
    case member_status::up:
    case member_status::leaving: live = true; break;
    // An exiting member may already be removed on the other side (the leader
    // there removes exiting members it cannot reach).
    case member_status::exiting:
    case member_status::joining:
    case member_status::weakly_up: live = v == view::possible; break;
    case member_status::down: live = v == view::possible && m.up_number != 0; break;
    case member_status::removed: break;
  }
  return live && (s.role.empty() || m.has_role(s.role));
}

std::size_t count(const split_brain_settings& s, const side& xs, view v) {
  return static_cast<std::size_t>(
    std::count_if(xs.begin(), xs.end(), [&](const member* m) { return counted(s, *m, v); }));
}

bool contains(const std::vector<node_identity>& sorted, const node_identity& n) {
  return std::binary_search(sorted.begin(), sorted.end(), n);
}

bool is_down(const gossip& g, const node_identity& n) {
  auto m = g.find(n);
  return !m || m->status == member_status::down;
}

/// Members that observe a live member as unreachable and are observed unreachable
/// too. Observations of down members do not count: that a crashed member was
/// noticed says nothing about the observer's links.
std::vector<node_identity> indirectly_connected(const gossip& g, const node_identity& self) {
  auto subjects = g.unreachable_as_seen_by(self);
  std::vector<node_identity> result;
  for (auto& row : g.overview.rows()) {
    auto m = g.find(row.observer);
    bool counts = row.observer == self
                  || (m && m->status != member_status::down && m->status != member_status::exiting);
    if (!m || !counts || !contains(subjects, row.observer))
      continue;
    if (std::any_of(row.unreachable.begin(), row.unreachable.end(),
                    [&](const node_identity& s) { return !is_down(g, s); }))
      result.push_back(row.observer);
  }
  return result;
}

/// The lowest address among the counted members of both sides.
const member* lowest_address(const split_brain_settings& s, const side& here, const side& there) {
  const member* result = nullptr;
  for (auto [xs, v] : {std::pair{&here, view::certain}, std::pair{&there, view::possible}})
    for (auto* m : *xs)
      if (counted(s, *m, v) && (!result || m->node.address < result->node.address))
        result = m;
  return result;
}

/// The oldest member that was moved up (up numbers are the same on both sides).
const member* oldest_of(const split_brain_settings& s, const side& here, const side& there) {
  const member* result = nullptr;
  for (auto [xs, v] : {std::pair{&here, view::certain}, std::pair{&there, view::possible}})
    for (auto* m : *xs)
      if (m->up_number != 0 && counted(s, *m, v) && (!result || m->is_older_than(*result)))
        result = m;
  return result;
}

bool on_side(const side& xs, const member* m) {
  return std::find(xs.begin(), xs.end(), m) != xs.end();
}

enum class verdict { down_unreachable, down_reachable, down_all };

verdict decide(const split_brain_settings& s, const side& reachable, const side& unreachable,
               std::string& why) {
  auto r = count(s, reachable, view::certain);
  auto u = count(s, unreachable, view::possible);
  switch (s.strategy) {
    case downing_strategy::keep_majority: {
      why = fmt::format("keep-majority: {} reachable, {} unreachable", r, u);
      if (r != u)
        return r > u ? verdict::down_unreachable : verdict::down_reachable;
      auto lowest = lowest_address(s, reachable, unreachable);
      why += ", tie broken by the lowest address";
      return lowest && on_side(unreachable, lowest) ? verdict::down_reachable
                                                   : verdict::down_unreachable;
    }
    case downing_strategy::static_quorum:
      why = fmt::format("static-quorum {}: {} reachable, {} unreachable", s.quorum_size, r, u);
      if (r + u > 2 * s.quorum_size - 1) {
        why += ", more members than the quorum allows";
        return verdict::down_all;
      }
      return r >= s.quorum_size ? verdict::down_unreachable : verdict::down_reachable;
    case downing_strategy::keep_oldest: {
      auto oldest = oldest_of(s, reachable, unreachable);
      if (!oldest) {
        why = "keep-oldest: no counted member";
        return verdict::down_unreachable;
      }
      bool here = on_side(reachable, oldest);
      bool alone = here ? r == 1 && u > 0 : u == 1 && r > 0;
      why = fmt::format("keep-oldest: the oldest ({}) is {}", oldest->node.to_string(),
                        here ? "reachable" : "unreachable");
      if (s.down_if_alone && alone) {
        why += " and alone on its side";
        return here ? verdict::down_reachable : verdict::down_unreachable;
      }
      return here ? verdict::down_unreachable : verdict::down_reachable;
    }
    case downing_strategy::down_all:
      why = "down-all";
      return verdict::down_all;
    case downing_strategy::off:
      break;
  }
  return verdict::down_unreachable;
}

std::vector<node_identity> nodes_of(const side& xs) {
  std::vector<node_identity> result;
  for (auto* m : xs)
    if (m->status != member_status::down)
      result.push_back(m->node);
  return result;
}

} // namespace

downing_decision decide_downing(const split_brain_settings& settings, const gossip& state,
                                const node_identity& self) {
  downing_decision result;
  result.strategy = settings.strategy;
  if (settings.strategy == downing_strategy::off)
    return result;
  auto unreachable = state.unreachable_as_seen_by(self);
  std::erase_if(unreachable, [&](const node_identity& n) {
    return n == self || state.find(n)->status == member_status::down;
  });
  auto indirect = indirectly_connected(state, self);
  if (unreachable.empty() && indirect.empty())
    return result;
  // A down member stays on the unreachable side while it is unreachable; a
  // reachable one is stopping and belongs to neither side.
  auto away = state.unreachable_as_seen_by(self);
  side reachable_side;
  side unreachable_side;
  for (auto& m : state.members) {
    bool gone = contains(away, m.node) || contains(indirect, m.node);
    if (m.status == member_status::down && !gone)
      continue;
    (gone ? unreachable_side : reachable_side).push_back(&m);
  }
  // A flaky link, not a partition: down only the nodes at its ends.
  bool only_indirect = std::all_of(unreachable.begin(), unreachable.end(),
                                   [&](const node_identity& n) { return contains(indirect, n); });
  std::vector<node_identity> downed;
  if (only_indirect) {
    result.reason = fmt::format("{} indirectly connected member(s)", indirect.size());
    downed = indirect;
  } else {
    std::string why;
    auto v = decide(settings, reachable_side, unreachable_side, why);
    result.reason = why;
    if (v == verdict::down_unreachable || v == verdict::down_all)
      for (auto& n : nodes_of(unreachable_side))
        downed.push_back(n);
    if (v == verdict::down_reachable || v == verdict::down_all)
      for (auto& n : nodes_of(reachable_side))
        downed.push_back(n);
    downed.insert(downed.end(), indirect.begin(), indirect.end());
    if (!indirect.empty())
      result.reason += fmt::format(" ({} indirectly connected)", indirect.size());
  }
  std::sort(downed.begin(), downed.end());
  downed.erase(std::unique(downed.begin(), downed.end()), downed.end());
  auto limit = settings.down_all_when_indirectly_connected;
  if (!indirect.empty() && limit > 0
      && static_cast<double>(downed.size()) > limit * static_cast<double>(state.members.size()))
    return down_all_decision(
      state, fmt::format("{}; it would down {} of {} members, more than the "
                         "down-all-when-indirectly-connected fraction: down all",
                         result.reason, downed.size(), state.members.size()));
  std::erase_if(downed, [&](const node_identity& n) {
    auto m = state.find(n);
    return !m || m->status == member_status::down;
  });
  result.downed = std::move(downed);
  return result;
}

downing_decision down_all_decision(const gossip& state, std::string reason) {
  downing_decision result;
  result.strategy = downing_strategy::down_all;
  for (auto& m : state.members)
    if (m.status != member_status::down)
      result.downed.push_back(m.node);
  result.reason = std::move(reason);
  return result;
}

} // namespace troupe::membership
