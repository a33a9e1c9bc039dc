// troupe::membership::sim::network: a seeded, simulated network for deterministic
// simulation tests of distributed cores (membership here; sharding builds on it).
//
// Messages between numbered nodes get a random delay within [min_delay,
// max_delay] (so they reorder), may be dropped or duplicated with the configured
// probabilities, and never cross a blocked link (partitions are sets of blocked
// links; a link can be blocked in one direction only). A message already in
// flight when its link is blocked is lost too, as when a cable is pulled.
// Everything random comes from the generator passed in: the same seed and the
// same calls give the same deliveries.
//
// Thread-safety: none; one simulation runs on one thread.
#pragma once

#include "troupe/membership/random.hpp"
#include "troupe/membership/timestamp.hpp"

#include <cstddef>
#include <cstdint>
#include <queue>
#include <set>
#include <utility>
#include <vector>

namespace troupe::membership::sim {

using node_index = std::size_t;

struct link_faults {
  double drop = 0.0;
  double duplicate = 0.0;
  duration min_delay = std::chrono::milliseconds{1};
  duration max_delay = std::chrono::milliseconds{10};
};

struct network_stats {
  std::uint64_t sent = 0;
  std::uint64_t delivered = 0;
  std::uint64_t dropped = 0;     ///< by chance
  std::uint64_t blocked = 0;     ///< by a partition or a dead receiver
  std::uint64_t duplicated = 0;
};

template <class Message>
class network {
public:
  struct delivery {
    timestamp at;
    node_index from;
    node_index to;
    Message message;
  };

  network(deterministic_rng& rng, link_faults faults) : rng_(rng), faults_(faults) {}

  link_faults& faults() noexcept { return faults_; }

  /// Schedules the delivery of `m` (or not, per the faults).
  void send(timestamp now, node_index from, node_index to, Message m) {
    ++stats_.sent;
    if (is_blocked(from, to)) {
      ++stats_.blocked;
      return;
    }
    if (rng_.chance(faults_.drop)) {
      ++stats_.dropped;
      return;
    }
    if (rng_.chance(faults_.duplicate)) {
      ++stats_.duplicated;
      push(now, from, to, m);
    }
    push(now, from, to, std::move(m));
  }

  void block(node_index from, node_index to) { blocked_.emplace(from, to); }
  void unblock(node_index from, node_index to) { blocked_.erase({from, to}); }
  /// Blocks every link between the two sides, both ways.
  void partition(const std::vector<node_index>& a, const std::vector<node_index>& b) {
    for (auto x : a)
      for (auto y : b) {
        block(x, y);
        block(y, x);
      }
  }
  void heal() { blocked_.clear(); }
  bool is_blocked(node_index from, node_index to) const { return blocked_.count({from, to}) > 0; }
  bool any_blocked() const noexcept { return !blocked_.empty(); }

  bool has_pending() const noexcept { return !queue_.empty(); }
  timestamp next_time() const { return queue_.top().d.at; }

  /// Removes the earliest delivery; returns false (and counts it) if its link was
  /// blocked meanwhile.
  bool pop(delivery& out) {
    out = std::move(const_cast<entry&>(queue_.top()).d);
    queue_.pop();
    if (is_blocked(out.from, out.to)) {
      ++stats_.blocked;
      return false;
    }
    ++stats_.delivered;
    return true;
  }

  const network_stats& stats() const noexcept { return stats_; }

private:
  struct entry {
    delivery d;
    std::uint64_t order;  // ties at the same time keep sending order
    bool operator>(const entry& other) const {
      return d.at != other.d.at ? d.at > other.d.at : order > other.order;
    }
  };

  void push(timestamp now, node_index from, node_index to, Message m) {
    auto delay = faults_.min_delay.count() >= faults_.max_delay.count()
                   ? faults_.min_delay
                   : duration{rng_.between(faults_.min_delay.count(), faults_.max_delay.count())};
    queue_.push(entry{delivery{now + delay, from, to, std::move(m)}, next_order_++});
  }

  deterministic_rng& rng_;
  link_faults faults_;
  std::set<std::pair<node_index, node_index>> blocked_;
  std::priority_queue<entry, std::vector<entry>, std::greater<>> queue_;
  std::uint64_t next_order_ = 0;
  network_stats stats_;
};

} // namespace troupe::membership::sim
