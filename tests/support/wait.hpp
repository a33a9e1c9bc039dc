// Waiting in tests: on a condition, with a deadline, never on a fixed sleep.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>

namespace troupe::test {

/// Re-evaluates `condition` (every millisecond or so) until it holds or `timeout`
/// passes; returns whether it held. Use inside CHECK/REQUIRE.
inline bool wait_until(const std::function<bool()>& condition,
                       std::chrono::milliseconds timeout = std::chrono::seconds{10}) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  std::mutex mtx;
  std::condition_variable never_notified;
  std::unique_lock<std::mutex> lock{mtx};
  while (!condition()) {
    if (std::chrono::steady_clock::now() >= deadline)
      return condition();
    // Polls the condition; the wait is the poll interval, not a synchronization.
    never_notified.wait_for(lock, std::chrono::milliseconds{1});
  }
  return true;
}

/// A latch-like counter that tests wait on.
class event_counter {
public:
  void add(int n = 1) {
    std::lock_guard<std::mutex> guard{mtx_};
    count_ += n;
    cv_.notify_all();
  }
  int value() const {
    std::lock_guard<std::mutex> guard{mtx_};
    return count_;
  }
  /// Waits until the count reaches `n`; false on timeout.
  bool wait_for(int n, std::chrono::milliseconds timeout = std::chrono::seconds{10}) const {
    std::unique_lock<std::mutex> lock{mtx_};
    return cv_.wait_for(lock, timeout, [&] { return count_ >= n; });
  }

private:
  mutable std::mutex mtx_;
  mutable std::condition_variable cv_;
  int count_ = 0;
};

} // namespace troupe::test
