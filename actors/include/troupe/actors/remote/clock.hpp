// The transport's source of time, injectable so that tests (and the membership
// layer's simulations) control what the transport measures.
//
// Every time the transport *measures* goes through its clock: how long a connection
// has been silent (transport.failure-timeout), heartbeat arrival times, how old a
// pending request is (transport.request-retention), the release time of frames a
// filter delays, the warning rate limit, the direct-write gap. What *schedules* work
// (the heartbeat interval, the handshake deadline, reconnect backoff) is Asio's
// timers in real time: with a manual clock they still fire, and what they find is
// judged by the manual clock. Randomness (nonces, incarnations, backoff jitter) is
// the operating system's.
//
//   auto clock = std::make_shared<troupe::remote::manual_clock>();
//   auto t = troupe::remote::transport::start(node, {.clock = clock});
//   clock->advance(std::chrono::seconds{10});   // silence now exceeds the timeout
//
// Thread-safety: now() is called from the I/O thread and from sender threads at
// once; implementations must be thread-safe. manual_clock is.
#pragma once

#include "troupe/actors/config.hpp"

#include <atomic>
#include <chrono>
#include <memory>

namespace troupe::remote {

class transport_clock {
public:
  using time_point = std::chrono::steady_clock::time_point;
  virtual ~transport_clock() = default;
  virtual time_point now() const noexcept = 0;
};

/// std::chrono::steady_clock (the default).
std::shared_ptr<const transport_clock> steady_transport_clock();

/// A clock that moves only when told. Starts at the steady clock's current time,
/// so that values from it and from real timers are comparable.
class manual_clock final : public transport_clock {
public:
  manual_clock() : ns_(std::chrono::steady_clock::now().time_since_epoch().count()) {}

  time_point now() const noexcept override {
    return time_point{std::chrono::steady_clock::duration{ns_.load(std::memory_order_acquire)}};
  }
  /// Moves the clock forward by `d` (a negative `d` is ignored: time never runs back).
  void advance(duration d) noexcept {
    if (d > duration{0})
      ns_.fetch_add(std::chrono::duration_cast<std::chrono::steady_clock::duration>(d).count(),
                    std::memory_order_acq_rel);
  }

private:
  std::atomic<std::chrono::steady_clock::rep> ns_;
};

} // namespace troupe::remote
