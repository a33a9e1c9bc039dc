// Internal: hints between troupe's scheduler (actors/src/scheduler.hpp) and the
// threads that hand work to it from outside (the transport's I/O thread, the
// journal's writer).
//
// A scheduler worker that runs out of work polls for a short while, then sleeps.
// Waking a sleeping thread costs a futex wake-up and, on a virtual machine whose
// idle vCPUs halt (no guest halt polling), tens of microseconds more before the
// vCPU runs again. Two hints let the threads on both sides of a hand-off keep
// polling while the next message is about to come, and only then:
//
// - spinning_workers(): workers polling for work right now. While one is, the
//   transport's I/O thread keeps polling its sockets (remote/engine.cpp,
//   run_handlers): an answer is expected soon, and is handed to that worker
//   without waking a thread.
// - awaited_completions(): completions the process awaits from another thread (a
//   journal write being made durable, about 100-200 µs for one fsync). While any
//   is, one idle worker polls for longer (scheduler.hpp, spin_time_awaiting), so
//   the acknowledgement meets a running worker. Producers add before they hand
//   the work to their thread and subtract once its completions are posted.
//
// Thread-safety: relaxed atomic counters; hints, never a synchronisation point.
#pragma once

#include <atomic>

namespace troupe::detail {

/// Workers of every troupe scheduler in the process that are spinning right now.
inline std::atomic<int>& spinning_workers() noexcept {
  static std::atomic<int> n{0};
  return n;
}

/// Completions (journal writes, ...) the process awaits right now.
inline std::atomic<long>& awaited_completions() noexcept {
  static std::atomic<long> n{0};
  return n;
}

/// One pause of a polling loop (those threads poll between these hints' checks):
/// tells the core this is a spin-wait, so it saves power and lets its sibling
/// hyperthread run.
inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

} // namespace troupe::detail
