// Who cannot reach whom: the failure detectors' observations, spread by gossip.
//
// Each observer owns one row (the subjects it cannot reach) with a version it
// increments on every change; only the observer writes its row, so merging two
// tables takes each observer's row with the higher version. A subject is
// unreachable while any observer lists it, and reachable again only when every
// observer has taken it off (Akka's rule: one observer spreads unreachability, all
// must agree to lift it). Unreachability is a flag beside the member status, not a
// status: only downing (the split-brain resolver or an operator) removes a node.
//
// Thread-safety: value type.
#pragma once

#include "troupe/actors/remote/address.hpp"

#include <cstdint>
#include <functional>
#include <vector>

namespace troupe::membership {

class reachability {
public:
  struct row {
    remote::node_identity observer;
    std::uint64_t version = 0;
    std::vector<remote::node_identity> unreachable;  ///< sorted

    friend bool operator==(const row&, const row&) = default;
  };

  /// Returns whether the table changed.
  bool mark_unreachable(const remote::node_identity& observer,
                        const remote::node_identity& subject);
  bool mark_reachable(const remote::node_identity& observer, const remote::node_identity& subject);

  bool is_reachable(const remote::node_identity& subject) const noexcept;
  bool is_reachable_by(const remote::node_identity& observer,
                       const remote::node_identity& subject) const noexcept;
  bool all_reachable() const noexcept;

  /// Subjects some observer lists, sorted; observers for which `ignore(observer)`
  /// holds are skipped (convergence ignores observations of downed members).
  std::vector<remote::node_identity> unreachable_subjects(
    const std::function<bool(const remote::node_identity&)>& ignore = {}) const;

  /// Per observer, the row with the higher version.
  static reachability merge(const reachability& a, const reachability& b);
  /// Drops rows of observers and entries of subjects for which `keep` is false
  /// (members that were removed).
  void retain(const std::function<bool(const remote::node_identity&)>& keep);

  /// Sorted by observer.
  const std::vector<row>& rows() const noexcept { return rows_; }
  static reachability from_rows(std::vector<row> rows);

  friend bool operator==(const reachability&, const reachability&) = default;

private:
  row& row_of(const remote::node_identity& observer);
  std::vector<row> rows_;
};

} // namespace troupe::membership
