// membership_core's failure detection: heartbeats to the ring neighbours, the
// phi-accrual detector of each, and this node's row of the reachability table
// marked from them.
#include "troupe/membership/membership_core.hpp"

#include "heartbeat_ring.hpp"

#include <algorithm>
#include <optional>
#include <utility>
#include <vector>

namespace troupe::membership {

std::vector<node_identity> membership_core::heartbeat_receivers() const {
  return ring_receivers(*state_, self_, settings_.monitored_by_nr_of_members);
}

void membership_core::heartbeat_tick(timestamp now, effects& out) {
  if (now < next_heartbeat_)
    return;
  // Keep the interval exact on average whatever the tick granularity: the
  // detectors on the other side learn it.
  next_heartbeat_ += settings_.heartbeat_interval;
  if (next_heartbeat_ <= now)
    next_heartbeat_ = now + settings_.heartbeat_interval;
  auto receivers = heartbeat_receivers();
  // Keep watching members this node marked unreachable: they may come back.
  for (auto& r : state_->overview.rows())
    if (r.observer == self_)
      for (auto& s : r.unreachable)
        if (state_->find(s))
          receivers.push_back(s);
  std::sort(receivers.begin(), receivers.end());
  receivers.erase(std::unique(receivers.begin(), receivers.end()), receivers.end());
  std::erase_if(monitored_, [&](const auto& kv) {
    return !std::binary_search(receivers.begin(), receivers.end(), kv.first);
  });
  for (auto& r : receivers) {
    auto i = monitored_.find(r);
    if (i == monitored_.end()) {
      phi_settings ps = settings_.detector;
      ps.first_heartbeat_estimate = settings_.heartbeat_interval;
      i = monitored_.emplace(r, monitored_node{phi_accrual_detector{ps}, false}).first;
      // The first response is due within an interval: start the clock now, so a
      // node that never answers becomes suspicious like one that stopped.
      i->second.detector.heartbeat(now);
    }
    ++stats_.heartbeats_sent;
    send(r, heartbeat{++heartbeat_sequence_}, out);
  }
}

void membership_core::on_heartbeat_response(timestamp now, const envelope& e) {
  auto i = monitored_.find(e.from);
  if (i == monitored_.end())
    return;
  ++stats_.heartbeat_responses;
  i->second.detector.heartbeat(now);
  i->second.connection_lost = false;
}

void membership_core::reachability_tick(timestamp now, effects& out) {
  std::optional<gossip> next;
  for (auto& [node, watch] : monitored_) {
    if (!state_->find(node))
      continue;
    bool available = !watch.connection_lost && watch.detector.is_available(now);
    bool reachable = state_->overview.is_reachable_by(self_, node);
    if (available == reachable)
      continue;
    if (!next)
      next = *state_;
    if (available)
      next->overview.mark_reachable(self_, node);
    else
      next->overview.mark_unreachable(self_, node);
  }
  if (next)
    change(std::move(*next), out);
}

std::vector<std::pair<node_identity, double>> membership_core::monitored(timestamp now) const {
  std::vector<std::pair<node_identity, double>> result;
  for (auto& [node, watch] : monitored_)
    result.emplace_back(node, watch.detector.phi(now));
  return result;
}

} // namespace troupe::membership
