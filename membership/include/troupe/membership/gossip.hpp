// The membership state one node holds and gossips: members, reachability, who has
// seen this version, the version itself, and tombstones of removed incarnations.
//
// The state is a CRDT-like value: two versions merge deterministically (per
// member the later status, per observer the newer reachability row, tombstones
// win over members), so every node that has seen the same inputs holds the same
// state whatever the order it received them in. Convergence, the leader and the
// oldest member are functions of the state (and of the asking node, which always
// counts itself reachable), so nodes that hold the same converged state agree on
// them without an election. docs/membership.md explains each rule.
//
// Thread-safety: value type.
#pragma once

#include "troupe/membership/member.hpp"
#include "troupe/membership/reachability.hpp"
#include "troupe/membership/timestamp.hpp"
#include "troupe/membership/vector_clock.hpp"

#include <optional>
#include <string_view>
#include <vector>

namespace troupe::membership {

struct tombstone {
  node_identity node;
  timestamp removed_at{0};  ///< when the remover removed it (its own clock)

  friend bool operator==(const tombstone&, const tombstone&) = default;
};

struct gossip {
  std::vector<member> members;     ///< sorted by node; never status removed
  reachability overview;
  std::vector<node_identity> seen; ///< sorted: the members known to hold this version
  vector_clock version;
  std::vector<tombstone> tombstones;  ///< sorted by node

  const member* find(const node_identity& node) const noexcept;
  member* find(const node_identity& node) noexcept;
  bool is_tombstoned(const node_identity& node) const noexcept;
  bool has_seen(const node_identity& node) const noexcept;

  /// Members some observer (other than a down or exiting one) cannot reach, sorted.
  /// What every node agrees on: convergence and cluster events use it.
  std::vector<node_identity> unreachable() const;
  /// The same, plus what `self` itself observed even while it is down or exiting:
  /// what `self` decides with (leader, gossip targets, split-brain resolver).
  std::vector<node_identity> unreachable_as_seen_by(const node_identity& self) const;
  /// `node == self`, or no counted observer lists it (the view every node shares).
  bool is_reachable(const node_identity& self, const node_identity& node) const;
  /// is_reachable, and `self` itself has not observed it unreachable (even while
  /// `self` is exiting or down): whom `self` can talk to.
  bool reachable_from(const node_identity& self, const node_identity& node) const;

  /// Every up or leaving member (while no member is up yet: every joining and
  /// weakly-up one) has seen this version, and every member that some observer
  /// cannot reach is down or exiting (Akka's convergence).
  bool converged() const;

  /// The first reachable member (by address) that is up or leaving; if there is
  /// none, the first reachable joining or weakly-up one. As seen by `self`.
  std::optional<node_identity> leader(const node_identity& self) const;
  /// The same rule over what `self` can reach (reachable_from): who decides for the
  /// side of a partition `self` is on. Equal to leader() unless `self` is exiting
  /// or down and has observations of its own.
  std::optional<node_identity> leader_as_seen_by(const node_identity& self) const;

  /// The oldest up or leaving member (smallest up number), optionally with `role`.
  const member* oldest(std::string_view role = {}) const;

  /// Inserts or replaces a member (keeps the order).
  void put(member m);
  /// Removes a member and leaves a tombstone; prunes it from version, seen and
  /// reachability.
  void remove(const node_identity& node, timestamp now);
  /// Adds `node` to the seen set.
  void mark_seen(const node_identity& node);
  /// A local change: increments `self` in the version; only `self` has seen it.
  void changed_by(const node_identity& self);
  /// Drops tombstones removed before `cutoff`.
  void prune_tombstones(timestamp cutoff);

  /// The merge of two concurrent versions; nobody has seen the result yet.
  static gossip merge(const gossip& a, const gossip& b);

  friend bool operator==(const gossip&, const gossip&) = default;
};

} // namespace troupe::membership
