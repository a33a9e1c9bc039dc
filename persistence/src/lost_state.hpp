// A journal's "lost" state, shared by the SQLite and PostgreSQL backends: the
// storage the journal was opened on is no longer that journal (the file replaced,
// the schema recreated or another database behind the URI). Once lost, every call
// fails with the first error, and the on_lost handler (journal.hpp) runs once.
//
// Thread-safety: every member may be called concurrently.
#pragma once

#include "troupe/actors/expected.hpp"

#include <atomic>
#include <functional>
#include <mutex>

namespace troupe::persistence {

class lost_state {
public:
  /// Records the loss (once) and tells the handler outside the lock; returns the
  /// first loss's error.
  error mark(error e) {
    std::function<void(const error&)> handler;
    {
      std::lock_guard<std::mutex> guard{mtx_};
      if (lost_.load())
        return error_;
      error_ = e;
      lost_.store(true);
      handler = handler_;
    }
    if (handler)
      handler(e);
    return e;
  }

  /// The loss's error, or nothing while not lost (one atomic load).
  expected<void> check() {
    if (!lost_.load(std::memory_order_acquire))
      return {};
    std::lock_guard<std::mutex> guard{mtx_};
    return error_;
  }

  void set_handler(std::function<void(const error&)> handler) {
    std::lock_guard<std::mutex> guard{mtx_};
    handler_ = std::move(handler);
  }

private:
  std::atomic<bool> lost_{false};
  std::mutex mtx_;
  error error_;                                // guarded by mtx_
  std::function<void(const error&)> handler_;  // guarded by mtx_
};

} // namespace troupe::persistence
