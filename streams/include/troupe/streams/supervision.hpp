// Supervision of stream stages: what a stage does when the user function it runs
// fails (throws, or an async call answers with an error).
//
//   source.via(map([](int x) { return parse(x); }))
//         .with_decider([](const troupe::error&) { return directive::resume; });
//
//   stop     the stage fails, and the stream with it, with an error naming the stage
//            (the default);
//   resume   the element is dropped, the stage keeps its state and goes on;
//   restart  the element is dropped and the stage starts over with its initial
//            state (scan, fold, stateful_map_concat: their accumulator).
// Stages that run no user function ignore the decider. A decider applies to the
// stages built inside the blueprint it was attached to (not to stages added later).
#pragma once

#include "troupe/actors/error.hpp"

#include <functional>

namespace troupe::streams {

enum class directive { stop, resume, restart };

using decider = std::function<directive(const error&)>;

} // namespace troupe::streams
