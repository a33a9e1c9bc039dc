#include "troupe/membership/phi_accrual_detector.hpp"

#include <algorithm>
#include <cmath>

namespace troupe::membership {

namespace {

double to_ms(duration d) {
  return std::chrono::duration<double, std::milli>(d).count();
}

} // namespace

void phi_accrual_detector::add_interval(double ms) {
  if (intervals_.size() >= std::max<std::size_t>(settings_.max_sample_size, 1)) {
    auto old = intervals_.front();
    intervals_.pop_front();
    sum_ -= old;
    squared_sum_ -= old * old;
  }
  intervals_.push_back(ms);
  sum_ += ms;
  squared_sum_ += ms * ms;
}

void phi_accrual_detector::heartbeat(timestamp now) {
  if (!last_) {
    // Akka's bootstrap: two samples around the estimate, with a deviation of a
    // quarter of it, until real intervals arrive.
    auto mean = to_ms(settings_.first_heartbeat_estimate);
    auto deviation = mean / 4.0;
    add_interval(mean - deviation);
    add_interval(mean + deviation);
  } else if (now > *last_) {
    add_interval(to_ms(now - *last_));
  }
  if (!last_ || now > *last_)
    last_ = now;
}

double phi_accrual_detector::phi(timestamp now) const {
  if (!last_ || intervals_.empty())
    return 0.0;
  auto n = static_cast<double>(intervals_.size());
  auto mean = sum_ / n;
  auto variance = std::max(0.0, squared_sum_ / n - mean * mean);
  auto deviation = std::max(std::sqrt(variance), to_ms(settings_.min_std_deviation));
  auto padded_mean = mean + to_ms(settings_.acceptable_pause);
  auto elapsed = now > *last_ ? to_ms(now - *last_) : 0.0;
  // Logistic approximation of the normal CDF (error < 0.0002), as in Akka.
  auto y = (elapsed - padded_mean) / deviation;
  auto e = std::exp(-y * (1.5976 + 0.070566 * y * y));
  if (elapsed > padded_mean)
    return -std::log10(e / (1.0 + e));
  return -std::log10(1.0 - 1.0 / (1.0 + e));
}

} // namespace troupe::membership
