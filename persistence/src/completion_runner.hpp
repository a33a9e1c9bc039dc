// Internal: where the journal writer's completions run (journal_service.cpp).
//
// A committed group commit of thousands of writes used to end with the writer
// itself running every write's callback: for an entity that is a CAF enqueue (a
// message allocated, the actor scheduled), and then the batch's writes, allocated
// by the submitting threads, were freed there too. That was about a sixth of the
// writer's time, during which it could not start the next batch, and the writer
// was what limited `persist` (docs/benchmarks.md). The writer now hands each
// finished batch (and each writer op's result) to this runner, and goes on.
//
// Order: jobs run one at a time, in the order handed in, so callbacks run in
// commit order, as before. A light job (a batch of a few writes) runs on the
// calling thread when nothing handed in earlier is still pending or running: a
// single write is acknowledged without a thread hop (persist_latency).
//
// Thread-safety: run() is called by one thread at a time (the journal's writer,
// or stop() after it); stop() may be called from any thread, after the writer
// ended. The destructor stops.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

namespace troupe::persistence::detail {

class completion_runner {
public:
  using job = std::function<void()>;

  /// Jobs whose weight is below `inline_below` run inline when nothing is pending.
  explicit completion_runner(std::size_t inline_below)
    : inline_below_(inline_below), thread_([this] { loop(); }) {}

  ~completion_runner() { stop(); }

  completion_runner(const completion_runner&) = delete;
  completion_runner& operator=(const completion_runner&) = delete;

  /// Runs `j` after every job handed in before it. `weight`: how many callbacks
  /// it runs.
  void run(job j, std::size_t weight) {
    {
      std::unique_lock<std::mutex> lock{mtx_};
      bool idle = jobs_.empty() && !running_;
      if (!stopping_ && !(idle && weight < inline_below_)) {
        jobs_.push_back(std::move(j));
        lock.unlock();
        cv_.notify_one();
        return;
      }
    }
    // Nothing earlier is pending, and only this thread hands jobs in: running it
    // here keeps the order. (After stop() the thread is gone; run() is never
    // called while stop() runs.)
    j();
  }

  /// Runs every pending job, then ends the thread. Idempotent.
  void stop() {
    {
      std::lock_guard<std::mutex> guard{mtx_};
      if (stopping_)
        return;
      stopping_ = true;
    }
    cv_.notify_one();
    thread_.join();
  }

private:
  void loop() {
    std::unique_lock<std::mutex> lock{mtx_};
    for (;;) {
      cv_.wait(lock, [this] { return !jobs_.empty() || stopping_; });
      if (jobs_.empty())
        return;  // stopping, and everything handed in ran
      auto j = std::move(jobs_.front());
      jobs_.pop_front();
      running_ = true;
      lock.unlock();
      j();
      j = nullptr;  // what it holds (the batch) is freed before the next job
      lock.lock();
      running_ = false;
    }
  }

  const std::size_t inline_below_;
  std::mutex mtx_;
  std::condition_variable cv_;
  std::deque<job> jobs_;  ///< guarded by mtx_
  bool running_ = false;  ///< guarded by mtx_: the thread runs a job
  bool stopping_ = false; ///< guarded by mtx_: stop() began; jobs run inline
  std::thread thread_;    ///< last: starts once the members above exist
};

} // namespace troupe::persistence::detail
