// Simple sources.
//
//   from_range(a, b)           a, a+1, ..., b-1 (integers)
//   from_container(c)          the elements of a copy of c, in order
//   single(x), empty<T>(), failed<T>(err)
//   repeat(x)                  x forever
//   unfold(s, f)               f(s) -> std::optional<std::pair<S, T>>: emits T, goes on with
//                              S; ends at std::nullopt (an exception fails the stream)
//   tick(initial, interval, x) x after `initial`, then every `interval`; a tick
//                              without demand is dropped (no backlog builds up)
#pragma once

#include "troupe/streams/detail/lifeline.hpp"
#include "troupe/streams/source.hpp"

#include <memory>
#include <optional>
#include <type_traits>
#include <utility>
#include <vector>

namespace troupe::streams {

namespace detail {

/// A source stage driven by `fill(out, max) -> pull_status` (a generator).
template <class T, class Fill>
class generator_stage final : public outlet<T> {
public:
  generator_stage(island_context& ctx, Fill fill)
    : ctx_(ctx), name_(ctx.stage_name("source")), fill_(std::move(fill)) {}

  pull_status pull(std::vector<T>& out, std::size_t max) override {
    if (done_)
      return pull_status::done;
    try {
      auto st = fill_(out, max);
      if (st == pull_status::done)
        done_ = true;
      return st;
    } catch (const std::exception& e) {
      done_ = true;
      return this->fail_with(stage_error(ctx_, name_, error{errc::actor_failed, e.what()}));
    }
  }
  void cancel() override { done_ = true; }

private:
  island_context& ctx_;
  std::string name_;
  Fill fill_;
  bool done_ = false;
};

/// A source of generator stages; `make()` returns a fresh fill function per run.
template <class T, class Make>
source<T> generator(Make make) {
  return source<T>{[make](island_context& ctx) -> outlet_ptr<T> {
    auto fill = make();
    return std::make_unique<generator_stage<T, decltype(fill)>>(ctx, std::move(fill));
  }};
}

} // namespace detail

template <class I>
  requires std::is_integral_v<I>
source<I> from_range(I first, I last) {
  return detail::generator<I>([first, last] {
    return [next = first, last](std::vector<I>& out, std::size_t max) mutable {
      if (next >= last)
        return detail::pull_status::done;
      auto n = static_cast<std::size_t>(last - next) < max ? static_cast<std::size_t>(last - next) : max;
      auto base = out.size();
      out.resize(base + n);
      for (std::size_t i = 0; i < n; ++i)
        out[base + i] = static_cast<I>(next + static_cast<I>(i));
      next = static_cast<I>(next + static_cast<I>(n));
      return detail::pull_status::ready;
    };
  });
}

template <class C>
auto from_container(C c) {
  using T = std::decay_t<decltype(*std::begin(c))>;
  auto items = std::make_shared<const std::vector<T>>(std::begin(c), std::end(c));
  return detail::generator<T>([items] {
    return [items, i = std::size_t{0}](std::vector<T>& out, std::size_t max) mutable {
      if (i >= items->size())
        return detail::pull_status::done;
      for (std::size_t k = 0; k < max && i < items->size(); ++k)
        out.push_back((*items)[i++]);
      return detail::pull_status::ready;
    };
  });
}

template <class T>
source<T> single(T x) {
  return from_container(std::vector<T>{std::move(x)});
}

template <class T>
source<T> empty() {
  return from_container(std::vector<T>{});
}

template <class T>
source<T> failed(error e) {
  return source<T>{[e](detail::island_context&) -> detail::outlet_ptr<T> {
    struct failing final : detail::outlet<T> {
      explicit failing(error x) { this->failure_ = std::move(x); }
      detail::pull_status pull(std::vector<T>&, std::size_t) override { return detail::pull_status::failed; }
      void cancel() override {}
    };
    return std::make_unique<failing>(e);
  }};
}

template <class T>
source<T> repeat(T x) {
  return detail::generator<T>([x] {
    return [x](std::vector<T>& out, std::size_t max) {
      for (std::size_t k = 0; k < max; ++k)
        out.push_back(x);
      return detail::pull_status::ready;
    };
  });
}

template <class S, class F>
auto unfold(S state, F f) {
  using P = typename std::decay_t<std::invoke_result_t<F&, S>>::value_type;
  using T = typename P::second_type;
  return detail::generator<T>([state, f] {
    return [s = std::optional<S>{state}, f](std::vector<T>& out, std::size_t max) mutable {
      for (std::size_t k = 0; k < max; ++k) {
        auto next = f(std::move(*s));
        if (!next) {
          s.reset();
          return k > 0 ? detail::pull_status::ready : detail::pull_status::done;
        }
        s.emplace(std::move(next->first));
        out.push_back(std::move(next->second));
      }
      return detail::pull_status::ready;
    };
  });
}

namespace detail {

template <class T>
class tick_stage final : public outlet<T> {
public:
  tick_stage(island_context& ctx, duration initial, duration interval, T value)
    : ctx_(ctx), interval_(interval), value_(std::move(value)) {
    arm(initial);
  }
  pull_status pull(std::vector<T>& out, std::size_t) override {
    if (cancelled_)
      return pull_status::done;
    if (!due_)
      return pull_status::pending;
    due_ = false;
    out.push_back(value_);
    return pull_status::ready;
  }
  void cancel() override { cancelled_ = true; }

private:
  void arm(duration d) {
    ctx_.schedule(d, life_.guard([this] {
      if (cancelled_)
        return;
      due_ = true;  // an unconsumed tick is replaced, not queued
      ctx_.wake();
      arm(interval_);
    }));
  }
  island_context& ctx_;
  duration interval_;
  T value_;
  bool due_ = false;
  bool cancelled_ = false;
  lifeline life_;
};

} // namespace detail

template <class T>
source<T> tick(duration initial, duration interval, T value) {
  return source<T>{[=](detail::island_context& ctx) -> detail::outlet_ptr<T> {
    return std::make_unique<detail::tick_stage<T>>(ctx, initial, interval, value);
  }};
}

} // namespace troupe::streams
