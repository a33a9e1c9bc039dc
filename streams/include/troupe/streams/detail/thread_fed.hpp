// thread_fed_stage<T>: a source stage fed by a thread of its own, for producers
// that block (journal reads: SQLite calls never run on an actor thread). The
// thread hands batches over through a queue of at most `capacity` elements and
// blocks while it is full, so the stream's demand paces the thread.
//
// Thread-safety: the producer runs on the stage's thread and talks to the stage
// only through feed (mutex + condition variable); the stage's members run on the
// island. Destroying the stage cancels the feed and joins the thread (waiting for
// at most the producer's current blocking call).
#pragma once

#include "troupe/streams/detail/lifeline.hpp"
#include "troupe/streams/detail/stage.hpp"

#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace troupe::streams::detail {

template <class T>
class feed {
public:
  feed(std::size_t capacity, std::function<void()> wake) : capacity_(capacity), wake_(std::move(wake)) {}

  /// Producer side: blocks while the queue is full; false once cancelled.
  bool push(std::vector<T>&& batch) {
    std::unique_lock<std::mutex> lock{mtx_};
    for (auto& x : batch) {
      cv_.wait(lock, [&] { return cancelled_ || items_.size() < capacity_; });
      if (cancelled_)
        return false;
      items_.push_back(std::move(x));
      if (items_.size() == 1)
        wake_();
    }
    return !cancelled_;
  }
  /// Producer side: the end (empty error) or a failure.
  void finish(error why) {
    std::lock_guard<std::mutex> lock{mtx_};
    finished_ = true;
    failure_ = std::move(why);
    wake_();
  }
  /// Producer side: waits up to `d`; false once cancelled.
  bool pause(duration d) {
    std::unique_lock<std::mutex> lock{mtx_};
    cv_.wait_for(lock, d, [&] { return cancelled_; });
    return !cancelled_;
  }

  /// Stage side.
  pull_status take(std::vector<T>& out, std::size_t max, error& failure) {
    std::lock_guard<std::mutex> lock{mtx_};
    std::size_t k = 0;
    for (; k < max && !items_.empty(); ++k) {
      out.push_back(std::move(items_.front()));
      items_.pop_front();
    }
    if (k > 0) {
      cv_.notify_all();
      return pull_status::ready;
    }
    if (!finished_)
      return pull_status::pending;
    if (!failure_)
      return pull_status::done;
    failure = failure_;
    return pull_status::failed;
  }
  void cancel() {
    std::lock_guard<std::mutex> lock{mtx_};
    cancelled_ = true;
    cv_.notify_all();
  }

private:
  std::mutex mtx_;
  std::condition_variable cv_;
  std::deque<T> items_;
  std::size_t capacity_;
  std::function<void()> wake_;
  bool finished_ = false;
  bool cancelled_ = false;
  error failure_;
};

template <class T>
class thread_fed_stage final : public outlet<T> {
public:
  using producer = std::function<void(feed<T>&)>;

  thread_fed_stage(island_context& ctx, std::size_t capacity, producer run) {
    auto post = ctx.poster();
    auto wake = [post, guard = life_.token(), &ctx] {
      post([guard, &ctx] {
        if (guard.lock())
          ctx.wake();
      });
    };
    feed_ = std::make_shared<feed<T>>(capacity, std::move(wake));
    thread_ = std::thread{[f = feed_, run = std::move(run)] { run(*f); }};
  }
  ~thread_fed_stage() override {
    feed_->cancel();
    if (thread_.joinable())
      thread_.join();
  }

  pull_status pull(std::vector<T>& out, std::size_t max) override {
    return feed_->take(out, max, this->failure_);
  }
  void cancel() override { feed_->cancel(); }

private:
  lifeline life_;
  std::shared_ptr<feed<T>> feed_;
  std::thread thread_;
};

} // namespace troupe::streams::detail
