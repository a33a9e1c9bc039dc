// Internal: a test-and-set lock for critical sections of a few dozen nanoseconds
// that are almost never contended (a stable handle's forwarding step).
//
// Why not std::mutex: unlocking a futex-based mutex is an atomic read-modify-write
// (it must see whether someone sleeps on it), so an uncontended lock/unlock pair
// costs two locked instructions; this one's unlock is a plain release store. A
// sender flooding a supervised child through its stable handle sent 4.04-4.10 M
// msgs/s with this lock and 3.77-3.88 M with std::mutex (`local_send_supervised`,
// one binary, the lock chosen at run time).
//
// Contended: spins with the CPU's pause hint, then yields the thread, so a holder
// that was preempted (or that is waking a worker inside the section) gets the CPU.
// Not fair, not recursive. Meets the BasicLockable requirements (std::lock_guard).
//
// Thread-safety: lock() and unlock() may be called from any thread.
#pragma once

#include <atomic>
#include <thread>

#if defined(__x86_64__) || defined(__i386__)
#  include <immintrin.h>
#endif

namespace troupe::detail {

class spin_lock {
public:
  void lock() noexcept {
    for (int tries = 0; locked_.exchange(true, std::memory_order_acquire);) {
      // Wait on a plain load: spinning on the exchange would pull the line
      // exclusive on every try.
      while (locked_.load(std::memory_order_relaxed)) {
        if (tries++ < spins_before_yield)
          pause();
        else
          std::this_thread::yield();
      }
    }
  }

  void unlock() noexcept { locked_.store(false, std::memory_order_release); }

private:
  static constexpr int spins_before_yield = 100;

  static void pause() noexcept {
#if defined(__x86_64__) || defined(__i386__)
    _mm_pause();
#endif
  }

  std::atomic<bool> locked_{false};
};

} // namespace troupe::detail
