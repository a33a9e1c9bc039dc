// source<T>: an immutable blueprint of a stream that emits elements of type T.
//
//   auto s = from_range(1, 1'000'000)
//              .via(map([](int x) { return x * 2; }))
//              .via(filter([](int x) { return x % 3 == 0; }))
//              .async()                                   // boundary: a new actor
//              .via(take(10));
//   auto done = s.to(for_each<int>(print)).run(node);
//
// A blueprint describes; running it (runnable::run) materializes fresh stages, so
// one blueprint can run many times, concurrently. Consecutive stages run fused in
// one actor (an island) and pass elements by plain calls, in batches of up to
// stream_options::batch_size; async() ends an island: the stages before it run in
// an actor of their own and hand elements over through a bounded buffer with
// batched demand (detail/boundary.hpp).
//
// Thread-safety: a blueprint is an immutable value; copy and use it from any thread.
#pragma once

#include "troupe/streams/detail/boundary.hpp"
#include "troupe/streams/detail/stage.hpp"

#include <functional>
#include <memory>
#include <type_traits>
#include <utility>

namespace troupe::streams {

template <class T, class M>
class sink;
template <class T>
class source;

namespace detail {
template <class T>
source<T> async_source(const source<T>& inner, std::size_t buffer, overflow_strategy overflow);
} // namespace detail

template <class M>
class runnable;

template <class T>
class source {
public:
  using element_type = T;
  using builder = std::function<detail::outlet_ptr<T>(detail::island_context&)>;

  explicit source(builder b) : build_(std::make_shared<const builder>(std::move(b))) {}

  /// Materializes this blueprint's stages in an island (internal).
  detail::outlet_ptr<T> build(detail::island_context& ctx) const { return (*build_)(ctx); }

  /// Appends a flow or an operator (any callable from source<T> to source<U>).
  template <class Op>
    requires std::is_invocable_v<const Op&, const source<T>&>
  auto via(const Op& op) const {
    return op(*this);
  }

  /// Connects a sink: a runnable graph whose run() yields the sink's value.
  template <class M>
  runnable<M> to(const sink<T, M>& s) const;

  /// Ends the island here: the stages so far run in an actor of their own and
  /// pass elements downstream through a buffer of `buffer` elements (0: the
  /// stream's buffer_size). The buffer bounds the elements between the islands.
  source async(std::size_t buffer = 0) const {
    return detail::async_source(*this, buffer, overflow_strategy::backpressure);
  }

  /// Stages built by this blueprint (those before this call) use `d` when their
  /// user function fails (supervision.hpp).
  source with_decider(decider d) const {
    auto inner = *this;
    return source{[inner, d](detail::island_context& ctx) {
      auto outer = std::exchange(ctx.current_decider, d);
      auto out = inner.build(ctx);
      ctx.current_decider = std::move(outer);
      return out;
    }};
  }

private:
  std::shared_ptr<const builder> build_;
};

namespace detail {

/// `inner` in an island of its own, feeding a boundary of `buffer` elements.
template <class T>
source<T> async_source(const source<T>& inner, std::size_t buffer, overflow_strategy overflow) {
  return source<T>{[inner, buffer, overflow](island_context& ctx) -> outlet_ptr<T> {
    auto b = buffer ? buffer : ctx.options().buffer_size;
    auto d = ctx.current_decider;
    auto build_upstream = [inner, d](island_context& uctx) {
      uctx.current_decider = d;
      return inner.build(uctx);
    };
    return std::make_unique<boundary_in<T>>(ctx, std::move(build_upstream), b, overflow);
  }};
}

template <class S>
struct is_source : std::false_type {};
template <class T>
struct is_source<source<T>> : std::true_type {};

/// A source whose builder makes one stage from its upstream: `make(ctx, up)`,
/// where up is the built upstream outlet. The decider in effect is read before
/// the upstream is built.
template <class Out, class In, class Make>
source<Out> stage_source(const source<In>& up, Make make) {
  return source<Out>{[up, make](island_context& ctx) -> outlet_ptr<Out> {
    auto d = ctx.current_decider;
    auto built = up.build(ctx);
    return make(ctx, std::move(built), std::move(d));
  }};
}

} // namespace detail

} // namespace troupe::streams
