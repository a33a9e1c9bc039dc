// troupe's CAF scheduling policy: work stealing whose idle workers sleep until work
// arrives, instead of polling.
//
// CAF 0.17.6's work-stealing policy polls an empty queue 100 times, then sleeps
// 50 µs between 500 more polls (about 25-50 ms with Linux's timer slack), and only
// then waits on a condition variable that an enqueue signals. A message to an idle
// actor therefore waits up to ~100 µs for a polling worker to notice it (twice per
// cross-process round trip), and every worker that ran out of work keeps waking up
// 10-20 thousand times a second for tens of milliseconds, taking CPU from the
// journal's writer and the transport's I/O thread on a small machine.
//
// This policy:
// - a worker that ran out of work spins briefly (`spin_time`, stealing in between
//   and yielding the core to other runnable threads), then sleeps on a condition
//   variable; one that wakes from its idle timeout without work does not spin;
// - while the process awaits a completion from another thread (a journal write's
//   fsync: troupe/actors/detail/scheduler_hints.hpp) one spinning worker keeps
//   spinning for up to `spin_time_awaiting`, so the acknowledgement finds a
//   running worker;
// - an enqueue from outside the scheduler (I/O thread, journal writer, a non-actor
//   thread) goes to a spinning worker if there is one, else to a sleeping one,
//   which it wakes;
// - an actor that sends to another actor keeps the receiver on its own worker (CAF's
//   LIFO locality), but once its queue holds more than that one job it wakes a
//   sleeping worker to steal (unless one is already spinning), so a burst spreads
//   over the cores;
// - thieves take from the victim's head (O(1); CAF's take_tail walks the whole
//   queue while holding both of its locks);
// - a worker takes its queue's tail instead of its head once that job has waited
//   `fair_patience` takes (job_queue::take_next): LIFO locality keeps a chain of
//   actors that wake each other at the head for as long as it runs, and since
//   thieves take heads too, what was queued behind it (the I/O thread's packets,
//   timers) would otherwise wait until the chain ends, forever if it never does;
// - a worker's queue is a ring that allocates nothing per job (job_queue.hpp;
//   CAF's queue allocates a node each time an actor is scheduled);
// - a sleeping worker still looks for work to steal every `idle_timeout`.
//
// Thread-safety: the policy functions are called by CAF's coordinator and workers
// as CAF's own policies are; the only shared state is atomics and each worker's
// mutex. A sleeping worker costs no CPU but its idle_timeout wake-ups (a poll each).
#pragma once

#include <caf/policy/unprofiled.hpp>
#include <caf/resumable.hpp>
#include <caf/scheduler/abstract_coordinator.hpp>
#include <caf/scheduler/coordinator.hpp>
#include <caf/scheduler/worker.hpp>

#include "troupe/actors/detail/scheduler_hints.hpp"
#include "job_queue.hpp"
#include "scheduler_clock.hpp"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>

#include <sched.h>

namespace troupe::detail {

class wake_policy : public caf::policy::unprofiled {
public:
  using queue_type = job_queue;

  /// How long a worker that ran out of work keeps polling before it sleeps: long
  /// enough to catch the reply to a request it just sent (a local one in a few
  /// microseconds, one from another process in a few tens) without a futex wake-up.
  static constexpr std::chrono::microseconds spin_time{30};
  /// The same while a completion is awaited: longer than a one-event fsync (about
  /// 100-200 µs), short enough that a worker idle beside a long batch commit soon
  /// sleeps.
  static constexpr std::chrono::microseconds spin_time_awaiting{400};
  static constexpr int steal_every = 4;
  static constexpr int yield_every = 8;
  /// How many jobs a worker takes from its queue's head before the tail's turn
  /// (take_own): more than a burst of work (so a deferred flush still comes after
  /// it), few enough that what waits behind a chain of actors waits about a
  /// millisecond.
  static constexpr std::uint64_t fair_patience = 1024;
  /// How often a sleeping worker still looks for work to steal.
  static constexpr std::chrono::milliseconds idle_timeout{10};

  struct coordinator_data {
    explicit coordinator_data(caf::scheduler::abstract_coordinator*) {
    }
    std::atomic<std::size_t> next_worker{0};
    std::atomic<int> sleepers{0};  ///< workers waiting on their condition variable
    std::atomic<int> spinning{0};  ///< workers polling for work
  };

  struct worker_data {
    explicit worker_data(caf::scheduler::abstract_coordinator*) {
    }
    // The coordinator copies one initial value into each worker: start fresh.
    worker_data(const worker_data&) {
    }
    queue_type queue;
    std::mutex mtx;
    std::condition_variable cv;
    std::atomic<bool> sleeping{false};
    std::atomic<bool> spinning{false};
    bool woken = false;  // guarded by mtx: someone asked this worker to look for work
    std::uint32_t rng = 0x9e3779b9u;
  };

  template <class Coordinator>
  void central_enqueue(Coordinator* self, caf::resumable* job) {
    auto n = self->num_workers();
    auto first = self->data().next_worker.fetch_add(1, std::memory_order_relaxed);
    // A spinning worker takes it without a wake-up; else a sleeping one, woken;
    // else round robin. (Preferring sleepers would wake a thread per message while
    // another one spins idle.)
    auto pick = [&](auto&& wanted) -> caf::resumable* {
      for (std::size_t k = 0; k < n; ++k) {
        auto* w = self->worker_by_id((first + k) % n);
        if (wanted(w->data())) {
          w->external_enqueue(job);
          return job;
        }
      }
      return nullptr;
    };
    if (pick([](worker_data& d) { return d.spinning.load(std::memory_order_relaxed); })
        || pick([](worker_data& d) { return d.sleeping.load(std::memory_order_relaxed); }))
      return;
    self->worker_by_id(first % n)->external_enqueue(job);
  }

  template <class Worker>
  void external_enqueue(Worker* self, caf::resumable* job) {
    auto& d = self->data();
    d.queue.append(job);
    // Pairs with the fence in dequeue(): either the sleeper sees the job before it
    // waits, or we see it sleeping and wake it.
    handshake_barrier();
    if (d.sleeping.load(std::memory_order_relaxed))
      wake(d);
    else
      wake_idle(self->parent(), self->id());
  }

  template <class Worker>
  void internal_enqueue(Worker* self, caf::resumable* job) {
    enqueue_own(self, job, true);
  }

  /// The job used up its throughput budget: to the back of the queue.
  template <class Worker>
  void resume_job_later(Worker* self, caf::resumable* job) {
    enqueue_own(self, job, false);
  }

  /// Queues `job` last on `self`, the calling worker (after_queued_work.hpp).
  template <class Worker>
  static void append_own(Worker* self, caf::resumable* job) {
    enqueue_own(self, job, false);
  }

  template <class Worker>
  caf::resumable* dequeue(Worker* self) {
    auto& d = self->data();
    auto& shared = self->parent()->data();
    // Spin only when work is likely (a job just ran, or someone woke us): a worker
    // that merely timed out polls once and sleeps again, so idling costs nothing.
    bool expect_work = true;
    for (;;) {
      if (auto* job = expect_work ? spin(self) : poll(self))
        return job;
      std::unique_lock<std::mutex> guard{d.mtx};
      d.sleeping.store(true, std::memory_order_relaxed);
      shared.sleepers.fetch_add(1, std::memory_order_relaxed);
      // Pairs with the fences of the enqueuers: either they see this worker
      // sleeping (and wake it), or it sees their work here.
      handshake_barrier();
      expect_work = others_have_work(self)
                    || d.cv.wait_for(guard, idle_timeout,
                                     [&] { return d.woken || !d.queue.empty(); });
      d.woken = false;
      d.sleeping.store(false, std::memory_order_relaxed);
      shared.sleepers.fetch_sub(1, std::memory_order_relaxed);
    }
  }

  template <class Worker, class UnaryFunction>
  void foreach_resumable(Worker* self, UnaryFunction f) {
    while (auto* job = self->data().queue.take_head())
      f(job);
  }

  template <class Coordinator, class UnaryFunction>
  void foreach_central_resumable(Coordinator*, UnaryFunction) {
  }

private:
  /// The full barrier on both sides of the sleep/wake handshake (an enqueuer
  /// publishes work, then looks for sleepers; a worker marks itself sleeping, then
  /// looks for work). ThreadSanitizer does not model fences (GCC refuses them under
  /// -fsanitize=thread): there both sides instead do a seq_cst read-modify-write
  /// of one shared variable, which orders them the same way (the later RMW reads
  /// from the earlier and synchronizes with it), at the price of one contended
  /// cache line.
  static void handshake_barrier() noexcept {
#if defined(TROUPE_TSAN)
    static std::atomic<unsigned> shared_line{0};
    shared_line.fetch_add(0, std::memory_order_seq_cst);
#else
    std::atomic_thread_fence(std::memory_order_seq_cst);
#endif
  }

  static void wake(worker_data& d) {
    {
      std::lock_guard<std::mutex> guard{d.mtx};
      d.woken = true;
    }
    d.cv.notify_one();
  }

  /// Queues a job on the worker that runs the sender; once the queue holds more
  /// than that one job, an idle worker is woken to share it.
  template <class Worker>
  static void enqueue_own(Worker* self, caf::resumable* job, bool front) {
    auto& d = self->data();
    bool had_work = !d.queue.empty();
    if (front)
      d.queue.prepend(job);
    else
      d.queue.append(job);
    if (had_work)
      wake_idle(self->parent(), self->id());
  }

  /// The next job of the worker's own queue: the head (LIFO locality: what the
  /// job that just ran woke runs next), or the tail once it has waited
  /// `fair_patience` takes (job_queue::take_next). A chain of actors that wake each
  /// other stays at the head for as long as it runs, and thieves take heads too;
  /// without this, what was queued behind such a chain (a packet from the I/O
  /// thread, a timer, a deferred flush: after_queued_work.hpp) would wait until
  /// the chain ends, forever if it never does.
  template <class Worker>
  static caf::resumable* take_own(Worker* self) {
    return self->data().queue.take_next(fair_patience);
  }

  /// One look at its own queue and one steal attempt.
  template <class Worker>
  static caf::resumable* poll(Worker* self) {
    auto* job = take_own(self);
    return job != nullptr ? job : try_steal(self);
  }

  /// Polls its own queue for up to spin_time, stealing every steal_every polls and
  /// yielding the core every yield_every polls (a spinning worker must not keep the
  /// thread that produces its work, e.g. the I/O thread, off the core).
  template <class Worker>
  static caf::resumable* spin(Worker* self) {
    auto& d = self->data();
    // Most calls find a job at once: take it before the spin's bookkeeping (its
    // clock read was 2% of the worker's time in entity_ask_local).
    if (auto* job = take_own(self))
      return job;
    auto& shared = self->parent()->data();
    shared.spinning.fetch_add(1, std::memory_order_relaxed);
    spinning_workers().fetch_add(1, std::memory_order_relaxed);
    d.spinning.store(true, std::memory_order_relaxed);
    caf::resumable* job = nullptr;
    auto start = std::chrono::steady_clock::now();
    for (int i = 1; job == nullptr; ++i) {
      job = take_own(self);
      if (job == nullptr && i % steal_every == 0)
        job = try_steal(self);
      if (job != nullptr)
        break;
      if (i % yield_every == 0) {
        // Past spin_time only one worker keeps polling for an awaited completion:
        // more would only take cores from the thread that completes it.
        auto spun = std::chrono::steady_clock::now() - start;
        if (spun >= spin_time
            && (spun >= spin_time_awaiting
                || awaited_completions().load(std::memory_order_relaxed) == 0
                || shared.spinning.load(std::memory_order_relaxed) > 1))
          break;
        sched_yield();
      } else {
        cpu_relax();
      }
    }
    d.spinning.store(false, std::memory_order_relaxed);
    spinning_workers().fetch_sub(1, std::memory_order_relaxed);
    shared.spinning.fetch_sub(1, std::memory_order_relaxed);
    return job;
  }

  template <class Worker>
  static bool others_have_work(Worker* self) {
    auto* p = self->parent();
    for (std::size_t i = 0; i < p->num_workers(); ++i)
      if (i != self->id() && !p->worker_by_id(i)->data().queue.empty())
        return true;
    return false;
  }

  /// Wakes one sleeping worker other than `self_id` to steal, unless a worker is
  /// already looking for work. Callers just made work available.
  template <class Coordinator>
  static void wake_idle(Coordinator* parent, std::size_t self_id) {
    auto& shared = parent->data();
    handshake_barrier();
    if (shared.sleepers.load(std::memory_order_relaxed) == 0
        || shared.spinning.load(std::memory_order_relaxed) > 0)
      return;
    auto n = parent->num_workers();
    for (std::size_t k = 1; k < n; ++k) {
      auto& d = parent->worker_by_id((self_id + k) % n)->data();
      if (d.sleeping.load(std::memory_order_relaxed)) {
        wake(d);
        return;
      }
    }
  }

  template <class Worker>
  static caf::resumable* try_steal(Worker* self) {
    auto* p = self->parent();
    auto n = p->num_workers();
    if (n < 2)
      return nullptr;
    auto& d = self->data();
    d.rng = d.rng * 1664525u + 1013904223u;
    auto start = static_cast<std::size_t>(d.rng >> 8) % n;
    for (std::size_t k = 0; k < n; ++k) {
      auto victim = (start + k) % n;
      if (victim == self->id())
        continue;
      auto& q = p->worker_by_id(victim)->data().queue;
      if (q.empty())
        continue;
      if (auto* job = q.take_head())
        return job;
    }
    return nullptr;
  }
};

} // namespace troupe::detail

// CAF's worker loop for wake_policy, as caf/scheduler/worker.hpp has it minus one
// line. Debian's CAF 0.17.6 is built with CAF_LOG_LEVEL defined (QUIET), so its loop
// runs CAF_PUSH_AID_FROM_PTR(dynamic_cast<abstract_actor*>(job)) for every job it
// resumes: a cross-cast from resumable to abstract_actor, which libstdc++ resolves
// by walking the actor's class hierarchy with string compares of type names. That
// only feeds CAF's logger (the actor id of the running thread), which a QUIET
// build never prints; it was 7-8% of the worker's time in the persist benchmark
// (perf, 2026-12-03: __dynamic_cast, __do_dyncast and strcmp under worker::run).
template <>
inline void caf::scheduler::worker<troupe::detail::wake_policy>::run() {
  CAF_SET_LOGGER_SYS(&system());
  for (;;) {
    auto job = policy_.dequeue(this);
    CAF_ASSERT(job != nullptr);
    CAF_ASSERT(job->subtype() != resumable::io_actor);
    policy_.before_resume(this, job);
    auto res = job->resume(this, max_throughput_);
    policy_.after_resume(this, job);
    switch (res) {
      case resumable::resume_later:
        // It stays in the loop: keep the reference.
        policy_.resume_job_later(this, job);
        break;
      case resumable::done:
        policy_.after_completion(this, job);
        intrusive_ptr_release(job);
        break;
      case resumable::awaiting_message:
        // It may be enqueued again later: drop the reference for now.
        intrusive_ptr_release(job);
        break;
      case resumable::shutdown_execution_unit:
        policy_.after_completion(this, job);
        policy_.before_shutdown(this);
        return;
    }
  }
}

namespace troupe::detail {

/// The scheduler of a troupe node: CAF's coordinator with wake_policy and
/// scheduler_clock. Load it with `cfg.load<troupe::detail::scheduler>()`.
class scheduler final : public caf::scheduler::coordinator<wake_policy> {
public:
  using super = caf::scheduler::coordinator<wake_policy>;

  explicit scheduler(caf::actor_system& sys) : super(sys) {
  }

  static caf::actor_system::module* make(caf::actor_system& sys, caf::detail::type_list<>) {
    return new scheduler(sys);
  }

  caf::detail::thread_safe_actor_clock& clock() noexcept override {
    return clock_;
  }

protected:
  void start() override {
    clock_.start(system());
    super::start();
  }

  // CAF's own clock thread (started by super, never given a timer) stops with it;
  // ours after the workers, which may still set timers while they stop.
  void stop() override {
    super::stop();
    clock_.stop();
  }

private:
  scheduler_clock clock_;
};

} // namespace troupe::detail
