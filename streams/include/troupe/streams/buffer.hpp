// buffer(n, strategy): decouples the stages before it from those after it with a
// buffer of n elements. Like async(n), it ends an island: the stages before it run
// in an actor of their own. With `backpressure` the upstream waits when the buffer
// is full; with a dropping strategy it never waits and the buffer keeps its bound
// by dropping (stream_options.hpp: overflow_strategy); with `fail` a full buffer
// fails the stream with errc::overloaded naming the stage.
#pragma once

#include "troupe/streams/source.hpp"

namespace troupe::streams {

inline auto buffer(std::size_t n, overflow_strategy strategy) {
  return [n, strategy](const auto& src) {
    return detail::async_source(src, n == 0 ? 1 : n, strategy);
  };
}

} // namespace troupe::streams
