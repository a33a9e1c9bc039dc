// Fan-in: operators that combine this stream with another source, fused in the
// same island (add .async() to either side to run it in an actor of its own).
//
//   merge(other)    elements of both as they come; completes when both completed
//   concat(other)   all of this stream, then all of `other` (built only then)
//   zip(other)      std::pair of one element from each; completes when either does
//
// A failure of either side fails the result and cancels the other side.
#pragma once

#include "troupe/streams/detail/expanding_stage.hpp"
#include "troupe/streams/source.hpp"

#include <deque>
#include <utility>

namespace troupe::streams {

namespace detail {

template <class T>
class merge_stage final : public outlet<T> {
public:
  merge_stage(outlet_ptr<T> a, outlet_ptr<T> b) { side_[0] = std::move(a); side_[1] = std::move(b); }

  pull_status pull(std::vector<T>& out, std::size_t max) override {
    bool any = false;
    for (int k = 0; k < 2 && !any; ++k) {
      auto i = (next_ + k) % 2;
      if (done_[i])
        continue;
      switch (side_[i]->pull(out, max)) {
        case pull_status::ready:
          any = true;
          next_ = (i + 1) % 2;  // take turns
          break;
        case pull_status::done:
          done_[i] = true;
          break;
        case pull_status::failed:
          side_[(i + 1) % 2]->cancel();
          done_[0] = done_[1] = true;
          return this->fail_with(side_[i]->failure());
        case pull_status::pending:
          break;
      }
    }
    if (any)
      return pull_status::ready;
    return done_[0] && done_[1] ? pull_status::done : pull_status::pending;
  }

  void cancel() override {
    for (int i = 0; i < 2; ++i)
      if (!done_[i]) {
        done_[i] = true;
        side_[i]->cancel();
      }
  }

private:
  outlet_ptr<T> side_[2];
  bool done_[2] = {false, false};
  int next_ = 0;
};

template <class T>
class concat_stage final : public outlet<T> {
public:
  concat_stage(island_context& ctx, outlet_ptr<T> first, source<T> second)
    : ctx_(ctx), current_(std::move(first)), second_(std::move(second)) {}

  pull_status pull(std::vector<T>& out, std::size_t max) override {
    auto st = current_->pull(out, max);
    if (st == pull_status::done && !switched_) {
      switched_ = true;
      current_ = second_.build(ctx_);
      st = current_->pull(out, max);
    }
    if (st == pull_status::failed)
      this->failure_ = current_->failure();
    return st;
  }
  void cancel() override { current_->cancel(); }

private:
  island_context& ctx_;
  outlet_ptr<T> current_;
  source<T> second_;
  bool switched_ = false;
};

template <class A, class B>
class zip_stage final : public outlet<std::pair<A, B>> {
public:
  zip_stage(outlet_ptr<A> a, outlet_ptr<B> b) : a_(std::move(a)), b_(std::move(b)) {}

  pull_status pull(std::vector<std::pair<A, B>>& out, std::size_t max) override {
    if (auto st = fill(a_, as_, a_done_, max); st == pull_status::failed)
      return fail_side(a_->failure());
    if (auto st = fill(b_, bs_, b_done_, max); st == pull_status::failed)
      return fail_side(b_->failure());
    std::size_t k = 0;
    for (; k < max && !as_.empty() && !bs_.empty(); ++k) {
      out.emplace_back(std::move(as_.front()), std::move(bs_.front()));
      as_.pop_front();
      bs_.pop_front();
    }
    if (k > 0)
      return pull_status::ready;
    if ((a_done_ && as_.empty()) || (b_done_ && bs_.empty())) {
      cancel();
      return pull_status::done;
    }
    return pull_status::pending;
  }

  void cancel() override {
    if (!a_done_)
      a_->cancel();
    if (!b_done_)
      b_->cancel();
    a_done_ = b_done_ = true;
  }

private:
  template <class X>
  static pull_status fill(outlet_ptr<X>& side, std::deque<X>& q, bool& done, std::size_t max) {
    if (done || q.size() >= max)
      return pull_status::ready;
    std::vector<X> got;
    auto st = side->pull(got, max - q.size());
    if (st == pull_status::done || st == pull_status::failed)
      done = true;
    for (auto& x : got)
      q.push_back(std::move(x));
    return st;
  }
  pull_status fail_side(error e) {
    cancel();
    return this->fail_with(std::move(e));
  }
  outlet_ptr<A> a_;
  outlet_ptr<B> b_;
  std::deque<A> as_;
  std::deque<B> bs_;
  bool a_done_ = false;
  bool b_done_ = false;
};

} // namespace detail

template <class T>
auto merge(source<T> other) {
  return [other](const source<T>& src) {
    return source<T>{[src, other](detail::island_context& ctx) -> detail::outlet_ptr<T> {
      auto a = src.build(ctx);
      return std::make_unique<detail::merge_stage<T>>(std::move(a), other.build(ctx));
    }};
  };
}

template <class T>
auto concat(source<T> other) {
  return [other](const source<T>& src) {
    return source<T>{[src, other](detail::island_context& ctx) -> detail::outlet_ptr<T> {
      return std::make_unique<detail::concat_stage<T>>(ctx, src.build(ctx), other);
    }};
  };
}

template <class B>
auto zip(source<B> other) {
  return [other](const auto& src) {
    using A = detail::element_of<decltype(src)>;
    return source<std::pair<A, B>>{
      [src, other](detail::island_context& ctx) -> detail::outlet_ptr<std::pair<A, B>> {
        auto a = src.build(ctx);
        return std::make_unique<detail::zip_stage<A, B>>(std::move(a), other.build(ctx));
      }};
  };
}

} // namespace troupe::streams
