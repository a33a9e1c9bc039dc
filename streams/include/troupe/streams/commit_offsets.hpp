// Committing a stream's source offset after its elements are acknowledged, and
// resuming from it.
//
//   auto store = persistence::sqlite_offset_store::open({.path = journal_path});
//   auto after = ts::committed_offset(**store, "readings", "tallies");   // 0: never committed
//   ts::events_by_tag(journal, "reading", *after)
//     .via(ts::entities_flow_with_offsets<tally, event_record>(...))     // offset_acks.hpp
//     .via(ts::commit_offsets(*store, "readings", "tallies", {.every_n = 1000}))
//     .to(ts::ignore<ts::offset_ack<done>>())
//     .run(node);
//
// commit_offsets passes offset_acks on unchanged and saves the highest watermark
// they carry (every element at or below it acknowledged) after `every_n` of them,
// or `every_interval` after the first one not yet committed, whichever comes
// first; and once more when the stream ends (completes, fails, is cancelled or
// stopped): the watermark only ever covers acknowledged elements, so committing it
// is safe in every case. A restart resumes after the committed offset: elements
// acknowledged since the last commit are asked again, which is why the targets
// must deduplicate for exactly-once effects (persistence/producer_offsets.hpp;
// docs/streams.md, "Delivery guarantees").
//
// Saves run on a thread of the stage's own (detail/offset_committer.hpp), never on
// the stream's actor; at most one runs at a time and later commits replace a
// waiting one. On completion the stage reports done only after the last save
// succeeded. A failed save fails the stream (the stage's error names the store's
// failure) and nothing is saved after it.
//
// Thread-safety: the blueprint may run any number of times; runs must not share
// a (projection, key), or their commits interleave.
#pragma once

#include "troupe/persistence/projection.hpp"
#include "troupe/streams/detail/lifeline.hpp"
#include "troupe/streams/detail/offset_committer.hpp"
#include "troupe/streams/detail/stage_base.hpp"
#include "troupe/streams/source.hpp"

#include <algorithm>
#include <chrono>
#include <concepts>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>

namespace troupe::streams {

struct commit_options {
  /// Commit after this many acknowledged elements since the last commit (0: not
  /// by count) ...
  std::size_t every_n = 1000;
  /// ... or this long after the first acknowledgement not yet committed (0: not by
  /// time). With both 0, only the end of the stream commits.
  duration every_interval = std::chrono::seconds{1};
};

/// Saves a committed offset; runs on the committer's thread and may block.
using offset_saver = std::function<expected<void>(persistence::offset_type)>;

/// A saver into the projection_offsets table of a troupe SQLite file (normally
/// the journal), under (projection, key).
inline offset_saver sqlite_offset_saver(std::shared_ptr<persistence::sqlite_offset_store> store,
                                        std::string projection, std::string key) {
  return [store = std::move(store), projection = std::move(projection),
          key = std::move(key)](persistence::offset_type o) { return store->save(projection, key, o); };
}

/// The offset committed under (projection, key), 0 if none was: where a restarted
/// stream resumes (its source starts after it).
inline expected<persistence::offset_type> committed_offset(persistence::sqlite_offset_store& store,
                                                           const std::string& projection,
                                                           const std::string& key) {
  auto stored = store.load(projection, key);
  if (!stored)
    return std::move(stored).error();
  return stored->value_or(0);
}

namespace detail {

template <class Ack>
concept watermarked = requires(const Ack& a) {
  { a.watermark } -> std::convertible_to<persistence::offset_type>;
};

template <watermarked Ack>
class commit_stage final : public stage_base<Ack, Ack> {
public:
  commit_stage(island_context& ctx, outlet_ptr<Ack> up, decider d, offset_saver save,
               commit_options opts)
    : stage_base<Ack, Ack>(ctx, std::move(up), "commit_offsets", std::move(d)), opts_(opts),
      committer_(std::move(save), saved_callback(ctx)) {}

  ~commit_stage() override { committer_.request(watermark_); }  // saved before the join

  pull_status pull(std::vector<Ack>& out, std::size_t max) override {
    if (save_failure_)
      return fail_on_save();
    if (end_)
      return finishing();
    auto before = out.size();
    auto st = this->pull_through(out, max);
    for (auto i = before; i < out.size(); ++i)
      watermark_ = std::max<persistence::offset_type>(watermark_, out[i].watermark);
    unsaved_ += out.size() - before;
    if (opts_.every_n > 0 && unsaved_ >= opts_.every_n)
      commit();
    else if (unsaved_ > 0)
      arm_timer();
    if (st == pull_status::done || st == pull_status::failed) {
      end_ = st;
      commit();
      return finishing();
    }
    return st;
  }

  void cancel() override {
    commit();
    stage_base<Ack, Ack>::cancel();
  }

private:
  offset_committer::saved_fn saved_callback(island_context& ctx) {
    return [post = ctx.poster(), guard = life_.token(), this](persistence::offset_type o,
                                                              const expected<void>& r) {
      post([guard, this, o, r] {
        if (guard.lock())
          on_saved(o, r);
      });
    };
  }

  void on_saved(persistence::offset_type o, const expected<void>& r) {
    if (!r) {
      save_failure_ = r.error();
      this->ctx_.wake();
      return;
    }
    saved_ = std::max(saved_, o);
    if (end_ && saved_ >= requested_)
      this->ctx_.wake();
  }

  /// Requests a save of the watermark if it moved since the last request.
  void commit() {
    if (watermark_ <= requested_)
      return;
    requested_ = watermark_;
    unsaved_ = 0;
    committer_.request(requested_);
  }

  void arm_timer() {
    if (timer_armed_ || opts_.every_interval <= duration::zero())
      return;
    timer_armed_ = true;
    this->ctx_.schedule(opts_.every_interval, life_.guard([this] {
      timer_armed_ = false;
      if (end_ || unsaved_ == 0)
        return;
      commit();
      if (unsaved_ > 0)
        arm_timer();  // the watermark has not moved (its oldest element is still out)
    }));
  }

  /// After the upstream ended: done or failed once the last save is confirmed.
  pull_status finishing() {
    if (save_failure_)
      return fail_on_save();
    if (saved_ < requested_)
      return pull_status::pending;  // on_saved wakes the island
    return *end_;
  }

  pull_status fail_on_save() {
    this->failure_ = stage_error(this->ctx_, this->name_, *save_failure_);
    stage_base<Ack, Ack>::cancel();
    return pull_status::failed;
  }

  commit_options opts_;
  persistence::offset_type watermark_ = 0;  ///< the highest seen
  persistence::offset_type requested_ = 0;  ///< the highest handed to the committer
  persistence::offset_type saved_ = 0;      ///< the highest confirmed
  std::size_t unsaved_ = 0;                 ///< elements since the last request
  bool timer_armed_ = false;
  std::optional<pull_status> end_;          ///< how the upstream ended
  std::optional<error> save_failure_;
  lifeline life_;
  offset_committer committer_;  // last: its thread calls back into the members above
};

} // namespace detail

/// An operator on a stream of offset_acks (offset_acks.hpp), or of anything with
/// a `watermark`: passes the elements on and commits the watermark through `save`.
inline auto commit_offsets(offset_saver save, commit_options opts = {}) {
  return [save = std::move(save), opts](const auto& src) {
    using Ack = typename std::decay_t<decltype(src)>::element_type;
    return detail::stage_source<Ack>(src, [save, opts](auto& ctx, auto up, decider d) {
      return detail::outlet_ptr<Ack>{
        std::make_unique<detail::commit_stage<Ack>>(ctx, std::move(up), std::move(d), save, opts)};
    });
  };
}

/// commit_offsets into a sqlite_offset_store under (projection, key).
inline auto commit_offsets(std::shared_ptr<persistence::sqlite_offset_store> store,
                           std::string projection, std::string key, commit_options opts = {}) {
  return commit_offsets(sqlite_offset_saver(std::move(store), std::move(projection), std::move(key)),
                        opts);
}

} // namespace troupe::streams
