// Operators that group elements into vectors.
//
//   grouped(n)               vectors of n elements (the last one may be shorter)
//   grouped_within(n, d)     a vector when n elements arrived or `d` passed since
//                            the first element of the group, whichever is first;
//                            never an empty vector
#pragma once

#include "troupe/streams/detail/expanding_stage.hpp"
#include "troupe/streams/detail/lifeline.hpp"
#include "troupe/streams/source.hpp"

#include <utility>
#include <vector>

namespace troupe::streams {

namespace detail {

template <class T>
class grouped_stage final : public expanding_stage<T, std::vector<T>> {
public:
  grouped_stage(island_context& ctx, outlet_ptr<T> up, decider d, std::size_t n)
    : expanding_stage<T, std::vector<T>>(ctx, std::move(up), "grouped", std::move(d)),
      n_(std::max<std::size_t>(n, 1)) {}

private:
  void expand(T&& x) override {
    current_.push_back(std::move(x));
    if (current_.size() == n_)
      this->held_.push_back(std::exchange(current_, {}));
  }
  bool on_upstream_done() override {
    if (!current_.empty())
      this->held_.push_back(std::exchange(current_, {}));
    return true;
  }
  std::size_t n_;
  std::vector<T> current_;
};

template <class T>
class grouped_within_stage final : public stage_base<T, std::vector<T>> {
public:
  grouped_within_stage(island_context& ctx, outlet_ptr<T> up, decider d, std::size_t n,
                       duration window)
    : stage_base<T, std::vector<T>>(ctx, std::move(up), "grouped_within", std::move(d)),
      n_(std::max<std::size_t>(n, 1)), window_(window) {}

  pull_status pull(std::vector<std::vector<T>>& out, std::size_t) override {
    while (!upstream_done_ && current_.size() < n_ && !due_) {
      auto st = this->pull_up(n_ - current_.size());
      if (st == pull_status::failed)
        return st;
      if (st == pull_status::pending)
        break;
      if (st == pull_status::done) {
        upstream_done_ = true;
        break;
      }
      if (current_.empty())
        arm();
      for (auto& x : this->scratch_)
        current_.push_back(std::move(x));
    }
    if (!current_.empty() && (current_.size() >= n_ || due_ || upstream_done_)) {
      out.push_back(std::exchange(current_, {}));
      due_ = false;
      ++generation_;  // the pending timer belongs to the group just emitted
      return pull_status::ready;
    }
    return upstream_done_ ? pull_status::done : pull_status::pending;
  }

private:
  void arm() {
    auto gen = generation_;
    this->ctx_.schedule(window_, life_.guard([this, gen] {
      if (gen != generation_)
        return;
      due_ = true;
      this->ctx_.wake();
    }));
  }
  std::size_t n_;
  duration window_;
  std::vector<T> current_;
  std::uint64_t generation_ = 0;
  bool due_ = false;
  bool upstream_done_ = false;
  lifeline life_;
};

} // namespace detail

inline auto grouped(std::size_t n) {
  return [n](const auto& src) {
    using T = detail::element_of<decltype(src)>;
    return detail::stage_source<std::vector<T>>(src, [n](auto& ctx, auto up, decider d) {
      return detail::outlet_ptr<std::vector<T>>{
        std::make_unique<detail::grouped_stage<T>>(ctx, std::move(up), std::move(d), n)};
    });
  };
}

inline auto grouped_within(std::size_t n, duration window) {
  return [n, window](const auto& src) {
    using T = detail::element_of<decltype(src)>;
    return detail::stage_source<std::vector<T>>(src, [n, window](auto& ctx, auto up, decider d) {
      return detail::outlet_ptr<std::vector<T>>{std::make_unique<detail::grouped_within_stage<T>>(
        ctx, std::move(up), std::move(d), n, window)};
    });
  };
}

} // namespace troupe::streams
