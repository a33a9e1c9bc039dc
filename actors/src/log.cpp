#include "troupe/actors/log.hpp"

#include <cerrno>
#include <cstring>
#include <ctime>

namespace troupe {

std::string_view to_string(log_level level) noexcept {
  switch (level) {
    case log_level::trace: return "trace";
    case log_level::debug: return "debug";
    case log_level::info: return "info";
    case log_level::warn: return "warn";
    case log_level::error: return "error";
    case log_level::off: return "off";
  }
  return "?";
}

expected<log_level> parse_log_level(std::string_view text) {
  for (auto l : {log_level::trace, log_level::debug, log_level::info, log_level::warn,
                 log_level::error, log_level::off})
    if (text == to_string(l))
      return l;
  return error{errc::invalid_config,
               fmt::format("unknown log level '{}' (expected trace, debug, info, warn, error or off)",
                           text)};
}

expected<std::shared_ptr<logger>> logger::make(options opts) {
  std::FILE* file = nullptr;
  if (!opts.file.empty()) {
    file = std::fopen(opts.file.c_str(), "a");
    if (!file)
      return troupe::error{errc::io_error, fmt::format("cannot open log file '{}': {}", opts.file,
                                               std::strerror(errno))};
  }
  return std::shared_ptr<logger>(new logger(std::move(opts), file));
}

logger::logger(options opts, std::FILE* file)
  : node_id_(std::move(opts.node_id)),
    level_(opts.level),
    to_stderr_(opts.to_stderr),
    file_(file) {
}

logger::~logger() {
  if (file_)
    std::fclose(file_);
}

int logger::add_sink(sink fn) {
  std::lock_guard<std::mutex> guard{mtx_};
  auto handle = next_sink_++;
  sinks_.emplace_back(handle, std::move(fn));
  return handle;
}

void logger::remove_sink(int handle) {
  std::lock_guard<std::mutex> guard{mtx_};
  std::erase_if(sinks_, [handle](const auto& x) { return x.first == handle; });
}

namespace {

std::string format_timestamp(std::chrono::system_clock::time_point t) {
  using namespace std::chrono;
  auto secs = time_point_cast<seconds>(t);
  auto micros = duration_cast<microseconds>(t - secs).count();
  std::time_t tt = system_clock::to_time_t(secs);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, micros);
}

std::string_view level_column(log_level level) {
  switch (level) {
    case log_level::trace: return "TRACE";
    case log_level::debug: return "DEBUG";
    case log_level::info: return "INFO ";
    case log_level::warn: return "WARN ";
    case log_level::error: return "ERROR";
    default: return "     ";
  }
}

} // namespace

void logger::write(log_level level, std::string_view component, std::string_view message) {
  auto now = std::chrono::system_clock::now();
  auto line = fmt::format("{} {} [{}] {}: {}\n", format_timestamp(now), level_column(level),
                          node_id_, component, message);
  std::lock_guard<std::mutex> guard{mtx_};
  if (to_stderr_)
    std::fwrite(line.data(), 1, line.size(), stderr);
  if (file_) {
    std::fwrite(line.data(), 1, line.size(), file_);
    std::fflush(file_);
  }
  log_record rec{now, level, node_id_, component, message};
  for (auto& [handle, fn] : sinks_)
    fn(rec);
}

} // namespace troupe
