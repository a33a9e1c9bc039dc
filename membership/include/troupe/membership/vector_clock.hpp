// The version of a membership state: one counter per node that changed it.
//
// Each node increments its own entry when it changes the state; comparing two
// clocks says whether one state descends from the other or both changed
// concurrently (and must be merged). Entries of removed nodes are pruned (the
// tombstones in the gossip keep them from coming back).
//
// Thread-safety: value type.
#pragma once

#include "troupe/actors/remote/address.hpp"

#include <cstdint>
#include <utility>
#include <vector>

namespace troupe::membership {

class vector_clock {
public:
  enum class ordering { same, before, after, concurrent };
  using entry = std::pair<remote::node_identity, std::uint64_t>;

  void increment(const remote::node_identity& node);
  /// How this clock relates to `other`: `before` means other descends from this.
  ordering compare(const vector_clock& other) const noexcept;
  /// The pointwise maximum.
  vector_clock merge(const vector_clock& other) const;
  void prune(const remote::node_identity& node);

  std::uint64_t at(const remote::node_identity& node) const noexcept;
  /// Sorted by node.
  const std::vector<entry>& entries() const noexcept { return entries_; }
  static vector_clock from_entries(std::vector<entry> entries);

  friend bool operator==(const vector_clock&, const vector_clock&) = default;

private:
  std::vector<entry> entries_;
};

} // namespace troupe::membership
