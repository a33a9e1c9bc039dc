// Async boundaries: how elements cross from one island (actor) to another.
//
// Credit protocol over link_signal messages (one link per boundary):
//   - the receiving end (boundary_in, an outlet in the downstream island) owns a
//     buffer of `capacity` elements and the sending end (boundary_out, the
//     terminal of the upstream island) starts with exactly that much credit;
//   - the sender pulls at most its credit from its fused chain and sends it as one
//     batch message; credit shrinks by the batch's size;
//   - the receiver grants credit again (one demand message) only for elements its
//     downstream has consumed, once they reach half the capacity (batched demand);
//   - complete / fail travel after the last batch; cancel travels upstream.
// So the elements between the two islands (in messages and in the buffer) never
// exceed `capacity`, whatever the speed difference: a fast upstream waits for
// credit. The islands are linked: if one dies, the other's link_handler sees it
// (on_peer_down) and fails or cancels instead of waiting forever.
#pragma once

#include "troupe/streams/detail/stage.hpp"
#include "troupe/streams/stream_options.hpp"

#include <caf/event_based_actor.hpp>

#include <algorithm>
#include <deque>
#include <functional>
#include <memory>
#include <utility>
#include <vector>

namespace troupe::streams::detail {

template <class T>
class boundary_out;

template <class T>
class boundary_in final : public outlet<T>, public link_handler {
public:
  /// Spawns the upstream island, which runs `build_upstream` into a boundary_out.
  boundary_in(island_context& ctx, std::function<outlet_ptr<T>(island_context&)> build_upstream,
              std::size_t capacity, overflow_strategy overflow = overflow_strategy::backpressure)
    : ctx_(ctx), link_(next_link_id()), capacity_(std::max<std::size_t>(capacity, 1)),
      overflow_(overflow) {
    auto down = caf::actor_cast<caf::actor>(ctx.self());
    auto link = link_;
    auto cap = capacity_;
    name_ = ctx.stage_name("async");
    peer_ = ctx.spawn_island(name_, [build_upstream, down, link, cap](island_context& uctx) {
      auto up = build_upstream(uctx);
      return terminal_ptr{std::make_unique<boundary_out<T>>(uctx, std::move(up), down, link, cap)};
    });
    ctx_.add_link(link_, peer_.address(), this);
  }

  /// Connects to an upstream island that already runs (a fan-out hub).
  boundary_in(island_context& ctx, caf::actor upstream, std::uint64_t link, std::size_t capacity,
              std::string name)
    : ctx_(ctx), link_(link), capacity_(capacity), name_(std::move(name)), peer_(upstream) {
    ctx_.add_link(link_, peer_.address(), this);
  }

  ~boundary_in() override {
    if (!finished_)
      send(link_signal::cancel, 0);
    ctx_.remove_link(link_);
  }

  pull_status pull(std::vector<T>& out, std::size_t max) override {
    auto k = std::min(max, buffer_.size());
    for (std::size_t i = 0; i < k; ++i) {
      out.push_back(std::move(buffer_.front()));
      buffer_.pop_front();
    }
    consumed_ += k;
    if (!finished_ && overflow_ == overflow_strategy::backpressure
        && consumed_ >= std::max<std::size_t>(capacity_ / 2, 1)) {
      send(link_signal::demand, consumed_);
      consumed_ = 0;
    }
    if (k > 0)
      return pull_status::ready;
    if (failed_)
      return pull_status::failed;
    return completed_ ? pull_status::done : pull_status::pending;
  }

  void cancel() override {
    if (finished_)
      return;
    finished_ = true;
    buffer_.clear();
    send(link_signal::cancel, 0);
  }

  void on_signal(link_signal& s) override {
    if (finished_)
      return;
    switch (s.kind) {
      case link_signal::batch: {
        auto& v = *std::static_pointer_cast<std::vector<T>>(s.elements);
        if (overflow_ == overflow_strategy::backpressure) {
          for (auto& x : v)
            buffer_.push_back(std::move(x));
          break;
        }
        // The dropping strategies never slow the upstream: credit comes back on
        // receipt, and the buffer's bound is kept by dropping.
        for (auto& x : v)
          if (!admit(std::move(x)))
            return;
        send(link_signal::demand, v.size());
        break;
      }
      case link_signal::complete:
        completed_ = finished_ = true;
        break;
      case link_signal::fail:
        this->failure_ = std::move(s.err);
        failed_ = finished_ = true;
        break;
      default:
        return;
    }
    ctx_.wake();
  }

  void on_peer_down(const error& why) override {
    if (finished_)
      return;
    finished_ = failed_ = true;
    this->failure_ = error{why ? why.code() : errc::actor_down,
                           "stream '" + ctx_.stream_name() + "': the island before '" + name_
                             + "' ended without completing"
                             + (why ? ": " + why.message() : std::string{})};
    ctx_.wake();
  }

  /// Elements held in the buffer (tests and metrics).
  std::size_t buffered() const noexcept { return buffer_.size(); }

private:
  // One arriving element under a dropping strategy; false when the stream failed.
  bool admit(T&& x) {
    if (buffer_.size() < capacity_) {
      buffer_.push_back(std::move(x));
      return true;
    }
    switch (overflow_) {
      case overflow_strategy::drop_head:
        buffer_.pop_front();
        buffer_.push_back(std::move(x));
        return true;
      case overflow_strategy::drop_tail:
        buffer_.back() = std::move(x);
        return true;
      case overflow_strategy::drop_buffer:
        buffer_.clear();
        buffer_.push_back(std::move(x));
        return true;
      case overflow_strategy::drop_new:
        return true;
      default:
        break;
    }
    this->failure_ = error{errc::overloaded, "stream '" + ctx_.stream_name() + "': stage '" + name_
                                               + "': the buffer of " + std::to_string(capacity_)
                                               + " elements overflowed"};
    cancel();
    failed_ = true;
    ctx_.wake();
    return false;
  }

  void send(link_signal::kind_type k, std::uint64_t n) {
    if (ctx_.closed)
      return;  // the island is being destroyed; the link tells the peer
    ctx_.self()->send(peer_, link_signal{k, link_, n, nullptr, {}});
  }

  island_context& ctx_;
  std::uint64_t link_;
  std::size_t capacity_;
  overflow_strategy overflow_ = overflow_strategy::backpressure;
  std::string name_;
  caf::actor peer_;
  std::deque<T> buffer_;
  std::size_t consumed_ = 0;
  bool completed_ = false;
  bool failed_ = false;
  bool finished_ = false;  ///< no more signals expected or accepted
};

/// The terminal of an upstream island: pulls within its credit, sends batches.
template <class T>
class boundary_out final : public terminal, public link_handler {
public:
  boundary_out(island_context& ctx, outlet_ptr<T> up, caf::actor downstream, std::uint64_t link,
               std::size_t credit)
    : ctx_(ctx), up_(std::move(up)), down_(std::move(downstream)), link_(link), credit_(credit) {
    ctx_.add_link(link_, down_.address(), this);
  }
  ~boundary_out() override { ctx_.remove_link(link_); }

  bool drive() override {
    for (int round = 0; round < 64; ++round) {
      if (finished_)
        return true;
      if (credit_ == 0)
        return false;
      auto batch = std::make_shared<std::vector<T>>();
      auto max = std::min(credit_, ctx_.options().batch_size);
      batch->reserve(max);
      switch (up_->pull(*batch, max)) {
        case pull_status::ready:
          credit_ -= batch->size();
          ctx_.self()->send(down_, link_signal{link_signal::batch, link_, 0, std::move(batch), {}});
          break;
        case pull_status::pending:
          return false;
        case pull_status::done:
          ctx_.self()->send(down_, link_signal{link_signal::complete, link_, 0, nullptr, {}});
          return finished_ = true;
        case pull_status::failed:
          ctx_.self()->send(down_,
                            link_signal{link_signal::fail, link_, 0, nullptr, up_->failure()});
          return finished_ = true;
      }
    }
    ctx_.wake();
    return false;
  }

  void abort(const error&) override {}

  void on_signal(link_signal& s) override {
    if (s.kind == link_signal::demand) {
      credit_ += s.n;
    } else if (s.kind == link_signal::cancel) {
      up_->cancel();
      finished_ = true;
    }
    ctx_.wake();
  }

  void on_peer_down(const error&) override {
    if (!finished_)
      up_->cancel();
    finished_ = true;
    ctx_.wake();
  }

private:
  island_context& ctx_;
  outlet_ptr<T> up_;
  caf::actor down_;
  std::uint64_t link_;
  std::size_t credit_;
  bool finished_ = false;
};

} // namespace troupe::streams::detail
