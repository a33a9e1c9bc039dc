// troupe-bench harness: benchmarks register themselves; main() runs one or all.
//
// Every benchmark measures troupe doing some work and a raw baseline doing the same
// work in the same run (raw CAF, raw SQLite, raw sockets), and reports one JSON line
// per figure:
//   {"bench":"local_send","unit":"msgs/s","troupe":2.9e6,"baseline":3.1e6,"ratio":0.94}
// For throughput figures ratio = troupe / baseline; for latency figures the
// benchmark sets `lower_is_better`, and ratio = baseline / troupe, so a higher ratio
// is always better. Extra fields (p50/p99, sizes, ...) go into `extra`.
#pragma once

#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <random>
#include <string>
#include <system_error>
#include <vector>

namespace troupe::bench {

struct options {
  double seconds = 3.0;  ///< target duration of each measured phase
};

struct result {
  std::string bench;
  std::string unit;
  double troupe = 0;
  double baseline = 0;
  bool lower_is_better = false;
  nlohmann::json extra = nlohmann::json::object();

  double ratio() const;
  std::string to_json_line() const;
};

using bench_fn = std::function<std::vector<result>(const options&)>;

/// Registers a benchmark; use TROUPE_BENCHMARK at namespace scope.
bool register_benchmark(std::string name, std::string description, bench_fn fn);

#define TROUPE_BENCHMARK(name, description, fn)                                   \
  static const bool troupe_bench_registered_##fn =                                \
    ::troupe::bench::register_benchmark(name, description, fn)

/// Seconds since an arbitrary epoch, steady clock.
inline double now_seconds() {
  using namespace std::chrono;
  return duration<double>(steady_clock::now().time_since_epoch()).count();
}

/// Percentile (0..100) of unsorted samples; sorts them.
double percentile(std::vector<double>& samples, double p);

/// The window rates of two workloads measured in turn, in the order A B B A A B ...:
/// a drift that makes later windows slower or faster (a journal that grows, a
/// machine that warms up) then hits both sides alike, and the means compare them.
struct paired_windows {
  std::vector<double> a;
  std::vector<double> b;

  static double mean(const std::vector<double>& xs) {
    double sum = 0;
    for (auto x : xs)
      sum += x;
    return xs.empty() ? 0 : sum / static_cast<double>(xs.size());
  }
  /// b / a per round (a round is one window of each).
  std::vector<double> round_ratios() const {
    std::vector<double> r;
    for (std::size_t i = 0; i < a.size() && i < b.size(); ++i)
      r.push_back(a[i] > 0 ? b[i] / a[i] : 0);
    return r;
  }
};

/// Runs `rounds` windows of each workload (A B, then B A, then A B, ...); each
/// callable returns its window's rate.
template <class RunA, class RunB>
paired_windows alternate_windows(int rounds, RunA&& run_a, RunB&& run_b) {
  paired_windows w;
  for (int i = 0; i < rounds; ++i) {
    if (i % 2 == 0) {
      w.a.push_back(run_a());
      w.b.push_back(run_b());
    } else {
      w.b.push_back(run_b());
      w.a.push_back(run_a());
    }
  }
  return w;
}

/// A benchmark that cannot do its work stops the whole run: a figure measured on a
/// broken setup would mislead.
[[noreturn]] inline void die(const std::string& what) {
  std::fprintf(stderr, "troupe-bench: %s\n", what.c_str());
  std::exit(1);
}

/// A fresh directory under the system's temp directory, removed with its contents.
struct scratch_dir {
  scratch_dir() {
    std::random_device rd;
    path = std::filesystem::temp_directory_path() / fmt::format("troupe-bench-{}", rd());
    std::filesystem::create_directories(path);
  }
  ~scratch_dir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  scratch_dir(const scratch_dir&) = delete;
  scratch_dir& operator=(const scratch_dir&) = delete;
  std::string file(const std::string& name) const { return (path / name).string(); }
  std::filesystem::path path;
};

} // namespace troupe::bench
