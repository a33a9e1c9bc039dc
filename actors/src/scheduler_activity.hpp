// Whether any troupe scheduler worker in the process is spinning for work: the
// transport's I/O thread keeps polling its sockets only while one is (see
// remote/engine.cpp, run_handlers), because then an answer is expected soon and it
// is handed to that worker without waking a thread.
//
// Thread-safety: a relaxed atomic counter; a hint, never a synchronisation point.
#pragma once

#include <atomic>

namespace troupe::detail {

/// Workers of every troupe scheduler in the process that are spinning right now.
inline std::atomic<int>& spinning_workers() noexcept {
  static std::atomic<int> n{0};
  return n;
}

} // namespace troupe::detail
