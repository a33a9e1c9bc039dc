// Operators that pass a prefix or drop a prefix.
//
//   take(n)          the first n elements, then completes and cancels upstream
//   take_while(p)    elements while p holds; the first that fails p completes
//   drop(n)          all but the first n
//   drop_while(p)    all from the first element that fails p
#pragma once

#include "troupe/streams/detail/expanding_stage.hpp"
#include "troupe/streams/source.hpp"

#include <algorithm>
#include <utility>

namespace troupe::streams {

namespace detail {

/// take(n) / take_while(p): passes elements until `count` runs out or `pred`
/// fails; then cancels upstream and completes.
template <class T, class P>
class take_stage final : public stage_base<T, T> {
public:
  take_stage(island_context& ctx, outlet_ptr<T> up, decider d, std::uint64_t count, P p)
    : stage_base<T, T>(ctx, std::move(up), "take", std::move(d)), left_(count), p_(std::move(p)) {}

  pull_status pull(std::vector<T>& out, std::size_t max) override {
    if (done_ || left_ == 0) {
      finish();
      return pull_status::done;
    }
    auto start = out.size();
    auto st = this->pull_through(out, static_cast<std::size_t>(std::min<std::uint64_t>(max, left_)));
    if (st != pull_status::ready)
      return st;
    std::size_t keep = out.size() - start;
    bool ok = this->guarded_loop(keep, [&](std::size_t i) {
      if (!done_ && !p_(std::as_const(out[start + i]))) {
        keep = i;
        done_ = true;
      }
    });
    if (!ok)
      return pull_status::failed;
    out.resize(start + keep);
    left_ -= keep;
    if (done_ || left_ == 0)
      finish();
    return keep > 0 ? pull_status::ready : pull_status::done;
  }

private:
  void finish() {
    done_ = true;
    this->cancel();
  }
  std::uint64_t left_;
  P p_;
  bool done_ = false;
};

/// drop(n) / drop_while(p).
template <class T, class P>
class drop_stage final : public stage_base<T, T> {
public:
  drop_stage(island_context& ctx, outlet_ptr<T> up, decider d, std::uint64_t count, P p)
    : stage_base<T, T>(ctx, std::move(up), "drop", std::move(d)), left_(count), p_(std::move(p)) {}

  pull_status pull(std::vector<T>& out, std::size_t max) override {
    return this->until_emitted(out, [&] {
      auto start = out.size();
      auto st = this->pull_through(out, max);
      if (st != pull_status::ready || passing_)
        return st;
      std::size_t first = out.size() - start;
      bool ok = this->guarded_loop(out.size() - start, [&](std::size_t i) {
        if (passing_)
          return;
        if (left_ > 0) {
          --left_;
        } else if (!p_(std::as_const(out[start + i]))) {
          passing_ = true;
          first = i;
        }
      });
      if (!ok)
        return pull_status::failed;
      out.erase(out.begin() + static_cast<std::ptrdiff_t>(start),
                out.begin() + static_cast<std::ptrdiff_t>(start + first));
      return pull_status::ready;
    });
  }

private:
  std::uint64_t left_;
  P p_;
  bool passing_ = false;
};

struct always {
  template <class T>
  bool operator()(const T&) const { return true; }
};

template <template <class, class> class Stage, class P>
auto prefix_op(std::uint64_t count, P p) {
  return [count, p](const auto& src) {
    using T = element_of<decltype(src)>;
    return stage_source<T>(src, [count, p](auto& ctx, auto up, decider d) {
      return outlet_ptr<T>{std::make_unique<Stage<T, P>>(ctx, std::move(up), std::move(d), count, p)};
    });
  };
}

} // namespace detail

inline auto take(std::uint64_t n) {
  return detail::prefix_op<detail::take_stage>(n, detail::always{});
}

template <class P>
auto take_while(P p) {
  return detail::prefix_op<detail::take_stage>(~std::uint64_t{0}, std::move(p));
}

inline auto drop(std::uint64_t n) {
  // Drops n elements, then passes the rest (a predicate that fails at once).
  return detail::prefix_op<detail::drop_stage>(n, [](const auto&) { return false; });
}

template <class P>
auto drop_while(P p) {
  return detail::prefix_op<detail::drop_stage>(0, std::move(p));
}

} // namespace troupe::streams
