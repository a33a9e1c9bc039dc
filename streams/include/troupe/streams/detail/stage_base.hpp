// stage_base<In, Out>: what most single-input stages share: the upstream outlet,
// the stage's name, its decider, a scratch batch, and running user functions
// under supervision (exceptions become errors; the decider says stop / resume /
// restart).
#pragma once

#include "troupe/streams/detail/guarded.hpp"
#include "troupe/streams/detail/stage.hpp"

#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace troupe::streams::detail {

template <class In, class Out>
class stage_base : public outlet<Out> {
public:
  void cancel() override {
    if (cancelled_)
      return;
    cancelled_ = true;
    up_->cancel();
  }

protected:
  stage_base(island_context& ctx, outlet_ptr<In> up, std::string_view kind, decider d)
    : ctx_(ctx), up_(std::move(up)), name_(ctx.stage_name(kind)), decider_(std::move(d)) {}

  /// Pulls at most `max` upstream elements into scratch_ (cleared first); a
  /// failure of the upstream becomes this stage's failure.
  pull_status pull_up(std::size_t max) {
    scratch_.clear();
    auto st = up_->pull(scratch_, max);
    if (st == pull_status::failed)
      this->failure_ = up_->failure();
    return st;
  }

  /// Pulls straight into `out` (stages whose output type is their input type);
  /// a failure of the upstream becomes this stage's failure.
  pull_status pull_through(std::vector<In>& out, std::size_t max) {
    auto st = up_->pull(out, max);
    if (st == pull_status::failed)
      this->failure_ = up_->failure();
    return st;
  }

  /// Repeats `step()` (which pulls upstream and appends to `out`) until `out`
  /// grew, upstream stops being ready, or the step fails. A stage that keeps
  /// dropping everything yields the actor after a few rounds (pending + wake).
  template <class Step>
  pull_status until_emitted(std::vector<Out>& out, Step&& step) {
    auto before = out.size();
    for (int round = 0; round < 16; ++round) {
      auto st = step();
      if (st != pull_status::ready || out.size() > before)
        return st;
    }
    ctx_.wake();
    return pull_status::pending;
  }

  /// For a stage whose output type is its input type: pulls straight into `out`
  /// and works on the new tail in place, so fused stages share one buffer (no copy,
  /// no second buffer to alias). fn(x) may change x and returns whether x stays; an
  /// element whose fn threw (resume, restart) does not stay.
  template <class Fn>
  pull_status pull_in_place(std::vector<Out>& out, std::size_t max, Fn&& fn) {
    static_assert(std::is_same_v<In, Out>);
    return until_emitted(out, [&] {
      auto start = out.size();
      auto st = pull_through(out, max);
      if (st != pull_status::ready)
        return st;
      auto keep = start;
      bool ok = guarded_loop(out.size() - start, [&](std::size_t i) {
        auto& x = out[start + i];
        if (!fn(x))
          return;
        if (keep != start + i)
          out[keep] = std::move(x);
        ++keep;
      });
      out.resize(keep);
      return ok ? pull_status::ready : pull_status::failed;
    });
  }

  /// Calls body(i) for i in [0, n). When body throws at i, the decider decides:
  /// stop -> returns false (failure_ names the stage); resume / restart -> skips
  /// element i (restart calls on_restart() first) and goes on.
  template <class Body>
  bool guarded_loop(std::size_t n, Body&& body) {
    auto end = detail::guarded_loop(
      n, [&](std::size_t i) { body(i); return true; },
      [this](const error& e) { return user_failed(e); });
    return end == loop_end::completed;
  }

  /// A user function failed with `e` (thrown, or an async error reply). Returns
  /// whether the stage goes on; on stop, failure_ is set and upstream cancelled.
  bool user_failed(const error& e) {
    switch (decide(decider_, e)) {
      case directive::resume:
        return true;
      case directive::restart:
        on_restart();
        return true;
      case directive::stop:
        break;
    }
    this->failure_ = stage_error(ctx_, name_, e);
    cancel();
    return false;
  }

  /// Resets the stage's state for the restart directive.
  virtual void on_restart() {}

  island_context& ctx_;
  outlet_ptr<In> up_;
  std::string name_;
  decider decider_;
  std::vector<In> scratch_;
  bool cancelled_ = false;
};

} // namespace troupe::streams::detail
