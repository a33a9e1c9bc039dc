// kill_switch: stops running streams from outside, from any thread.
//
//   troupe::streams::kill_switch ks;
//   auto done = ticks.via(ks.flow()).to(ignore<int>()).run(node);
//   ks.shutdown();              // the stream completes; its upstream is cancelled
//   ks.abort(error{...});       // the stream fails with that error
//
// One switch may sit in any number of streams and places (Akka's
// SharedKillSwitch; use a switch in one place for a UniqueKillSwitch). A stream
// materialized after the switch was triggered stops at once.
//
// Thread-safety: every member may be called from any thread.
#pragma once

#include "troupe/streams/detail/expanding_stage.hpp"
#include "troupe/streams/detail/lifeline.hpp"
#include "troupe/streams/source.hpp"

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>

namespace troupe::streams {

class kill_switch {
public:
  kill_switch() : st_(std::make_shared<state>()) {}

  void shutdown() { trigger(error{}); }
  void abort(error why) {
    if (!why)
      why = error{errc::stopped, "kill switch aborted"};
    trigger(std::move(why));
  }

  /// An operator that passes elements until the switch is triggered.
  auto flow() const {
    auto st = st_;
    return [st](const auto& src) {
      using T = detail::element_of<decltype(src)>;
      return detail::stage_source<T>(src, [st](auto& ctx, auto up, decider d) {
        return detail::outlet_ptr<T>{std::make_unique<stage<T>>(ctx, std::move(up), std::move(d), st)};
      });
    };
  }

private:
  struct state {
    std::mutex mtx;
    std::optional<error> triggered;  ///< empty error: shutdown
    std::uint64_t seq = 0;
    std::map<std::uint64_t, std::function<void()>> wakers;
  };

  void trigger(error why) {
    std::map<std::uint64_t, std::function<void()>> wakers;
    {
      std::lock_guard<std::mutex> guard{st_->mtx};
      if (st_->triggered)
        return;
      st_->triggered = std::move(why);
      wakers = st_->wakers;
    }
    for (auto& [id, wake] : wakers)
      wake();
  }

  template <class T>
  class stage final : public detail::stage_base<T, T> {
  public:
    stage(detail::island_context& ctx, detail::outlet_ptr<T> up, decider d, std::shared_ptr<state> st)
      : detail::stage_base<T, T>(ctx, std::move(up), "kill_switch", std::move(d)), st_(std::move(st)) {
      auto post = ctx.poster();
      auto wake = [post, guard = life_.token(), &ctx] {
        post([guard, &ctx] {
          if (guard.lock())
            ctx.wake();
        });
      };
      std::lock_guard<std::mutex> lock{st_->mtx};
      id_ = ++st_->seq;
      st_->wakers.emplace(id_, std::move(wake));
    }
    ~stage() override {
      std::lock_guard<std::mutex> lock{st_->mtx};
      st_->wakers.erase(id_);
    }

    detail::pull_status pull(std::vector<T>& out, std::size_t max) override {
      std::optional<error> why;
      {
        std::lock_guard<std::mutex> lock{st_->mtx};
        why = st_->triggered;
      }
      if (why) {
        this->cancel();
        return *why ? this->fail_with(std::move(*why)) : detail::pull_status::done;
      }
      auto st = this->pull_through(out, max);
      return st;
    }

  private:
    std::shared_ptr<state> st_;
    std::uint64_t id_ = 0;
    detail::lifeline life_;
  };

  std::shared_ptr<state> st_;
};

} // namespace troupe::streams
