// A rate limit for log lines that a peer can cause at will (refused handshakes,
// handshake timeouts, evictions, protocol errors): per key, at most `burst` lines
// per `window`; what it suppresses is counted and reported with the next line of
// that key, so the log shows that it happened and how often, without a flood.
//
// Thread-safety: none; the transport's I/O thread owns its limiter.
#pragma once

#include "troupe/actors/config.hpp"

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>

namespace troupe::remote::detail {

class log_limiter {
public:
  using time_point = std::chrono::steady_clock::time_point;

  log_limiter(std::uint32_t burst, duration window) : burst_(burst), window_(window) {}

  /// True if a line of `key` may be logged at `now`; then `suppressed` is the
  /// number of lines of that key skipped since the last one that was logged.
  bool allow(std::string_view key, time_point now, std::uint64_t& suppressed) {
    auto i = keys_.find(key);
    if (i == keys_.end())
      i = keys_.emplace(std::string{key}, state{now, 0, 0}).first;
    auto& s = i->second;
    if (now - s.window_start >= window_) {
      s.window_start = now;
      s.logged = 0;
    }
    if (s.logged >= burst_) {
      ++s.suppressed;
      return false;
    }
    ++s.logged;
    suppressed = s.suppressed;
    s.suppressed = 0;
    return true;
  }

  duration window() const noexcept { return window_; }

private:
  struct state {
    time_point window_start;
    std::uint32_t logged;
    std::uint64_t suppressed;
  };
  std::uint32_t burst_;
  duration window_;
  std::map<std::string, state, std::less<>> keys_;
};

} // namespace troupe::remote::detail
