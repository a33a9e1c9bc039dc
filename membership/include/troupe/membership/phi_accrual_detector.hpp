// A phi-accrual failure detector (Hayashibara et al.; the variant Akka uses).
//
// It learns the distribution of heartbeat inter-arrival times (a sliding window of
// `max_sample_size` samples) and answers, at any time, how suspicious the silence
// since the last heartbeat is: phi = -log10(P(a heartbeat arrives this late)). The
// mean is padded by `acceptable_pause` (a GC pause or a busy network is not a
// failure) and the deviation has a floor (`min_std_deviation`), so perfectly
// regular heartbeats do not make it hair-trigger.
//
// Thread-safety: none; owned by one membership core.
#pragma once

#include "troupe/membership/timestamp.hpp"

#include <cstddef>
#include <deque>
#include <optional>

namespace troupe::membership {

struct phi_settings {
  double threshold = 8.0;
  std::size_t max_sample_size = 1000;
  duration min_std_deviation = std::chrono::milliseconds{100};
  duration acceptable_pause = std::chrono::seconds{2};
  /// The assumed interval before any sample: the heartbeat interval.
  duration first_heartbeat_estimate = std::chrono::seconds{1};
};

class phi_accrual_detector {
public:
  explicit phi_accrual_detector(phi_settings s) : settings_(s) {}

  /// Records a heartbeat arriving at `now`.
  void heartbeat(timestamp now);
  /// Suspicion at `now`; 0 before the first heartbeat.
  double phi(timestamp now) const;
  bool is_available(timestamp now) const { return phi(now) < settings_.threshold; }

  std::optional<timestamp> last_heartbeat() const noexcept { return last_; }
  std::size_t sample_count() const noexcept { return intervals_.size(); }

private:
  void add_interval(double ms);

  phi_settings settings_;
  std::optional<timestamp> last_;
  std::deque<double> intervals_;  ///< milliseconds
  double sum_ = 0;
  double squared_sum_ = 0;
};

} // namespace troupe::membership
