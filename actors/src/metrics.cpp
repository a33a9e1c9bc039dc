#include "troupe/actors/metrics.hpp"

#include <fmt/core.h>

#include <algorithm>
#include <cmath>
#include <limits>

namespace troupe {

histogram_metric::histogram_metric(std::vector<double> upper_bounds)
  : bounds_(std::move(upper_bounds)),
    counts_(new std::atomic<std::uint64_t>[bounds_.size() + 1]) {
  std::sort(bounds_.begin(), bounds_.end());
  for (size_t i = 0; i <= bounds_.size(); ++i)
    counts_[i].store(0, std::memory_order_relaxed);
}

void histogram_metric::observe(double x) noexcept {
  auto i = static_cast<size_t>(std::lower_bound(bounds_.begin(), bounds_.end(), x)
                               - bounds_.begin());
  counts_[i].fetch_add(1, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(x, std::memory_order_relaxed);
}

histogram_metric::snapshot histogram_metric::read() const {
  snapshot s;
  s.upper_bounds = bounds_;
  s.counts.resize(bounds_.size() + 1);
  for (size_t i = 0; i <= bounds_.size(); ++i)
    s.counts[i] = counts_[i].load(std::memory_order_relaxed);
  s.count = count_.load(std::memory_order_relaxed);
  s.sum = sum_.load(std::memory_order_relaxed);
  return s;
}

double histogram_metric::snapshot::quantile(double q) const {
  std::uint64_t total = 0;
  for (auto c : counts)
    total += c;
  if (total == 0)
    return 0;
  auto rank = static_cast<std::uint64_t>(std::ceil(q * static_cast<double>(total)));
  std::uint64_t seen = 0;
  for (size_t i = 0; i < counts.size(); ++i) {
    seen += counts[i];
    if (seen >= rank && seen > 0)
      return i < upper_bounds.size() ? upper_bounds[i] : std::numeric_limits<double>::infinity();
  }
  return std::numeric_limits<double>::infinity();
}

std::vector<double> histogram_metric::exponential_bounds(double start, double factor, int count) {
  std::vector<double> result;
  double x = start;
  for (int i = 0; i < count; ++i, x *= factor)
    result.push_back(x);
  return result;
}

metrics_registry::family& metrics_registry::family_for(std::string_view name, kind type,
                                                       std::string_view help) {
  auto i = families_.find(name);
  if (i == families_.end())
    i = families_.emplace(std::string{name}, family{type, std::string{help}, {}, {}, {}}).first;
  // Asking for a name with another kind is a programming error; keep the first kind's
  // family but never hand out a mismatched object: callers below check `type`.
  return i->second;
}

counter_metric& metrics_registry::counter(std::string_view name, metric_labels labels,
                                          std::string_view help) {
  std::lock_guard<std::mutex> guard{mtx_};
  auto& f = family_for(name, kind::counter, help);
  auto& slot = f.counters[std::move(labels)];
  if (!slot)
    slot = std::make_unique<counter_metric>();
  return *slot;
}

gauge_metric& metrics_registry::gauge(std::string_view name, metric_labels labels,
                                      std::string_view help) {
  std::lock_guard<std::mutex> guard{mtx_};
  auto& f = family_for(name, kind::gauge, help);
  auto& slot = f.gauges[std::move(labels)];
  if (!slot)
    slot = std::make_unique<gauge_metric>();
  return *slot;
}

histogram_metric& metrics_registry::histogram(std::string_view name,
                                              std::vector<double> upper_bounds,
                                              metric_labels labels, std::string_view help) {
  std::lock_guard<std::mutex> guard{mtx_};
  auto& f = family_for(name, kind::histogram, help);
  auto& slot = f.histograms[std::move(labels)];
  if (!slot)
    slot = std::make_unique<histogram_metric>(std::move(upper_bounds));
  return *slot;
}

std::optional<std::uint64_t> metrics_registry::counter_value(std::string_view name,
                                                             const metric_labels& labels) const {
  std::lock_guard<std::mutex> guard{mtx_};
  auto i = families_.find(name);
  if (i == families_.end())
    return std::nullopt;
  auto j = i->second.counters.find(labels);
  if (j == i->second.counters.end())
    return std::nullopt;
  return j->second->value();
}

std::optional<double> metrics_registry::gauge_value(std::string_view name,
                                                    const metric_labels& labels) const {
  std::lock_guard<std::mutex> guard{mtx_};
  auto i = families_.find(name);
  if (i == families_.end())
    return std::nullopt;
  auto j = i->second.gauges.find(labels);
  if (j == i->second.gauges.end())
    return std::nullopt;
  return j->second->value();
}

namespace {

std::string escape_label_value(const std::string& x) {
  std::string result;
  for (char c : x) {
    if (c == '\\' || c == '"')
      result += '\\';
    if (c == '\n') {
      result += "\\n";
      continue;
    }
    result += c;
  }
  return result;
}

std::string render_labels(const metric_labels& labels, std::string_view extra_key = {},
                          std::string_view extra_value = {}) {
  if (labels.empty() && extra_key.empty())
    return {};
  std::string result = "{";
  bool first = true;
  for (auto& [k, v] : labels) {
    result += fmt::format("{}{}=\"{}\"", first ? "" : ",", k, escape_label_value(v));
    first = false;
  }
  if (!extra_key.empty())
    result += fmt::format("{}{}=\"{}\"", first ? "" : ",", extra_key, extra_value);
  return result + "}";
}

std::string render_number(double x) {
  if (std::isinf(x))
    return x > 0 ? "+Inf" : "-Inf";
  return fmt::format("{}", x);
}

} // namespace

std::string metrics_registry::prometheus_text() const {
  std::lock_guard<std::mutex> guard{mtx_};
  std::string out;
  for (auto& [name, f] : families_) {
    if (!f.help.empty())
      out += fmt::format("# HELP {} {}\n", name, f.help);
    switch (f.type) {
      case kind::counter:
        out += fmt::format("# TYPE {} counter\n", name);
        for (auto& [labels, c] : f.counters)
          out += fmt::format("{}{} {}\n", name, render_labels(labels), c->value());
        break;
      case kind::gauge:
        out += fmt::format("# TYPE {} gauge\n", name);
        for (auto& [labels, g] : f.gauges)
          out += fmt::format("{}{} {}\n", name, render_labels(labels), render_number(g->value()));
        break;
      case kind::histogram:
        out += fmt::format("# TYPE {} histogram\n", name);
        for (auto& [labels, h] : f.histograms) {
          auto s = h->read();
          std::uint64_t cumulative = 0;
          for (size_t i = 0; i < s.counts.size(); ++i) {
            cumulative += s.counts[i];
            auto le = i < s.upper_bounds.size() ? render_number(s.upper_bounds[i]) : "+Inf";
            out += fmt::format("{}_bucket{} {}\n", name, render_labels(labels, "le", le),
                               cumulative);
          }
          out += fmt::format("{}_sum{} {}\n", name, render_labels(labels), render_number(s.sum));
          out += fmt::format("{}_count{} {}\n", name, render_labels(labels), s.count);
        }
        break;
    }
  }
  return out;
}

} // namespace troupe
