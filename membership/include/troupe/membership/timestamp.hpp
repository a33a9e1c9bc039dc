// The time deterministic cores work in: a duration since an arbitrary origin that
// the caller chooses (the shell: steady_clock's epoch; the simulator: virtual time
// zero). Cores never read a clock; every input carries `now`.
#pragma once

#include <chrono>

namespace troupe::membership {

using timestamp = std::chrono::nanoseconds;
using duration = std::chrono::nanoseconds;

} // namespace troupe::membership
