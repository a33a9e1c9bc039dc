// Asking with source offsets: the ask flow (ask_sink.hpp) or the sharded entity
// flow (entity_sink.hpp) whose elements carry their source offset through the
// asks, and whose output says up to where the stream is acknowledged.
//
//   auto after = ts::committed_offset(*store, "readings", "tallies");   // commit_offsets.hpp
//   ts::events_by_tag(journal, "reading", *after)
//     .via(ts::entities_flow_with_offsets<tally, event_record>(
//       node, id_of, to_command,                        // as entities_flow
//       [](const event_record& e) { return e.offset; },  // the element's source offset
//       opts))                                           // -> offset_ack<done>
//     .via(ts::commit_offsets(store, "readings", "tallies"))
//     .to(ts::ignore<ts::offset_ack<done>>())
//     .run(node);
//
// Each output is an offset_ack: the element's offset, its reply, and the run's
// watermark: the highest offset at or below which every element of this run was
// acknowledged. Replies come in completion order (order is kept per key), so an
// element acknowledged before an earlier one leaves the watermark where it was;
// the watermark is what is safe to commit, and commit_offsets commits it.
//
// Contract:
// - offsets increase along the stream (journal offsets, line numbers, any
//   sequence): an offset at or below the one before fails the stream with
//   invalid_argument naming both (it would make the watermark meaningless);
// - at most `window` offsets are held (elements in flight, and acknowledged ones
//   behind an earlier one still in flight; 0: the flow's parallelism): when the
//   oldest element is slow, the stream admits no more than that behind it, so
//   memory stays bounded and a commit never waits on an unbounded backlog;
// - retries are ask_flow's (same options); an element that fails for good goes
//   to this flow's decider: stop fails the stream (the watermark stays below the
//   element, so a restart asks it again), resume drops it and the watermark moves
//   past it (the element is given up on, and will not be asked again after a
//   restart from a later commit).
//
// Thread-safety: the blueprints may be run any number of times, concurrently;
// each run has its own window.
#pragma once

#include "troupe/streams/ask_sink.hpp"
#include "troupe/streams/detail/offset_window.hpp"
#include "troupe/streams/detail/stage_base.hpp"
#include "troupe/streams/entity_sink.hpp"

#include <fmt/format.h>

#include <memory>
#include <type_traits>
#include <utility>

namespace troupe::streams {

/// An element's reply with its source offset, and the run's acknowledged
/// watermark once this element was counted.
template <class R>
struct offset_ack {
  persistence::offset_type offset = 0;
  /// Every element of this run at or below this offset is acknowledged (or was
  /// given up on by a resume directive): what may be committed. 0 while none is.
  persistence::offset_type watermark = 0;
  R reply;
};

namespace detail {

/// An element's final answer and its offset (the inner ask flow's output).
template <class R>
struct offset_reply {
  offset_reply(persistence::offset_type o, expected<R> r) : offset(o), result(std::move(r)) {}
  persistence::offset_type offset;
  expected<R> result;
};

/// Passes elements on while the window has room, opening their offsets.
template <class T, class OffsetFn>
class offset_opening_stage final : public stage_base<T, T> {
public:
  offset_opening_stage(island_context& ctx, outlet_ptr<T> up, std::shared_ptr<offset_window> w,
                       OffsetFn offset_of)
    : stage_base<T, T>(ctx, std::move(up), "offset_window", decider{}), window_(std::move(w)),
      offset_of_(std::move(offset_of)) {}

  pull_status pull(std::vector<T>& out, std::size_t max) override {
    if (this->failure_)
      return pull_status::failed;
    auto n = std::min(max, window_->room());
    if (n == 0)
      return pull_status::pending;  // the acknowledging stage wakes the island
    auto before = out.size();
    auto st = this->pull_through(out, n);
    for (auto i = before; i < out.size(); ++i) {
      auto o = static_cast<persistence::offset_type>(offset_of_(std::as_const(out[i])));
      if (!window_->open(o)) {
        out.erase(out.begin() + static_cast<std::ptrdiff_t>(before), out.end());
        this->failure_ = stage_error(
          this->ctx_, this->name_,
          error{errc::invalid_argument,
                fmt::format("source offsets must increase: offset {} came after {}", o,
                            window_->last_opened())});
        this->cancel();
        return pull_status::failed;
      }
    }
    return st;
  }

private:
  std::shared_ptr<offset_window> window_;
  OffsetFn offset_of_;
};

/// Closes the answers' offsets and emits offset_acks; a final failure goes to
/// the decider before its offset is closed.
template <class R>
class offset_ack_stage final : public stage_base<offset_reply<R>, offset_ack<R>> {
public:
  offset_ack_stage(island_context& ctx, outlet_ptr<offset_reply<R>> up, std::shared_ptr<offset_window> w,
                   decider d)
    : stage_base<offset_reply<R>, offset_ack<R>>(ctx, std::move(up), "offset_acks", std::move(d)),
      window_(std::move(w)) {}

  pull_status pull(std::vector<offset_ack<R>>& out, std::size_t max) override {
    if (failed_)
      return pull_status::failed;
    return this->until_emitted(out, [&] {
      auto st = this->pull_up(max);
      if (st == pull_status::failed)
        failed_ = true;
      if (st != pull_status::ready)
        return st;
      auto was_full = window_->full();
      for (auto& r : this->scratch_) {
        if (!r.result && !this->user_failed(r.result.error())) {
          failed_ = true;
          break;
        }
        window_->close(r.offset);
        if (r.result)
          out.push_back(offset_ack<R>{r.offset, window_->watermark(), std::move(*r.result)});
      }
      if (was_full && !window_->full())
        this->ctx_.wake();  // the opening stage said pending while it was full
      return failed_ && out.empty() ? pull_status::failed : pull_status::ready;
    });
  }

private:
  std::shared_ptr<offset_window> window_;
  bool failed_ = false;
};

/// `ask` whose final answers (a success, or a failure ask_flow will not retry)
/// come back as offset_replies; failures it will retry pass through as errors.
template <class T, class R, class OffsetFn>
ask_fn<T, offset_reply<R>> ask_with_offset(ask_fn<T, R> ask, std::shared_ptr<offset_window> w,
                                           std::shared_ptr<const ask_options> o, OffsetFn offset_of) {
  return [ask = std::move(ask), w, o, offset_of](caf::event_based_actor* self, const T& x,
                                                 duration timeout, reply_fn<offset_reply<R>> reply) {
    auto off = static_cast<persistence::offset_type>(offset_of(x));
    auto attempt = w->next_attempt(off);
    ask(self, x, timeout, [off, attempt, o, reply](expected<R> r) {
      // ask_with_retry will retry this failure (the same rule: ask_options::retries).
      if (!r && o->retries(r.error(), attempt)) {
        reply(r.error());
        return;
      }
      reply(offset_reply<R>{off, std::move(r)});
    });
  };
}

} // namespace detail

/// ask_flow (same key, target and options) over elements with a source offset:
/// each element -> offset_ack<R>, in completion order, order kept per key.
/// offset_of(const T&) -> an offset (increasing along the stream); `window`: the
/// offsets held at most (0: opts.parallelism).
template <class T, class R, class KeyFn, class OffsetFn>
flow<T, offset_ack<R>> ask_flow_with_offsets(KeyFn key, OffsetFn offset_of, ask_fn<T, R> ask,
                                             ask_options opts = {}, std::size_t window = 0) {
  auto o = std::make_shared<const ask_options>(std::move(opts));
  auto capacity = window ? window : o->parallelism;
  return [=](const source<T>& up) {
    return source<offset_ack<R>>{[=](detail::island_context& ctx) -> detail::outlet_ptr<offset_ack<R>> {
      auto d = ctx.current_decider;
      auto w = std::make_shared<detail::offset_window>(capacity);  // this run's
      auto opened = detail::stage_source<T>(up, [w, offset_of](auto& c, auto built, decider) {
        return detail::outlet_ptr<T>{std::make_unique<detail::offset_opening_stage<T, OffsetFn>>(
          c, std::move(built), w, offset_of)};
      });
      auto asked = ask_flow<T, detail::offset_reply<R>>(
        key, detail::ask_with_offset<T, R>(ask, w, o, offset_of), *o)(opened);
      return std::make_unique<detail::offset_ack_stage<R>>(ctx, asked.build(ctx), w, std::move(d));
    }};
  };
}

/// entities_flow (entity_sink.hpp) over elements with a source offset: each
/// element -> offset_ack of its command's reply.
template <class Entity, class T, class IdFn, class ToCommand, class OffsetFn>
auto entities_flow_with_offsets(node& n, IdFn id_of, ToCommand to_command, OffsetFn offset_of,
                                entity_sink_options opts = {}, std::size_t window = 0) {
  using Command = std::decay_t<std::invoke_result_t<ToCommand&, const T&>>;
  auto ask = ask_sharded_entity<Entity, T>(n, id_of, std::move(to_command), opts.ref_cache);
  return ask_flow_with_offsets<T, typename Command::reply>(
    [id_of](const T& x) { return std::string{id_of(x)}; }, std::move(offset_of), std::move(ask),
    std::move(opts.ask), window);
}

} // namespace troupe::streams
