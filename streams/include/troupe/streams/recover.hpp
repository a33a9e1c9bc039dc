// recover(f): when the upstream fails, f(error) -> std::optional<T> may give one
// last element; the stream then completes. An empty optional passes the failure on.
#pragma once

#include "troupe/streams/detail/expanding_stage.hpp"
#include "troupe/streams/source.hpp"

#include <optional>

namespace troupe::streams {

namespace detail {

template <class T, class F>
class recover_stage final : public stage_base<T, T> {
public:
  recover_stage(island_context& ctx, outlet_ptr<T> up, decider d, F f)
    : stage_base<T, T>(ctx, std::move(up), "recover", std::move(d)), f_(std::move(f)) {}

  pull_status pull(std::vector<T>& out, std::size_t max) override {
    if (recovered_)
      return pull_status::done;
    auto st = this->up_->pull(out, max);
    if (st != pull_status::failed)
      return st;
    recovered_ = true;
    std::optional<T> last;
    try {
      last = f_(this->up_->failure());
    } catch (const std::exception& e) {
      return this->fail_with(stage_error(this->ctx_, this->name_, error{errc::actor_failed, e.what()}));
    }
    if (!last)
      return this->fail_with(this->up_->failure());
    out.push_back(std::move(*last));
    return pull_status::ready;
  }

private:
  F f_;
  bool recovered_ = false;
};

} // namespace detail

template <class F>
auto recover(F f) {
  return [f](const auto& src) {
    using T = detail::element_of<decltype(src)>;
    return detail::stage_source<T>(src, [f](auto& ctx, auto up, decider d) {
      return detail::outlet_ptr<T>{
        std::make_unique<detail::recover_stage<T, F>>(ctx, std::move(up), std::move(d), f)};
    });
  };
}

} // namespace troupe::streams
