// Element-wise operators: each element in, zero or more elements out, in order.
//
//   map(f)                      f(x)
//   filter(p)                   x when p(x)
//   collect(f)                  *f(x) when f(x) (a std::optional) holds a value
//   map_concat(f)               every element of the container f(x)
//   stateful_map_concat(make)   make() gives a fresh function per run (and per
//                               restart); its state lives in the closure
//   scan(zero, f)               zero, then f(acc, x) after each element
//   fold(zero, f)               f(...f(zero, x1)..., xn) once, at completion
//
// Each runs its function under the stream's supervision (supervision.hpp):
// an exception is a failure the decider judges; restart resets scan's and fold's
// accumulator and stateful_map_concat's function.
#pragma once

#include "troupe/streams/detail/expanding_stage.hpp"
#include "troupe/streams/detail/stage_base.hpp"
#include "troupe/streams/source.hpp"

#include <deque>
#include <optional>
#include <type_traits>
#include <utility>

namespace troupe::streams {

namespace detail {

template <class In, class Out, class F>
class map_stage final : public stage_base<In, Out> {
public:
  map_stage(island_context& ctx, outlet_ptr<In> up, decider d, F f)
    : stage_base<In, Out>(ctx, std::move(up), "map", std::move(d)), f_(std::move(f)) {}

  pull_status pull(std::vector<Out>& out, std::size_t max) override {
    if constexpr (std::is_same_v<In, Out> && std::is_move_assignable_v<Out>) {
      // Mapped in place: a fused chain (source -> map -> filter -> sink) works on
      // one buffer. With a second one, some heap layouts made its loads and stores
      // alias and halved the throughput.
      return this->pull_in_place(out, max, [this](Out& x) {
        x = f_(std::move(x));
        return true;
      });
    } else {
      return this->until_emitted(out, [&] {
        auto st = this->pull_up(max);
        if (st != pull_status::ready)
          return st;
        auto& in = this->scratch_;
        bool ok = this->guarded_loop(in.size(), [&](std::size_t i) { out.push_back(f_(std::move(in[i]))); });
        return ok ? pull_status::ready : pull_status::failed;
      });
    }
  }

private:
  F f_;
};

template <class T, class P>
class filter_stage final : public stage_base<T, T> {
public:
  filter_stage(island_context& ctx, outlet_ptr<T> up, decider d, P p)
    : stage_base<T, T>(ctx, std::move(up), "filter", std::move(d)), p_(std::move(p)) {}

  pull_status pull(std::vector<T>& out, std::size_t max) override {
    return this->pull_in_place(out, max, [this](const T& x) { return p_(x); });
  }

private:
  P p_;
};

template <class In, class Out, class F>
class map_concat_stage final : public expanding_stage<In, Out> {
public:
  map_concat_stage(island_context& ctx, outlet_ptr<In> up, decider d, F f)
    : expanding_stage<In, Out>(ctx, std::move(up), "map_concat", std::move(d)), f_(std::move(f)) {}

private:
  void expand(In&& x) override {
    for (auto&& y : f_(std::move(x)))
      this->held_.push_back(std::move(y));
  }
  F f_;
};

template <class In, class Out, class Make>
class stateful_map_concat_stage final : public expanding_stage<In, Out> {
public:
  stateful_map_concat_stage(island_context& ctx, outlet_ptr<In> up, decider d, Make make)
    : expanding_stage<In, Out>(ctx, std::move(up), "stateful_map_concat", std::move(d)),
      make_(std::move(make)), f_(std::in_place, make_()) {}

private:
  void expand(In&& x) override {
    for (auto&& y : (*f_)(std::move(x)))
      this->held_.push_back(std::move(y));
  }
  void on_restart() override { f_.emplace(make_()); }
  Make make_;
  std::optional<std::invoke_result_t<Make&>> f_;  // lambdas cannot be assigned
};

template <class In, class Acc, class F>
class scan_stage final : public expanding_stage<In, Acc> {
public:
  scan_stage(island_context& ctx, outlet_ptr<In> up, decider d, Acc zero, F f, bool emit_each)
    : expanding_stage<In, Acc>(ctx, std::move(up), emit_each ? "scan" : "fold", std::move(d)),
      zero_(zero), acc_(std::move(zero)), f_(std::move(f)), emit_each_(emit_each) {
    if (emit_each_)
      this->held_.push_back(acc_);
  }

private:
  void expand(In&& x) override {
    acc_ = f_(std::move(acc_), std::move(x));
    if (emit_each_)
      this->held_.push_back(acc_);
  }
  bool on_upstream_done() override {
    if (!emit_each_)
      this->held_.push_back(std::move(acc_));
    return true;
  }
  void on_restart() override { acc_ = zero_; }
  Acc zero_;
  Acc acc_;
  F f_;
  bool emit_each_;
};

} // namespace detail

template <class F>
auto map(F f) {
  return [f](const auto& src) {
    using In = detail::element_of<decltype(src)>;
    using Out = std::decay_t<std::invoke_result_t<F&, In&&>>;
    return detail::stage_source<Out>(src, [f](auto& ctx, auto up, decider d) {
      return detail::outlet_ptr<Out>{
        std::make_unique<detail::map_stage<In, Out, F>>(ctx, std::move(up), std::move(d), f)};
    });
  };
}

template <class P>
auto filter(P p) {
  return [p](const auto& src) {
    using T = detail::element_of<decltype(src)>;
    return detail::stage_source<T>(src, [p](auto& ctx, auto up, decider d) {
      return detail::outlet_ptr<T>{
        std::make_unique<detail::filter_stage<T, P>>(ctx, std::move(up), std::move(d), p)};
    });
  };
}

/// f returns std::optional<U>: the values it holds go on, the empty ones are dropped.
template <class F>
auto collect(F f) {
  return [f](const auto& src) {
    using In = detail::element_of<decltype(src)>;
    using Opt = std::decay_t<std::invoke_result_t<F&, In&&>>;
    using Out = typename Opt::value_type;
    auto as_list = [f](In x) mutable {
      std::optional<Out> r = f(std::move(x));
      return r ? std::vector<Out>{std::move(*r)} : std::vector<Out>{};
    };
    return detail::stage_source<Out>(src, [as_list](auto& ctx, auto up, decider d) {
      using stage = detail::map_concat_stage<In, Out, decltype(as_list)>;
      return detail::outlet_ptr<Out>{std::make_unique<stage>(ctx, std::move(up), std::move(d), as_list)};
    });
  };
}

/// f returns a container; its elements go on in order.
template <class F>
auto map_concat(F f) {
  return [f](const auto& src) {
    using In = detail::element_of<decltype(src)>;
    using C = std::decay_t<std::invoke_result_t<F&, In&&>>;
    using Out = std::decay_t<decltype(*std::begin(std::declval<C&>()))>;
    return detail::stage_source<Out>(src, [f](auto& ctx, auto up, decider d) {
      using stage = detail::map_concat_stage<In, Out, F>;
      return detail::outlet_ptr<Out>{std::make_unique<stage>(ctx, std::move(up), std::move(d), f)};
    });
  };
}

/// make() returns a (mutable) function from an element to a container.
template <class Make>
auto stateful_map_concat(Make make) {
  return [make](const auto& src) {
    using In = detail::element_of<decltype(src)>;
    using Fn = std::invoke_result_t<Make&>;
    using C = std::decay_t<std::invoke_result_t<Fn&, In&&>>;
    using Out = std::decay_t<decltype(*std::begin(std::declval<C&>()))>;
    return detail::stage_source<Out>(src, [make](auto& ctx, auto up, decider d) {
      using stage = detail::stateful_map_concat_stage<In, Out, Make>;
      return detail::outlet_ptr<Out>{std::make_unique<stage>(ctx, std::move(up), std::move(d), make)};
    });
  };
}

namespace detail {
template <class Acc, class F>
auto accumulate_op(Acc zero, F f, bool emit_each) {
  return [zero, f, emit_each](const auto& src) {
    using In = element_of<decltype(src)>;
    return stage_source<Acc>(src, [zero, f, emit_each](auto& ctx, auto up, decider d) {
      return outlet_ptr<Acc>{std::make_unique<scan_stage<In, Acc, F>>(ctx, std::move(up), std::move(d),
                                                                       zero, f, emit_each)};
    });
  };
}
} // namespace detail

template <class Acc, class F>
auto scan(Acc zero, F f) {
  return detail::accumulate_op(std::move(zero), std::move(f), true);
}

template <class Acc, class F>
auto fold(Acc zero, F f) {
  return detail::accumulate_op(std::move(zero), std::move(f), false);
}

} // namespace troupe::streams
