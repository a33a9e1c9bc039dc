// queue_source<T>(capacity): a source fed from outside the stream through a
// bounded queue whose offer() answers at once (Akka's BoundedSourceQueue):
//
//   auto [src, queue] = queue_source<int>(100);
//   auto done = src.to(for_each<int>(handle)).run(node);
//   switch (queue.offer(42)) { case offer_result::enqueued: ...
//                              case offer_result::dropped:  ... // full: retry later
//                              case offer_result::closed:   ... } // stream ended
//   queue.complete();   // the stream completes after the queued elements
//
// Memory is bounded by `capacity` whatever the producer does: an offer to a full
// queue is dropped, never held (akka/akka-core#25798: Source.queue grew without
// bound). The source runs once; running it again fails that stream with
// invalid_argument. Offers made before the stream starts wait in the queue.
//
// Thread-safety: source_queue's members may be called from any thread.
#pragma once

#include "troupe/streams/detail/lifeline.hpp"
#include "troupe/streams/source.hpp"

#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <utility>

namespace troupe::streams {

enum class offer_result { enqueued, dropped, closed };

namespace detail {

template <class T>
struct queue_state {
  std::mutex mtx;
  std::size_t capacity = 1;
  std::deque<T> items;
  bool completed = false;  ///< complete() or fail() called: no more offers
  bool closed = false;     ///< the stream ended: offers answer closed
  bool materialized = false;
  error failure;
  std::function<void()> wake;  ///< set while a stream runs
};

template <class T>
class queue_stage final : public outlet<T> {
public:
  queue_stage(island_context& ctx, std::shared_ptr<queue_state<T>> st) : st_(std::move(st)) {
    auto post = ctx.poster();
    std::lock_guard<std::mutex> lock{st_->mtx};
    st_->wake = [post, guard = life_.token(), &ctx] {
      post([guard, &ctx] {
        if (guard.lock())
          ctx.wake();
      });
    };
  }
  ~queue_stage() override { close(); }

  pull_status pull(std::vector<T>& out, std::size_t max) override {
    std::lock_guard<std::mutex> lock{st_->mtx};
    std::size_t k = 0;
    for (; k < max && !st_->items.empty(); ++k) {
      out.push_back(std::move(st_->items.front()));
      st_->items.pop_front();
    }
    if (k > 0)
      return pull_status::ready;
    if (!st_->completed)
      return pull_status::pending;
    st_->closed = true;
    return st_->failure ? this->fail_with(st_->failure) : pull_status::done;
  }
  void cancel() override { close(); }

private:
  void close() {
    std::lock_guard<std::mutex> lock{st_->mtx};
    st_->closed = true;
    st_->items.clear();
    st_->wake = nullptr;
  }
  std::shared_ptr<queue_state<T>> st_;
  lifeline life_;
};

} // namespace detail

template <class T>
class source_queue {
public:
  explicit source_queue(std::shared_ptr<detail::queue_state<T>> st) : st_(std::move(st)) {}

  offer_result offer(T x) const {
    std::function<void()> wake;
    {
      std::lock_guard<std::mutex> lock{st_->mtx};
      if (st_->closed || st_->completed)
        return offer_result::closed;
      if (st_->items.size() >= st_->capacity)
        return offer_result::dropped;
      st_->items.push_back(std::move(x));
      if (st_->items.size() == 1)
        wake = st_->wake;  // the stream may be waiting for the first element
    }
    if (wake)
      wake();
    return offer_result::enqueued;
  }

  /// The stream completes once the queued elements are consumed.
  void complete() const { finish(error{}); }
  /// The stream fails with `why` once the queued elements are consumed.
  void fail(error why) const { finish(std::move(why)); }

  std::size_t size() const {
    std::lock_guard<std::mutex> lock{st_->mtx};
    return st_->items.size();
  }

private:
  void finish(error why) const {
    std::function<void()> wake;
    {
      std::lock_guard<std::mutex> lock{st_->mtx};
      if (st_->completed || st_->closed)
        return;
      st_->completed = true;
      st_->failure = std::move(why);
      wake = st_->wake;
    }
    if (wake)
      wake();
  }
  std::shared_ptr<detail::queue_state<T>> st_;
};

template <class T>
std::pair<source<T>, source_queue<T>> queue_source(std::size_t capacity) {
  auto st = std::make_shared<detail::queue_state<T>>();
  st->capacity = capacity == 0 ? 1 : capacity;
  source<T> src{[st](detail::island_context& ctx) -> detail::outlet_ptr<T> {
    {
      std::lock_guard<std::mutex> lock{st->mtx};
      if (st->materialized) {
        struct refused final : detail::outlet<T> {
          detail::pull_status pull(std::vector<T>&, std::size_t) override {
            return this->fail_with(error{errc::invalid_argument,
                                         "queue_source: this queue already fed a stream; "
                                         "a queue source runs once"});
          }
          void cancel() override {}
        };
        return std::make_unique<refused>();
      }
      st->materialized = true;
    }
    return std::make_unique<detail::queue_stage<T>>(ctx, st);
  }};
  return {std::move(src), source_queue<T>{st}};
}

} // namespace troupe::streams
