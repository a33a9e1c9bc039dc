// Asynchronous operators: each element starts an asynchronous call; at most
// `parallelism` elements are held by the stage (in flight, waiting for their
// key, or answered and not yet emitted), so a slow callee slows the source.
//
//   map_async(parallelism, f)                  outputs in input order
//   map_async_unordered(parallelism, f)        outputs as answers arrive
//   map_async_partitioned(parallelism, key, f) one call in flight per key: the
//                                              order is kept per key, different
//                                              keys run in parallel
//
// f(x, reply) starts the call and returns at once; the call ends by invoking
// reply(expected<R>) exactly once, from any thread (later invocations are
// ignored). reply.self() is the island's actor, for in-actor asks:
//
//   map_async(8, [target](int x, async_reply<int> reply) {
//     troupe::ask<int>(reply.self(), target, 1s, x).then(reply);
//   })
//
// An error answer is a failure the stream's decider judges (stop fails the
// stream naming the stage; resume and restart drop the element).
#pragma once

#include "troupe/streams/detail/lifeline.hpp"
#include "troupe/streams/detail/stage_base.hpp"
#include "troupe/streams/source.hpp"

#include <caf/event_based_actor.hpp>

#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <type_traits>
#include <unordered_map>
#include <unordered_set>
#include <utility>

namespace troupe::streams {

/// The answer channel of one asynchronous call (see above). Copyable.
template <class R>
class async_reply {
public:
  /// Delivers the answer; `on_island`: the caller runs on the island's actor.
  using deliver_fn = std::function<void(expected<R>, bool on_island)>;

  async_reply(detail::island_context& ctx, deliver_fn deliver)
    : ctx_(&ctx), deliver_(std::make_shared<deliver_fn>(std::move(deliver))) {}

  /// From any thread: the answer reaches the stage in a message to the island.
  void operator()(expected<R> r) const { deliver(std::move(r), false); }

  /// The same, without the message; only from code running on the island's actor
  /// (e.g. an in-actor ask's callback).
  void here(expected<R> r) const { deliver(std::move(r), true); }

  /// The island's actor; only valid inside f and in callbacks that run on it.
  caf::event_based_actor* self() const noexcept { return ctx_->self(); }
  /// Runs `fn` on the island after `delay` (e.g. a retry). Call only on the island.
  void schedule(duration delay, std::function<void()> fn) const {
    ctx_->schedule(delay, std::move(fn));
  }

private:
  void deliver(expected<R> r, bool on_island) const {
    if (auto d = std::exchange(*deliver_, nullptr))
      d(std::move(r), on_island);
  }

  detail::island_context* ctx_;
  std::shared_ptr<deliver_fn> deliver_;  // shared by copies: the first call wins
};

namespace detail {

enum class async_order { ordered, unordered, partitioned };

struct no_key {
  bool operator==(const no_key&) const = default;
};

template <class In, class Out, class F, class KeyFn>
class async_stage final : public stage_base<In, Out> {
public:
  using key_type = std::decay_t<std::invoke_result_t<KeyFn&, const In&>>;

  async_stage(island_context& ctx, outlet_ptr<In> up, decider d, std::size_t parallelism,
              async_order order, F f, KeyFn key)
    : stage_base<In, Out>(ctx, std::move(up), order == async_order::partitioned ? "map_async_partitioned"
                                              : order == async_order::ordered ? "map_async"
                                                                              : "map_async_unordered",
                          std::move(d)),
      parallelism_(std::max<std::size_t>(parallelism, 1)), order_(order), f_(std::move(f)),
      key_(std::move(key)) {}

  pull_status pull(std::vector<Out>& out, std::size_t max) override {
    if (failed_)
      return pull_status::failed;
    if (auto st = top_up(); st == pull_status::failed)
      return st;
    auto emitted = emit(out, max);
    if (failed_)
      return pull_status::failed;
    if (emitted)
      return pull_status::ready;
    return upstream_done_ && held() == 0 ? pull_status::done : pull_status::pending;
  }

  /// Elements the stage holds now (tests assert it stays within parallelism).
  std::size_t held() const noexcept {
    return ordered_.size() + in_flight_.size() + answered_.size() + waiting_count_;
  }

private:
  /// A call of the ordered form; ordered_ holds them by consecutive id.
  struct slot {
    std::uint64_t id;
    std::optional<expected<Out>> result;
  };

  pull_status top_up() {
    while (!upstream_done_ && held() < parallelism_) {
      auto st = this->pull_up(parallelism_ - held());
      if (st == pull_status::pending)
        break;
      if (st == pull_status::done) {
        upstream_done_ = true;
        break;
      }
      if (st == pull_status::failed) {
        failed_ = true;
        return st;
      }
      for (auto& x : this->scratch_)
        admit(std::move(x));
    }
    return pull_status::ready;
  }

  void admit(In x) {
    auto k = key_(std::as_const(x));
    if (order_ == async_order::partitioned && busy_.count(k)) {
      waiting_[k].push_back(std::move(x));
      ++waiting_count_;
      return;
    }
    start(std::move(k), std::move(x));
  }

  void start(key_type k, In x) {
    auto id = ++seq_;
    if (order_ == async_order::ordered) {
      ordered_.push_back(slot{id, std::nullopt});
    } else {
      if (order_ == async_order::partitioned)
        busy_.insert(k);
      in_flight_.emplace(id, std::move(k));
    }
    if (!post_)
      post_ = this->ctx_.poster();
    // An answer on the island (outside f itself, which may answer at once while
    // the stage admits elements) is taken without a message.
    auto deliver = [post = post_, id, guard = life_.token(), this](expected<Out> r,
                                                                    bool on_island) mutable {
      if (on_island && guard.lock() && !in_call_) {
        on_reply(id, std::move(r));
        return;
      }
      post([guard, id, this, r = std::move(r)]() mutable {
        if (guard.lock())
          on_reply(id, std::move(r));
      });
    };
    in_call_ = true;
    auto ok = this->guarded_loop(1, [&](std::size_t) { f_(std::move(x), async_reply<Out>{this->ctx_, deliver}); });
    in_call_ = false;
    if (!ok)
      failed_ = true;
  }

  void on_reply(std::uint64_t id, expected<Out> r) {
    if (order_ == async_order::ordered) {
      if (ordered_.empty() || id < ordered_.front().id)
        return;
      auto& s = ordered_[static_cast<std::size_t>(id - ordered_.front().id)];
      if (!s.result)
        s.result.emplace(std::move(r));
    } else {
      auto i = in_flight_.find(id);
      if (i == in_flight_.end())
        return;
      auto k = std::move(i->second);
      in_flight_.erase(i);
      answered_.push_back(std::move(r));
      if (order_ == async_order::partitioned)
        release_key(k);
    }
    this->ctx_.wake();
  }

  void release_key(const key_type& k) {
    auto w = waiting_.find(k);
    if (w == waiting_.end() || w->second.empty()) {
      busy_.erase(k);
      if (w != waiting_.end())
        waiting_.erase(w);
      return;
    }
    auto next = std::move(w->second.front());
    w->second.pop_front();
    --waiting_count_;
    if (w->second.empty())
      waiting_.erase(w);
    start(k, std::move(next));
  }

  // Emits answers within `max`: in input order (ordered) or as they came.
  bool emit(std::vector<Out>& out, std::size_t max) {
    bool any = false;
    auto limit = out.size() + max;
    while (out.size() < limit) {
      std::optional<expected<Out>> r;
      if (order_ == async_order::ordered) {
        if (ordered_.empty() || !ordered_.front().result)
          break;
        r = std::move(ordered_.front().result);
        ordered_.pop_front();
      } else {
        if (answered_.empty())
          break;
        r = std::move(answered_.front());
        answered_.pop_front();
      }
      if (*r) {
        out.push_back(std::move(**r));
        any = true;
      } else if (!this->user_failed(r->error())) {
        failed_ = true;
        return any;
      }
    }
    return any;
  }

  struct key_hash {
    std::size_t operator()(const key_type& k) const {
      if constexpr (std::is_same_v<key_type, no_key>)
        return 0;
      else
        return std::hash<key_type>{}(k);
    }
  };

  std::size_t parallelism_;
  async_order order_;
  F f_;
  KeyFn key_;
  std::function<void(std::function<void()>)> post_;
  bool in_call_ = false;  ///< inside f: answers go through a message
  std::deque<slot> ordered_;
  std::unordered_map<std::uint64_t, key_type> in_flight_;  ///< unordered forms: id -> key
  std::deque<expected<Out>> answered_;                     ///< unordered forms, by arrival
  std::unordered_set<key_type, key_hash> busy_;
  std::unordered_map<key_type, std::deque<In>, key_hash> waiting_;
  std::size_t waiting_count_ = 0;
  std::uint64_t seq_ = 0;
  bool upstream_done_ = false;
  bool failed_ = false;
  lifeline life_;
};

template <class R, class F, class KeyFn>
auto async_op(std::size_t parallelism, async_order order, F f, KeyFn key) {
  return [=](const auto& src) {
    using In = typename std::decay_t<decltype(src)>::element_type;
    return stage_source<R>(src, [=](auto& ctx, auto up, decider d) {
      return outlet_ptr<R>{std::make_unique<async_stage<In, R, F, KeyFn>>(
        ctx, std::move(up), std::move(d), parallelism, order, f, key)};
    });
  };
}

} // namespace detail

/// R must be given: map_async<R>(parallelism, f) with f(In, async_reply<R>).
template <class R, class F>
auto map_async(std::size_t parallelism, F f) {
  return detail::async_op<R>(parallelism, detail::async_order::ordered, std::move(f),
                             [](const auto&) { return detail::no_key{}; });
}

template <class R, class F>
auto map_async_unordered(std::size_t parallelism, F f) {
  return detail::async_op<R>(parallelism, detail::async_order::unordered, std::move(f),
                             [](const auto&) { return detail::no_key{}; });
}

/// key(const In&) -> a hashable key; one call per key in flight.
template <class R, class KeyFn, class F>
auto map_async_partitioned(std::size_t parallelism, KeyFn key, F f) {
  return detail::async_op<R>(parallelism, detail::async_order::partitioned, std::move(f),
                             std::move(key));
}

} // namespace troupe::streams
