// Restarts with backoff and a restart limit.
//
// restart_source(settings, make): runs make() (a source<T>) and, when it fails,
// runs a fresh one after a backoff. Completion of the inner source completes the
// stream. The elements it emitted before failing are kept.
//
// restart_flow(settings, make): an operator that runs make() (a flow, or any
// operator) on this stream and, when that flow fails, a fresh make() after a
// backoff, fed with the rest of the stream (Akka's RestartFlow.onFailuresWithBackoff).
// Elements in flight inside the failed flow are lost: those it took from upstream
// and had not emitted (the failing element itself, a map_async's calls, a
// grouped's partial group, the buffers of an .async() inside it), at most what
// its stages hold. The upstream is not restarted: it waits (backpressured) during
// the backoff, and its completion or failure ends the stream, not a restart (a
// failure of the flow after the upstream completed fails the stream, as there is
// nothing to feed a fresh one). The flow completing (e.g. take) completes the
// stream and cancels the upstream.
//
// Both allow at most `max_restarts` restarts within `within`; one more failure
// inside the window fails the stream with errc::restart_limit naming the stage
// and the last cause, so a crash-looping stage stops instead of restarting
// forever (akka/akka-core#29550: "immortal" restarts).
//
// The inner source or flow is built in the same island as the restart stage,
// with the decider in effect there; an .async() inside make() runs its stages
// apart (for a flow, its input then crosses to that island through a buffer).
#pragma once

#include "troupe/actors/supervisor.hpp"
#include "troupe/streams/detail/expanding_stage.hpp"
#include "troupe/streams/detail/exported_outlet.hpp"
#include "troupe/streams/detail/lifeline.hpp"
#include "troupe/streams/source.hpp"

#include <chrono>
#include <deque>
#include <functional>
#include <optional>
#include <random>
#include <utility>

namespace troupe::streams {

struct restart_settings {
  backoff_policy backoff{.min = std::chrono::milliseconds{100}, .max = std::chrono::seconds{10}};
  int max_restarts = 5;
  duration within = std::chrono::minutes{1};
};

namespace detail {

/// The failures of a restarting stage within the restart window.
class restart_window {
public:
  explicit restart_window(restart_settings s) : s_(std::move(s)) {}

  /// Records a failure now: the backoff before the restart, or nothing when
  /// max_restarts restarts already happened within the window.
  std::optional<duration> on_failure() {
    auto now = std::chrono::steady_clock::now();
    while (!failures_.empty() && now - failures_.front() > s_.within)
      failures_.pop_front();
    if (static_cast<int>(failures_.size()) >= s_.max_restarts)
      return std::nullopt;
    failures_.push_back(now);
    thread_local std::minstd_rand rng{std::random_device{}()};
    return s_.backoff.delay(static_cast<int>(failures_.size()),
                            std::uniform_real_distribution<double>{0.0, 1.0}(rng));
  }

  /// The stream's failure when on_failure() gave nothing.
  error limit_error(island_context& ctx, const std::string& stage, const error& cause) const {
    return error{errc::restart_limit, "stream '" + ctx.stream_name() + "': stage '" + stage
                                        + "' failed " + std::to_string(failures_.size() + 1)
                                        + " times within the restart window: " + cause.to_string()};
  }

  /// Restarts so far within the window.
  std::size_t restarts() const noexcept { return failures_.size(); }

private:
  restart_settings s_;
  std::deque<std::chrono::steady_clock::time_point> failures_;
};

/// Builds with `d` as the decider in effect (a restart builds outside the
/// blueprint's own build, where the island's decider would apply).
template <class Build>
auto build_with(island_context& ctx, const decider& d, Build&& build) {
  auto outer = std::exchange(ctx.current_decider, d);
  auto out = build();
  ctx.current_decider = std::move(outer);
  return out;
}

template <class T>
class restart_stage final : public outlet<T> {
public:
  restart_stage(island_context& ctx, restart_settings s, std::function<source<T>()> make)
    : ctx_(ctx), name_(ctx.stage_name("restart_source")), decider_(ctx.current_decider),
      window_(std::move(s)), make_(std::move(make)), inner_(make_().build(ctx)) {}

  pull_status pull(std::vector<T>& out, std::size_t max) override {
    if (!inner_)
      return pull_status::pending;  // backing off
    auto before = out.size();
    auto st = inner_->pull(out, max);
    if (st != pull_status::failed)
      return st;
    auto cause = inner_->failure();
    inner_.reset();
    auto delay = window_.on_failure();
    if (!delay)
      return this->fail_with(window_.limit_error(ctx_, name_, cause));
    ctx_.schedule(*delay, life_.guard([this] {
      if (cancelled_)
        return;
      inner_ = build_with(ctx_, decider_, [this] { return make_().build(ctx_); });
      ctx_.wake();
    }));
    // Elements the source emitted in the pull that failed are kept.
    return out.size() > before ? pull_status::ready : pull_status::pending;
  }

  void cancel() override {
    cancelled_ = true;
    if (inner_)
      inner_->cancel();
  }

  /// Restarts so far within the window (tests).
  std::size_t restarts() const noexcept { return window_.restarts(); }

private:
  island_context& ctx_;
  std::string name_;
  decider decider_;
  restart_window window_;
  std::function<source<T>()> make_;
  outlet_ptr<T> inner_;
  bool cancelled_ = false;
  lifeline life_;
};

/// restart_flow's stage: pulls the current flow, whose first stage pulls the
/// upstream through a feed (this stage's), and starts a fresh flow after a
/// failure. The feed never passes a cancel on: the flow cancels its input when it
/// fails too, and the upstream must then stay for the next flow; this stage
/// cancels the upstream itself (the flow completed, the stream cancelled, the
/// restart limit).
template <class In, class Out>
class restart_flow_stage final : public outlet<Out> {
public:
  using make_fn = std::function<source<Out>(const source<In>&)>;

  restart_flow_stage(island_context& ctx, outlet_ptr<In> up, decider d, restart_settings s,
                     make_fn make)
    : ctx_(ctx), name_(ctx.stage_name("restart_flow")), up_(std::move(up)), decider_(std::move(d)),
      window_(std::move(s)), make_(std::move(make)), home_(home_island::of(ctx)) {
    start();
  }

  pull_status pull(std::vector<Out>& out, std::size_t max) override {
    if (finished_)
      return pull_status::done;
    if (!inner_)
      return pull_status::pending;  // backing off
    if (feed_out_ && !feed_sent_)
      feed_sent_ = feed_out_->drive();  // the flow's input runs in another island
    auto before = out.size();
    auto st = inner_->pull(out, max);
    if (st == pull_status::ready || st == pull_status::pending)
      return st;
    if (st == pull_status::done) {
      finish();
      return pull_status::done;
    }
    auto next = restart(inner_->failure());
    // Elements the flow emitted in the pull that failed are kept.
    return next == pull_status::pending && out.size() > before ? pull_status::ready : next;
  }

  void cancel() override { finish(); }

  /// Restarts so far within the window (tests).
  std::size_t restarts() const noexcept { return window_.restarts(); }

private:
  /// The flow's input in this island: the upstream, minus cancellation.
  class feed final : public outlet<In> {
  public:
    explicit feed(restart_flow_stage* stage) : stage_(stage) {}
    pull_status pull(std::vector<In>& out, std::size_t max) override {
      if (detached_)
        return pull_status::done;
      return stage_->pull_upstream(out, max, this->failure_);
    }
    void cancel() override { detached_ = true; }

  private:
    restart_flow_stage* stage_;  ///< outlives the feed (owns the flow and the feed's boundary)
    bool detached_ = false;
  };

  pull_status pull_upstream(std::vector<In>& out, std::size_t max, error& failure) {
    if (up_state_ == pull_status::pending) {
      auto st = up_->pull(out, max);
      if (st == pull_status::failed)
        up_failure_ = up_->failure();
      if (st == pull_status::done || st == pull_status::failed)
        up_state_ = st;
      if (st != pull_status::failed)
        return st;
    }
    if (up_state_ == pull_status::failed)
      failure = up_failure_;
    return up_state_;
  }

  void start() {
    ++generation_;
    source<In> input{[this, gen = generation_, home = home_, alive = life_.token()](
                       island_context& c) -> outlet_ptr<In> {
      if (home.is(c))
        return std::make_unique<feed>(this);
      return receive_from_home<In>(c, home, [this, gen, alive](caf::actor peer, std::uint64_t link,
                                                              std::size_t cap) {
        if (alive.lock() && gen == generation_ && !finished_ && !feed_out_)
          feed_out_ = std::make_unique<boundary_out<In>>(ctx_, std::make_unique<feed>(this),
                                                         std::move(peer), link, cap);
        ctx_.wake();
      });
    }};
    inner_ = build_with(ctx_, decider_, [&] { return make_(input).build(ctx_); });
  }

  pull_status restart(error cause) {
    feed_out_.reset();
    feed_sent_ = false;
    inner_.reset();  // elements the flow held are lost here
    if (up_state_ != pull_status::pending) {
      // The upstream ended: a failure of it passes on; after its completion a
      // fresh flow would get nothing, so the flow's failure is the stream's.
      finished_ = true;
      return this->fail_with(std::move(cause));
    }
    auto delay = window_.on_failure();
    if (!delay) {
      finish();
      return this->fail_with(window_.limit_error(ctx_, name_, cause));
    }
    ctx_.schedule(*delay, life_.guard([this] {
      if (finished_)
        return;
      start();
      ctx_.wake();
    }));
    return pull_status::pending;
  }

  void finish() {
    if (finished_)
      return;
    finished_ = true;
    if (inner_)
      inner_->cancel();
    if (up_state_ == pull_status::pending)
      up_->cancel();
  }

  island_context& ctx_;
  std::string name_;
  outlet_ptr<In> up_;
  decider decider_;
  restart_window window_;
  make_fn make_;
  home_island home_;
  outlet_ptr<Out> inner_;                       ///< the current flow; empty while backing off
  std::unique_ptr<boundary_out<In>> feed_out_;  ///< its input, when that runs in another island
  bool feed_sent_ = false;
  std::uint64_t generation_ = 0;
  pull_status up_state_ = pull_status::pending;  ///< pending: the upstream runs
  error up_failure_;
  bool finished_ = false;
  lifeline life_;
};

} // namespace detail

template <class Make>
auto restart_source(restart_settings s, Make make) {
  using T = typename std::invoke_result_t<Make&>::element_type;
  std::function<source<T>()> f = std::move(make);
  return source<T>{[s, f](detail::island_context& ctx) -> detail::outlet_ptr<T> {
    return std::make_unique<detail::restart_stage<T>>(ctx, s, f);
  }};
}

/// make() returns a flow<In, Out> or any operator from source<In> to source<Out>.
template <class Make>
auto restart_flow(restart_settings s, Make make) {
  return [s, make](const auto& src) {
    using In = detail::element_of<decltype(src)>;
    using Op = std::invoke_result_t<Make&>;
    using Out = typename std::invoke_result_t<const Op&, const source<In>&>::element_type;
    typename detail::restart_flow_stage<In, Out>::make_fn fresh = [make](const source<In>& in) mutable {
      return make()(in);
    };
    return detail::stage_source<Out>(src, [s, fresh](detail::island_context& ctx,
                                                     detail::outlet_ptr<In> up, decider d) {
      return detail::outlet_ptr<Out>{std::make_unique<detail::restart_flow_stage<In, Out>>(
        ctx, std::move(up), std::move(d), s, fresh)};
    });
  };
}

} // namespace troupe::streams
