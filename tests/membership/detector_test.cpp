// The phi-accrual failure detector.
#include "troupe/membership/phi_accrual_detector.hpp"

#include <doctest/doctest.h>

using namespace std::chrono_literals;
using namespace troupe::membership;

TEST_CASE("phi accrual: regular heartbeats keep phi low, silence beyond the acceptable pause "
          "crosses the threshold") {
  phi_settings s;
  s.acceptable_pause = 2s;
  s.first_heartbeat_estimate = 1s;
  phi_accrual_detector fd{s};
  CHECK(fd.phi(timestamp{0}) == 0.0);
  timestamp t{0};
  for (int i = 0; i < 20; ++i) {
    fd.heartbeat(t);
    t += 1s;
  }
  auto last = t - 1s;
  CHECK(fd.is_available(last + 1s));
  CHECK(fd.is_available(last + 2500ms));  // a pause within the acceptable one
  CHECK(fd.phi(last + 3s) < fd.phi(last + 3500ms));
  CHECK_FALSE(fd.is_available(last + 4s));
  fd.heartbeat(last + 4s);
  CHECK(fd.is_available(last + 4100ms));
}

TEST_CASE("phi accrual: the sample window is bounded") {
  phi_settings s;
  s.max_sample_size = 10;
  phi_accrual_detector fd{s};
  for (int i = 0; i < 100; ++i)
    fd.heartbeat(timestamp{std::chrono::milliseconds{100 * i}});
  CHECK(fd.sample_count() == 10);
}
