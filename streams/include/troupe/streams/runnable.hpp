// runnable<M>: a source connected to a sink; run() starts it on a node.
//
//   auto r = source.to(fold<int>(0, std::plus<>{})).run(node);  // expected<stream_future<int>>
//   auto sum = r->wait(5s);
//
// run() spawns the stream's first island under the node's guardian (so
// node::shutdown stops it; its sink's value then fails with shutting_down); every
// further island is spawned and linked by the island downstream of it, forming a
// tree under the guardian. A failed stage fails the stream: the sink's value
// holds an error naming the stream and the stage, and every island stops.
//
// Thread-safety: run() may be called from any thread that is not an actor (it
// waits for the guardian to adopt the island).
#pragma once

#include "troupe/actors/expected.hpp"
#include "troupe/streams/sink.hpp"
#include "troupe/streams/source.hpp"
#include "troupe/streams/stream_options.hpp"

#include <functional>
#include <utility>

namespace troupe {
class node;
} // namespace troupe

namespace troupe::streams {

namespace detail {
/// Starts the first island of a stream under the node's guardian.
expected<caf::actor> spawn_stream(node& n, stream_options opts, island_builder build);
} // namespace detail

template <class M>
class runnable {
public:
  using start_fn = std::function<std::pair<M, detail::island_builder>()>;

  explicit runnable(start_fn f) : start_(std::move(f)) {}

  expected<M> run(node& n, stream_options opts = {}) const {
    auto [mat, build] = start_();
    auto started = detail::spawn_stream(n, std::move(opts), std::move(build));
    if (!started)
      return std::move(started).error();
    return std::move(mat);
  }

private:
  start_fn start_;
};

template <class T>
template <class M>
runnable<M> source<T>::to(const sink<T, M>& s) const {
  auto src = *this;
  return runnable<M>{[src, s] {
    auto [mat, attach] = s.prepare();
    detail::island_builder build = [src, attach = std::move(attach)](detail::island_context& ctx) {
      return attach(ctx, src);
    };
    return std::pair{std::move(mat), std::move(build)};
  }};
}

} // namespace troupe::streams
