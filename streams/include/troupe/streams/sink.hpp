// sink<T, M>: an immutable blueprint of the end of a stream, consuming elements of
// type T; running a graph that ends in it yields M, its materialized value (a
// stream_future of the outcome for the sinks of sinks.hpp).
//
// Preparing a sink (done once per run, on the thread that calls run) creates its
// value and a function that builds its terminal stage inside the island; so the
// caller holds M before the stream starts.
//
// Thread-safety: an immutable value.
#pragma once

#include "troupe/streams/detail/stage.hpp"

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

private:
  prepare_fn prepare_;
};

} // namespace troupe::streams
