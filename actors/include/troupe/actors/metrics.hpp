// troupe::metrics_registry: counters, gauges and histograms for one node.
//
// A metric is identified by its name plus its label set; asking twice for the same
// identity returns the same object, so hot paths look a metric up once and keep the
// reference (references stay valid for the registry's lifetime). Updating a metric
// is a relaxed atomic operation. prometheus_text() renders the exposition format.
// Thread-safety: every member function may be called concurrently.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace troupe {

using metric_labels = std::vector<std::pair<std::string, std::string>>;

class counter_metric {
public:
  void inc(std::uint64_t n = 1) noexcept { value_.fetch_add(n, std::memory_order_relaxed); }
  std::uint64_t value() const noexcept { return value_.load(std::memory_order_relaxed); }

private:
  std::atomic<std::uint64_t> value_{0};
};

class gauge_metric {
public:
  void set(double x) noexcept { value_.store(x, std::memory_order_relaxed); }
  void add(double x) noexcept { value_.fetch_add(x, std::memory_order_relaxed); }
  double value() const noexcept { return value_.load(std::memory_order_relaxed); }

private:
  std::atomic<double> value_{0};
};

/// A histogram with fixed upper bounds (the last bucket is +Inf).
class histogram_metric {
public:
  explicit histogram_metric(std::vector<double> upper_bounds);

  void observe(double x) noexcept;

  struct snapshot {
    std::vector<double> upper_bounds;       ///< without the implicit +Inf
    std::vector<std::uint64_t> counts;      ///< per bucket, size = bounds + 1
    std::uint64_t count = 0;
    double sum = 0;
    /// Upper bound of the bucket that holds quantile q (0..1); +Inf if beyond.
    double quantile(double q) const;
  };
  snapshot read() const;

  /// Bounds start, start*factor, ... (count of them).
  static std::vector<double> exponential_bounds(double start, double factor, int count);

private:
  std::vector<double> bounds_;
  std::unique_ptr<std::atomic<std::uint64_t>[]> counts_;
  std::atomic<std::uint64_t> count_{0};
  std::atomic<double> sum_{0};
};

class metrics_registry {
public:
  counter_metric& counter(std::string_view name, metric_labels labels = {},
                          std::string_view help = "");
  gauge_metric& gauge(std::string_view name, metric_labels labels = {},
                      std::string_view help = "");
  /// Bounds are fixed by the first call for a name and label set.
  histogram_metric& histogram(std::string_view name, std::vector<double> upper_bounds,
                              metric_labels labels = {}, std::string_view help = "");

  /// The current value of a counter, if one with this identity exists.
  std::optional<std::uint64_t> counter_value(std::string_view name,
                                             const metric_labels& labels = {}) const;
  std::optional<double> gauge_value(std::string_view name,
                                    const metric_labels& labels = {}) const;

  /// All metrics in the Prometheus text exposition format (version 0.0.4).
  std::string prometheus_text() const;

private:
  enum class kind { counter, gauge, histogram };
  struct family {
    kind type;
    std::string help;
    std::map<metric_labels, std::unique_ptr<counter_metric>> counters;
    std::map<metric_labels, std::unique_ptr<gauge_metric>> gauges;
    std::map<metric_labels, std::unique_ptr<histogram_metric>> histograms;
  };
  family& family_for(std::string_view name, kind type, std::string_view help);

  mutable std::mutex mtx_;
  std::map<std::string, family, std::less<>> families_;
};

} // namespace troupe
