#include "troupe/membership/sim/invariants.hpp"

#include <fmt/format.h>

namespace troupe::membership::sim {

namespace {

std::uint64_t version_hash(const vector_clock& v) {
  std::uint64_t h = 0xcbf29ce484222325ULL;
  auto mix = [&](std::uint64_t x) {
    h ^= x;
    h *= 0x100000001b3ULL;
  };
  for (auto& [node, counter] : v.entries()) {
    mix(std::hash<std::string>{}(node.address.host));
    mix(node.address.port);
    mix(node.incarnation);
    mix(counter);
  }
  return h;
}

double seconds(timestamp t) {
  return std::chrono::duration<double>(t).count();
}

} // namespace

void invariant_checker::fail(timestamp now, std::string what) {
  if (violations_.size() < 50)
    violations_.push_back(fmt::format("t={:.3f}s: {}", seconds(now), what));
}

void invariant_checker::after_step(timestamp now, const membership_core& core) {
  auto state = core.state_ptr();
  auto& last = last_state_[core.self()];
  if (last == state)
    return;
  auto& observer = core.self();
  auto& removed = removed_[observer];
  for (auto& m : state->members) {
    if (removed.count(m.node))
      fail(now, fmt::format("{} sees removed incarnation {} again (status {})",
                            observer.to_string(), m.node.to_string(), to_string(m.status)));
    if (m.up_number != 0) {
      // Age decides the oldest member, and with it every singleton's home: a
      // member's up number is one value in every view, for good.
      auto [u, first] = up_number_.try_emplace(m.node, m.up_number);
      if (!first && u->second != m.up_number) {
        fail(now, fmt::format("{} sees {} with up number {}, another view had {}",
                              observer.to_string(), m.node.to_string(), m.up_number, u->second));
        u->second = m.up_number;  // reported once per change
      }
    }
    auto [i, fresh] = last_status_.try_emplace({observer, m.node}, m.status);
    if (!fresh && i->second != m.status) {
      if (!can_move(i->second, m.status))
        fail(now, fmt::format("{} saw {} move from {} to {}", observer.to_string(),
                              m.node.to_string(), to_string(i->second), to_string(m.status)));
      i->second = m.status;
    }
  }
  if (last)
    for (auto& m : last->members)
      if (!state->find(m.node)) {
        if (!state->is_tombstoned(m.node))
          fail(now, fmt::format("{} dropped {} without a tombstone", observer.to_string(),
                                m.node.to_string()));
        removed.insert(m.node);
      }
  if (core.current_phase() == membership_core::phase::member && state->converged()) {
    auto leader = state->leader(observer);
    auto [i, fresh] = leader_of_version_.try_emplace(version_hash(state->version), leader);
    if (!fresh && i->second != leader)
      fail(now, fmt::format("two leaders for one converged version: {} says {}, another node {}",
                            observer.to_string(), leader ? leader->to_string() : "none",
                            i->second ? i->second->to_string() : "none"));
  }
  last = std::move(state);
}

void invariant_checker::periodic(timestamp now,
                                 const std::vector<const membership_core*>& running) {
  if (!options_.split_brain)
    return;
  std::set<std::pair<node_identity, node_identity>> current;
  for (auto* a : running) {
    if (a->current_phase() != membership_core::phase::member)
      continue;
    for (auto* b : running) {
      if (a == b || b->current_phase() != membership_core::phase::member)
        continue;
      auto bm = b->self_member();
      if (!bm || !is_up_or_leaving(bm->status))
        continue;
      auto seen_by_a = a->state().find(b->self());
      bool downed_by_a = a->state().is_tombstoned(b->self())
                         || (seen_by_a && seen_by_a->status == member_status::down);
      if (!downed_by_a)
        continue;
      std::pair key{a->self(), b->self()};
      current.insert(key);
      auto [i, fresh] = conflict_since_.try_emplace(key, now);
      if (!fresh && now - i->second > options_.split_brain_grace) {
        fail(now, fmt::format("split brain: {} has {} down or removed, but {} is still {} "
                              "after {:.1f}s",
                              a->self().to_string(), b->self().to_string(),
                              b->self().to_string(), to_string(bm->status),
                              seconds(now - i->second)));
        i->second = now;  // report again only after another grace period
      }
    }
  }
  std::erase_if(conflict_since_, [&](const auto& kv) { return !current.count(kv.first); });
}

} // namespace troupe::membership::sim
