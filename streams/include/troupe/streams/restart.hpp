// restart_source(settings, make): runs make() (a source<T>) and, when it fails,
// runs a fresh one after a backoff, at most `max_restarts` times within `within`;
// one more failure inside the window fails the stream with errc::restart_limit
// naming the stage and the last cause, so a crash-looping source stops instead of
// restarting forever (akka/akka-core#29550: "immortal" restarts). Completion of
// the inner source completes the stream.
//
// The inner source is built in the same island as the restart stage (add .async()
// inside make() to run it apart); the elements it emitted before failing are kept.
#pragma once

#include "troupe/actors/supervisor.hpp"
#include "troupe/streams/detail/lifeline.hpp"
#include "troupe/streams/source.hpp"

#include <chrono>
#include <deque>
#include <functional>
#include <random>

namespace troupe::streams {

struct restart_settings {
  backoff_policy backoff{.min = std::chrono::milliseconds{100}, .max = std::chrono::seconds{10}};
  int max_restarts = 5;
  duration within = std::chrono::minutes{1};
};

namespace detail {

template <class T>
class restart_stage final : public outlet<T> {
public:
  restart_stage(island_context& ctx, restart_settings s, std::function<source<T>()> make)
    : ctx_(ctx), name_(ctx.stage_name("restart_source")), s_(std::move(s)), make_(std::move(make)),
      inner_(make_().build(ctx)) {}

  pull_status pull(std::vector<T>& out, std::size_t max) override {
    if (!inner_)
      return pull_status::pending;  // backing off
    auto st = inner_->pull(out, max);
    if (st != pull_status::failed)
      return st;
    auto cause = inner_->failure();
    inner_.reset();
    auto now = std::chrono::steady_clock::now();
    while (!failures_.empty() && now - failures_.front() > s_.within)
      failures_.pop_front();
    if (static_cast<int>(failures_.size()) >= s_.max_restarts)
      return this->fail_with(error{errc::restart_limit,
                                   "stream '" + ctx_.stream_name() + "': stage '" + name_ + "' failed "
                                     + std::to_string(failures_.size() + 1) + " times within the restart window: "
                                     + cause.to_string()});
    failures_.push_back(now);
    thread_local std::minstd_rand rng{std::random_device{}()};
    auto delay = s_.backoff.delay(static_cast<int>(failures_.size()),
                                  std::uniform_real_distribution<double>{0.0, 1.0}(rng));
    ctx_.schedule(delay, life_.guard([this] {
      if (cancelled_)
        return;
      inner_ = make_().build(ctx_);
      ctx_.wake();
    }));
    return pull_status::pending;
  }

  void cancel() override {
    cancelled_ = true;
    if (inner_)
      inner_->cancel();
  }

  /// Restarts so far within the window (tests).
  std::size_t restarts() const noexcept { return failures_.size(); }

private:
  island_context& ctx_;
  std::string name_;
  restart_settings s_;
  std::function<source<T>()> make_;
  outlet_ptr<T> inner_;
  std::deque<std::chrono::steady_clock::time_point> failures_;
  bool cancelled_ = false;
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

} // namespace troupe::streams
