// sink<T, M>: an immutable blueprint of the end of a stream, consuming elements of
// type T; running a graph that ends in it yields M, its materialized value (a
// stream_future of the outcome for the sinks of sinks.hpp).
//
// Preparing a sink (done once per run, on the thread that calls run) creates its
// value and a function that builds its terminal stage inside the island; so the
// caller holds M before the stream starts.
//
// async(n) runs the sink in an island (actor) of its own: the counterpart of
// source::async at the end of a stream, and how one output of a fan-out
// (fan_out.hpp) runs apart from the others. with_decider(d) gives the sink its
// own supervision decider, as source::with_decider and flow::with_decider do for
// the stages before them.
//
// Thread-safety: an immutable value.
#pragma once

#include "troupe/streams/detail/exported_outlet.hpp"
#include "troupe/streams/detail/stage.hpp"
#include "troupe/streams/supervision.hpp"

#include <functional>
#include <utility>

namespace troupe::streams {

template <class T>
class source;

template <class T, class M>
class sink {
public:
  using element_type = T;
  using attach_fn =
    std::function<detail::terminal_ptr(detail::island_context&, const source<T>&)>;
  using prepare_fn = std::function<std::pair<M, attach_fn>()>;

  explicit sink(prepare_fn p) : prepare_(std::move(p)) {}

  /// A fresh materialized value and the builder of the terminal that feeds it.
  std::pair<M, attach_fn> prepare() const { return prepare_(); }

  /// This sink (with its stages) in an island of its own, fed through a buffer of
  /// `buffer` elements (0: the stream's buffer_size), which bounds the elements
  /// between the islands. The island before it ends only once the sink's island
  /// has ended. Needs source.hpp where it is called.
  sink async(std::size_t buffer = 0) const {
    auto inner = *this;
    return sink{[inner, buffer] {
      auto [mat, attach] = inner.prepare();
      attach_fn apart = [attach = std::move(attach), buffer](detail::island_context& ctx,
                                                             const source<T>& up) {
        return detail::attach_apart<T>(ctx, up, attach, buffer);
      };
      return std::pair{std::move(mat), std::move(apart)};
    }};
  }

  /// This sink, and the stages it contains (a flow's `to`), judge their failures
  /// with `d` (supervision.hpp): e.g. restart for fold_sink resets its
  /// accumulator, resume for for_each skips the element. The stages upstream keep
  /// theirs. Needs source.hpp where it is called.
  sink with_decider(decider d) const {
    auto inner = *this;
    return sink{[inner, d] {
      auto [mat, attach] = inner.prepare();
      attach_fn judged = [attach = std::move(attach), d](detail::island_context& ctx,
                                                         const source<T>& up) {
        auto outer = std::exchange(ctx.current_decider, d);
        // The upstream is built with the decider it had, not this sink's.
        source<T> upstream{[up, outer](detail::island_context& c) {
          auto own = std::exchange(c.current_decider, outer);
          auto out = up.build(c);
          c.current_decider = std::move(own);
          return out;
        }};
        auto t = attach(ctx, upstream);
        ctx.current_decider = std::move(outer);
        return t;
      };
      return std::pair{std::move(mat), std::move(judged)};
    }};
  }

private:
  prepare_fn prepare_;
};

} // namespace troupe::streams
