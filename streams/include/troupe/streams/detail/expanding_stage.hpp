// expanding_stage<In, Out>: a stage that turns each input into zero or more
// outputs and may hold some back (map_concat, scan, grouped, ...). Held outputs
// are emitted first, within the downstream's request.
#pragma once

#include "troupe/streams/detail/stage_base.hpp"

#include <deque>
#include <type_traits>
#include <utility>
#include <vector>

namespace troupe::streams::detail {

template <class S>
using element_of = typename std::decay_t<S>::element_type;

/// Stages that turn one element into zero or more and may hold some back: the
/// held elements are emitted first, within `max`.
template <class In, class Out>
class expanding_stage : public stage_base<In, Out> {
public:
  pull_status pull(std::vector<Out>& out, std::size_t max) override {
    if (drain(out, max))
      return pull_status::ready;
    if (upstream_done_)
      return finish_status_;
    return this->until_emitted(out, [&] {
      auto st = this->pull_up(max);
      if (st == pull_status::done || st == pull_status::failed) {
        upstream_done_ = true;
        finish_status_ = st;
        if (st == pull_status::done && !on_upstream_done()) {
          finish_status_ = pull_status::failed;
        }
        return drain(out, max) ? pull_status::ready : finish_status_;
      }
      if (st != pull_status::ready)
        return st;
      auto& in = this->scratch_;
      if (!this->guarded_loop(in.size(), [&](std::size_t i) { expand(std::move(in[i])); }))
        return pull_status::failed;
      drain(out, max);
      return pull_status::ready;
    });
  }

protected:
  using stage_base<In, Out>::stage_base;
  /// Appends the outputs of one input to held_.
  virtual void expand(In&& x) = 0;
  /// Upstream completed: may append final outputs; false means failed.
  virtual bool on_upstream_done() { return true; }

  bool drain(std::vector<Out>& out, std::size_t max) {
    std::size_t k = 0;
    for (; k < max && !held_.empty(); ++k) {
      out.push_back(std::move(held_.front()));
      held_.pop_front();
    }
    return k > 0;
  }

  std::deque<Out> held_;
  bool upstream_done_ = false;
  pull_status finish_status_ = pull_status::done;
};

} // namespace troupe::streams::detail
