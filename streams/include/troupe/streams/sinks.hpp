// Sinks that consume in the island itself; each materializes a stream_future.
//
//   for_each<T>(f)          f(x) for every element; completion
//   ignore<T>()             consumes everything; completion
//   fold_sink<T>(zero, f)   stream_future<Acc> of f(...f(zero, x1)..., xn)
//   collect_all<T>(limit)   stream_future<std::vector<T>>; more than `limit` elements
//                           fail the stream with `oversize` (memory stays bounded)
//   head<T>()               stream_future<T> of the first element (not_found when
//                           empty); cancels upstream after it
//
// for_each's and fold_sink's functions run under the stream's supervision
// (supervision.hpp); an exception with stop fails the stream naming the sink.
#pragma once

#include "troupe/streams/detail/guarded.hpp"
#include "troupe/streams/sink.hpp"
#include "troupe/streams/source.hpp"
#include "troupe/streams/stream_future.hpp"

#include <memory>
#include <optional>
#include <utility>
#include <vector>

namespace troupe::streams {

namespace detail {

/// The terminal of a consuming sink. `Consumer` provides
///   bool consume(T& x)        false: the sink needs no more (upstream is cancelled)
///   expected<R> finish()      the value at completion
///   void restart()            for the restart directive
template <class T, class R, class Consumer>
class consuming_sink final : public terminal {
public:
  consuming_sink(island_context& ctx, outlet_ptr<T> up, decider d, std::string_view kind,
                 stream_promise<R> promise, Consumer c)
    : ctx_(ctx), up_(std::move(up)), decider_(std::move(d)), name_(ctx.stage_name(kind)),
      promise_(std::move(promise)), consumer_(std::move(c)) {}

  bool drive() override {
    for (int round = 0; round < 64; ++round) {
      batch_.clear();
      switch (up_->pull(batch_, ctx_.options().batch_size)) {
        case pull_status::ready:
          if (!consume_batch())
            return true;
          break;
        case pull_status::pending:
          return false;
        case pull_status::done:
          promise_.set(consumer_.finish());
          return true;
        case pull_status::failed:
          promise_.set(up_->failure());
          return true;
      }
    }
    ctx_.wake();
    return false;
  }

  void abort(const error& why) override { promise_.set(why); }

private:
  // False when the sink finished (it needs no more, or a failure stopped it).
  bool consume_batch() {
    auto end = guarded_loop(
      batch_.size(), [this](std::size_t i) { return consumer_.consume(batch_[i]); },
      [this](const error& e) { return user_failed(e); });
    if (end == loop_end::stopped_by_body) {
      up_->cancel();
      promise_.set(consumer_.finish());
    }
    return end == loop_end::completed;
  }

  bool user_failed(const error& e) {
    auto dir = decide(decider_, e);
    if (dir == directive::restart)
      consumer_.restart();
    if (dir != directive::stop)
      return true;
    up_->cancel();
    promise_.set(stage_error(ctx_, name_, e));
    return false;
  }

  island_context& ctx_;
  outlet_ptr<T> up_;
  decider decider_;
  std::string name_;
  stream_promise<R> promise_;
  Consumer consumer_;
  std::vector<T> batch_;
};

/// A sink<T, stream_future<R>> whose terminal is a consuming_sink of make_consumer().
template <class T, class R, class MakeConsumer>
sink<T, stream_future<R>> consuming(std::string_view kind, MakeConsumer make_consumer) {
  std::string k{kind};
  return sink<T, stream_future<R>>{[k, make_consumer] {
    stream_future<R> fut;
    stream_promise<R> promise{fut};
    typename sink<T, stream_future<R>>::attach_fn attach =
      [k, make_consumer, promise](island_context& ctx, const source<T>& src) -> terminal_ptr {
      auto d = ctx.current_decider;
      auto up = src.build(ctx);
      using consumer = decltype(make_consumer());
      return std::make_unique<consuming_sink<T, R, consumer>>(ctx, std::move(up), std::move(d), k,
                                                              promise, make_consumer());
    };
    return std::pair{std::move(fut), std::move(attach)};
  }};
}

template <class Acc, class F>
struct fold_consumer {
  Acc zero;
  Acc acc;
  F f;
  template <class T>
  bool consume(T& x) {
    acc = f(std::move(acc), std::move(x));
    return true;
  }
  expected<Acc> finish() { return std::move(acc); }
  void restart() { acc = zero; }
};

} // namespace detail

template <class T, class F>
sink<T, completion> for_each(F f) {
  struct consumer {
    F f;
    bool consume(T& x) {
      f(std::move(x));
      return true;
    }
    expected<void> finish() { return {}; }
    void restart() {}
  };
  return detail::consuming<T, void>("for_each", [f] { return consumer{f}; });
}

template <class T>
sink<T, completion> ignore() {
  return for_each<T>([](T&&) {});
}

template <class T, class Acc, class F>
sink<T, stream_future<Acc>> fold_sink(Acc zero, F f) {
  return detail::consuming<T, Acc>("fold", [zero, f] {
    return detail::fold_consumer<Acc, F>{zero, zero, f};
  });
}

template <class T>
sink<T, stream_future<std::vector<T>>> collect_all(std::size_t limit = 1'000'000) {
  struct consumer {
    std::size_t limit;
    std::vector<T> items;
    bool over = false;
    bool consume(T& x) {
      if (items.size() >= limit) {
        over = true;
        return false;
      }
      items.push_back(std::move(x));
      return true;
    }
    expected<std::vector<T>> finish() {
      if (over)
        return error{errc::oversize, "collect_all: the stream has more than "
                                       + std::to_string(limit) + " elements"};
      return std::move(items);
    }
    void restart() {}
  };
  return detail::consuming<T, std::vector<T>>("collect_all", [limit] { return consumer{limit, {}}; });
}

template <class T>
sink<T, stream_future<T>> head() {
  struct consumer {
    std::optional<T> first;
    bool consume(T& x) {
      first.emplace(std::move(x));
      return false;
    }
    expected<T> finish() {
      if (!first)
        return error{errc::not_found, "head: the stream completed without elements"};
      return std::move(*first);
    }
    void restart() {}
  };
  return detail::consuming<T, T>("head", [] { return consumer{}; });
}

} // namespace troupe::streams
