// Capturing what a node logs, for tests that assert on a logged reason (or on its
// absence).
#pragma once

#include "support/wait.hpp"

#include "troupe/actors/log.hpp"

#include <algorithm>
#include <chrono>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace troupe::test {

/// Captures the messages a logger writes at its level or above, while it lives.
class log_capture {
public:
  explicit log_capture(logger& log) : log_(log) {
    handle_ = log.add_sink([this](const log_record& r) {
      std::lock_guard<std::mutex> guard{mtx_};
      lines_.emplace_back(r.message);
    });
  }
  ~log_capture() { log_.remove_sink(handle_); }

  /// How many lines contain `text`.
  std::size_t count(std::string_view text) const {
    std::lock_guard<std::mutex> guard{mtx_};
    return static_cast<std::size_t>(std::count_if(lines_.begin(), lines_.end(), [&](auto& l) {
      return l.find(text) != std::string::npos;
    }));
  }
  bool contains(std::string_view text) const {
    std::lock_guard<std::mutex> guard{mtx_};
    for (auto& l : lines_)
      if (l.find(text) != std::string::npos)
        return true;
    return false;
  }
  bool wait_for(std::string_view text, std::chrono::milliseconds timeout = std::chrono::seconds{10}) const {
    return wait_until([&] { return contains(text); }, timeout);
  }

private:
  logger& log_;
  int handle_ = 0;
  mutable std::mutex mtx_;
  std::vector<std::string> lines_;
};

} // namespace troupe::test
