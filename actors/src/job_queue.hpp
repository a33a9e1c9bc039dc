// Internal: a scheduler worker's queue of runnable jobs (actors), a growable ring
// of pointers under a spin lock.
//
// Why not CAF's caf::detail::double_ended_queue: it allocates a node for every job
// it holds and frees it when the job is taken, so each time an actor is scheduled
// the worker paid a malloc and a free (two of each per persisted event in the
// persist benchmark: the entity scheduled for the command and for its write's
// acknowledgement). The ring allocates only when it grows, and it holds at most
// one entry per actor (an actor is queued at most once at a time) besides the
// deferred messages of after_queued_work.hpp (one per pending region flush), so
// it stops growing at the number of jobs runnable at once.
//
// Fairness: jobs prepended keep running before the tail for as long as they come
// (a chain of actors that wake each other), so take_next() takes the tail instead
// of the head once it has waited `patience` takes since it became the tail.
//
// Every operation is a few dozen nanoseconds under the lock, contended only by
// another thread enqueueing (the I/O thread, the journal's completion thread) or
// stealing at the same moment. empty() takes no lock: it reads a counter that the
// locked operations keep, for the scheduler's sleep/wake handshake (which puts
// its own fences around it) and for a thief's cheap look.
//
// Thread-safety: every member may be called from any thread.
#pragma once

#include "spin_lock.hpp"

#include <caf/resumable.hpp>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <mutex>
#include <vector>

namespace troupe::detail {

class job_queue {
public:
  job_queue() : ring_(initial_capacity) {
  }

  job_queue(const job_queue&) = delete;
  job_queue& operator=(const job_queue&) = delete;

  /// Whether the queue held no job at the time of the read.
  bool empty() const noexcept { return size_.load(std::memory_order_relaxed) == 0; }

  /// Queues `job` behind the others.
  void append(caf::resumable* job) {
    std::lock_guard<spin_lock> guard{lock_};
    make_room();
    auto n = count();
    ring_[index(n)] = job;
    size_.store(n + 1, std::memory_order_relaxed);
    tail_since_ = takes_;
  }

  /// Queues `job` before the others (it runs next).
  void prepend(caf::resumable* job) {
    std::lock_guard<spin_lock> guard{lock_};
    if (count() == 0)
      tail_since_ = takes_;  // it is the tail too
    make_room();
    head_ = head_ == 0 ? ring_.size() - 1 : head_ - 1;
    ring_[head_] = job;
    size_.store(count() + 1, std::memory_order_relaxed);
  }

  /// The first job, taken out of the queue; null if there is none.
  caf::resumable* take_head() {
    return take_next(std::numeric_limits<std::uint64_t>::max());
  }

  /// The first job, or the last one if that has waited `patience` takes or more
  /// since it became the last (each job then waits at most `patience` takes per
  /// job ahead of it, however many are prepended); null if there is none.
  caf::resumable* take_next(std::uint64_t patience) {
    if (empty())
      return nullptr;
    std::lock_guard<spin_lock> guard{lock_};
    auto n = count();
    if (n == 0)
      return nullptr;
    if (n >= 2 && takes_ - tail_since_ >= patience) {
      auto* job = ring_[index(n - 1)];
      size_.store(n - 1, std::memory_order_relaxed);
      tail_since_ = takes_;  // the next one waits its turn from now
      return job;
    }
    auto* job = ring_[head_];
    head_ = index(1);
    size_.store(n - 1, std::memory_order_relaxed);
    ++takes_;
    return job;
  }

private:
  static constexpr std::size_t initial_capacity = 64;

  /// The slot `k` places after the head (k < 2 * capacity).
  std::size_t index(std::size_t k) const noexcept {
    auto i = head_ + k;
    return i < ring_.size() ? i : i - ring_.size();
  }

  /// The number of jobs, exact under the lock (every change is made under it).
  std::size_t count() const noexcept { return size_.load(std::memory_order_relaxed); }

  /// Doubles the ring when it is full, the jobs moved to its start in order.
  void make_room() {
    auto n = count();
    if (n < ring_.size())
      return;
    std::vector<caf::resumable*> bigger(ring_.size() * 2);
    for (std::size_t k = 0; k < n; ++k)
      bigger[k] = ring_[index(k)];
    ring_.swap(bigger);
    head_ = 0;
  }

  spin_lock lock_;
  std::vector<caf::resumable*> ring_;  // guarded by lock_
  std::size_t head_ = 0;               // guarded by lock_
  std::uint64_t takes_ = 0;            // heads taken so far; guarded by lock_
  std::uint64_t tail_since_ = 0;       // takes_ when the tail became the tail; guarded by lock_
  /// The number of jobs: changed under lock_, read without it by empty().
  std::atomic<std::size_t> size_{0};
};

} // namespace troupe::detail
