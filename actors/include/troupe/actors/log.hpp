// troupe::logger: structured, levelled logging for one node.
//
// CAF 0.17.6 from Debian has its logger compiled out, so troupe brings its own.
// Every record carries a UTC timestamp, a level, the node id and the component
// (usually the actor name, e.g. "supervisor/db"). Records go to stderr and/or a
// file, one line each:
//
//   2026-11-21T23:05:01.123456Z WARN  [node-a] supervisor/db: child crashed: ...
//
// Formatting happens only when the level is enabled.
// Thread-safety: all member functions may be called concurrently.
#pragma once

#include "troupe/actors/expected.hpp"

#include <fmt/core.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace troupe {

enum class log_level : std::uint8_t { trace, debug, info, warn, error, off };

std::string_view to_string(log_level level) noexcept;

/// Parses "trace" | "debug" | "info" | "warn" | "error" | "off".
expected<log_level> parse_log_level(std::string_view text);

/// One record as handed to sinks. The views are valid only during the call.
struct log_record {
  std::chrono::system_clock::time_point time;
  log_level level;
  std::string_view node;
  std::string_view component;
  std::string_view message;
};

class logger {
public:
  struct options {
    std::string node_id = "node";
    log_level level = log_level::info;
    bool to_stderr = true;
    std::string file;  ///< append to this file as well when not empty
  };

  /// Opens the log file if one is configured; fails with io_error naming the path.
  static expected<std::shared_ptr<logger>> make(options opts);

  ~logger();
  logger(const logger&) = delete;
  logger& operator=(const logger&) = delete;

  bool enabled(log_level level) const noexcept {
    return level >= level_.load(std::memory_order_relaxed) && level != log_level::off;
  }
  void set_level(log_level level) noexcept { level_.store(level, std::memory_order_relaxed); }
  const std::string& node_id() const noexcept { return node_id_; }

  template <class... Ts>
  void log(log_level level, std::string_view component, fmt::format_string<Ts...> format,
           Ts&&... args) {
    if (enabled(level))
      write(level, component, fmt::format(format, std::forward<Ts>(args)...));
  }

  template <class... Ts>
  void trace(std::string_view component, fmt::format_string<Ts...> f, Ts&&... xs) {
    log(log_level::trace, component, f, std::forward<Ts>(xs)...);
  }
  template <class... Ts>
  void debug(std::string_view component, fmt::format_string<Ts...> f, Ts&&... xs) {
    log(log_level::debug, component, f, std::forward<Ts>(xs)...);
  }
  template <class... Ts>
  void info(std::string_view component, fmt::format_string<Ts...> f, Ts&&... xs) {
    log(log_level::info, component, f, std::forward<Ts>(xs)...);
  }
  template <class... Ts>
  void warn(std::string_view component, fmt::format_string<Ts...> f, Ts&&... xs) {
    log(log_level::warn, component, f, std::forward<Ts>(xs)...);
  }
  template <class... Ts>
  void error(std::string_view component, fmt::format_string<Ts...> f, Ts&&... xs) {
    log(log_level::error, component, f, std::forward<Ts>(xs)...);
  }

  /// Extra sinks see every enabled record (tests use them to assert a logged
  /// reason). Returns a handle for remove_sink.
  using sink = std::function<void(const log_record&)>;
  int add_sink(sink fn);
  void remove_sink(int handle);

  /// Writes an already formatted message.
  void write(log_level level, std::string_view component, std::string_view message);

private:
  explicit logger(options opts, std::FILE* file);

  std::string node_id_;
  std::atomic<log_level> level_;
  bool to_stderr_;
  std::FILE* file_;
  std::mutex mtx_;
  std::vector<std::pair<int, sink>> sinks_;
  int next_sink_ = 1;
};

} // namespace troupe
