// stream_future<T>: the outcome of a running stream (or of one of its sinks), set
// exactly once by the stream and read from any thread.
//
//   auto done = source.to(for_each<int>(print)).run(node);   // expected<completion>
//   auto r = done->wait(5s);    // expected<void>: completed, or the error naming the stage
//
// Thread-safety: every member may be called from any thread. Callbacks added with
// on_complete run once, on the thread that sets the value (an island's actor
// thread), or at once on the caller's thread when the value is already set; they
// must be short and must not block.
#pragma once

#include "troupe/actors/config.hpp"
#include "troupe/actors/expected.hpp"

#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <utility>
#include <vector>

namespace troupe::streams {

namespace detail {

template <class T>
struct future_state {
  std::mutex mtx;
  std::condition_variable cv;
  std::optional<expected<T>> value;
  std::vector<std::function<void(const expected<T>&)>> callbacks;
};

} // namespace detail

template <class T>
class stream_promise;

template <class T>
class stream_future {
public:
  stream_future() : st_(std::make_shared<detail::future_state<T>>()) {}

  /// The outcome, or a timeout error naming how long it waited.
  expected<T> wait(duration timeout) const {
    std::unique_lock<std::mutex> lock{st_->mtx};
    if (!st_->cv.wait_for(lock, timeout, [&] { return st_->value.has_value(); }))
      return error{errc::timeout, "the stream did not finish within the wait"};
    return *st_->value;
  }

  bool ready() const {
    std::lock_guard<std::mutex> guard{st_->mtx};
    return st_->value.has_value();
  }

  void on_complete(std::function<void(const expected<T>&)> f) const {
    std::unique_lock<std::mutex> lock{st_->mtx};
    if (!st_->value) {
      st_->callbacks.push_back(std::move(f));
      return;
    }
    auto v = *st_->value;
    lock.unlock();
    f(v);
  }

private:
  friend class stream_promise<T>;
  std::shared_ptr<detail::future_state<T>> st_;
};

/// A stream run to completion: success or the error that failed it.
using completion = stream_future<void>;

/// The writing side; the first set() wins, later ones are ignored.
template <class T>
class stream_promise {
public:
  explicit stream_promise(const stream_future<T>& f) : st_(f.st_) {}

  /// Returns false when a value was already set.
  bool set(expected<T> v) const {
    std::unique_lock<std::mutex> lock{st_->mtx};
    if (st_->value)
      return false;
    st_->value.emplace(std::move(v));
    auto callbacks = std::move(st_->callbacks);
    auto copy = *st_->value;
    lock.unlock();
    st_->cv.notify_all();
    for (auto& f : callbacks)
      f(copy);
    return true;
  }

  bool is_set() const {
    std::lock_guard<std::mutex> guard{st_->mtx};
    return st_->value.has_value();
  }

private:
  std::shared_ptr<detail::future_state<T>> st_;
};

} // namespace troupe::streams
