// throttle(elements, per, burst): at most `elements` per `per` on average, with
// bursts of up to `burst` elements (a token bucket); a faster upstream is slowed
// (backpressure), nothing is dropped.
#pragma once

#include "troupe/streams/detail/expanding_stage.hpp"
#include "troupe/streams/detail/lifeline.hpp"
#include "troupe/streams/source.hpp"

#include <algorithm>
#include <chrono>

namespace troupe::streams {

namespace detail {

template <class T>
class throttle_stage final : public stage_base<T, T> {
public:
  using clock = std::chrono::steady_clock;

  throttle_stage(island_context& ctx, outlet_ptr<T> up, decider d, double rate_per_ns,
                 std::size_t burst)
    : stage_base<T, T>(ctx, std::move(up), "throttle", std::move(d)), rate_(rate_per_ns),
      burst_(static_cast<double>(std::max<std::size_t>(burst, 1))), tokens_(burst_),
      last_(clock::now()) {}

  pull_status pull(std::vector<T>& out, std::size_t max) override {
    refill();
    if (tokens_ < 1.0) {
      if (!timer_armed_) {
        timer_armed_ = true;
        auto wait = std::chrono::nanoseconds{static_cast<std::int64_t>((1.0 - tokens_) / rate_) + 1};
        this->ctx_.schedule(wait, life_.guard([this] {
          timer_armed_ = false;
          this->ctx_.wake();
        }));
      }
      return pull_status::pending;
    }
    auto allowed = std::min<std::size_t>(max, static_cast<std::size_t>(tokens_));
    auto start = out.size();
    auto st = this->pull_through(out, allowed);
    tokens_ -= static_cast<double>(out.size() - start);
    return st;
  }

private:
  void refill() {
    auto now = clock::now();
    auto elapsed = std::chrono::duration_cast<std::chrono::nanoseconds>(now - last_).count();
    last_ = now;
    tokens_ = std::min(burst_, tokens_ + static_cast<double>(elapsed) * rate_);
  }
  double rate_;
  double burst_;
  double tokens_;
  clock::time_point last_;
  bool timer_armed_ = false;
  lifeline life_;
};

} // namespace detail

inline auto throttle(std::size_t elements, duration per, std::size_t burst = 1) {
  double rate = static_cast<double>(elements)
                / static_cast<double>(std::max<std::int64_t>(per.count(), 1));
  return [rate, burst](const auto& src) {
    using T = detail::element_of<decltype(src)>;
    return detail::stage_source<T>(src, [rate, burst](auto& ctx, auto up, decider d) {
      return detail::outlet_ptr<T>{
        std::make_unique<detail::throttle_stage<T>>(ctx, std::move(up), std::move(d), rate, burst)};
    });
  };
}

} // namespace troupe::streams
