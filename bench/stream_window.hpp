// What the stream benchmarks into entities share: measuring a running stream's
// acknowledgements over a window, then ending it.
#pragma once

#include "harness.hpp"

#include "troupe/streams/kill_switch.hpp"
#include "troupe/streams/stream_future.hpp"

#include <atomic>
#include <chrono>
#include <string_view>
#include <thread>

namespace troupe::bench {

/// Elements per second that `acked` counted over `seconds` of the running stream
/// `done`; then `ks` shuts the stream down and its completion is awaited (a failure
/// stops the benchmark `name`).
inline double rate_then_shutdown(std::string_view name, const std::atomic<std::uint64_t>& acked,
                                 streams::kill_switch& ks, streams::completion& done, double seconds) {
  auto start = now_seconds();
  auto base = acked.load();
  while (now_seconds() - start < seconds)
    std::this_thread::sleep_for(std::chrono::milliseconds{10});
  auto count = acked.load() - base;
  auto took = now_seconds() - start;
  ks.shutdown();
  if (auto r = done.wait(std::chrono::seconds{60}); !r)
    die(fmt::format("{}: {}", name, r.error().to_string()));
  return static_cast<double>(count) / took;
}

} // namespace troupe::bench
