// Running user functions over a batch under supervision: an exception becomes an
// error value that the caller's failure handler judges (the decider).
#pragma once

#include "troupe/actors/error.hpp"

#include <cstddef>
#include <exception>

namespace troupe::streams::detail {

enum class loop_end { completed, stopped_by_body, stopped_by_failure };

/// Calls body(i) for i in [0, n) while it returns true. When body throws at i,
/// on_failure(error) says whether to go on (skipping element i).
template <class Body, class OnFailure>
loop_end guarded_loop(std::size_t n, Body&& body, OnFailure&& on_failure) {
  std::size_t i = 0;
  while (i < n) {
    try {
      for (; i < n; ++i)
        if (!body(i))
          return loop_end::stopped_by_body;
      return loop_end::completed;
    } catch (const std::exception& e) {
      if (!on_failure(error{errc::actor_failed, e.what()}))
        return loop_end::stopped_by_failure;
    } catch (...) {
      if (!on_failure(error{errc::actor_failed, "an unknown exception"}))
        return loop_end::stopped_by_failure;
    }
    ++i;
  }
  return loop_end::completed;
}

} // namespace troupe::streams::detail
