// offset_window: the source offsets of one stream run's elements that are not
// yet below its acknowledged watermark, in source order, and that watermark.
//
// Elements are opened in source order (increasing offsets) as they enter the
// asking stage and closed when their answer is final, in any order. The watermark
// is the highest offset at or below which every opened element is closed: the
// contiguous prefix, so an element acknowledged before an earlier one does not
// move it. At most `capacity` offsets are held (open ones, and closed ones behind
// an open one); the stage that opens them waits while the window is full.
//
// Thread-safety: belongs to one island; used only on its actor.
#pragma once

#include "troupe/persistence/journal.hpp"

#include <algorithm>
#include <cstdint>
#include <deque>

namespace troupe::streams::detail {

class offset_window {
public:
  using offset_type = persistence::offset_type;

  explicit offset_window(std::size_t capacity) : capacity_(std::max<std::size_t>(capacity, 1)) {}

  /// How many more offsets may be opened now.
  std::size_t room() const noexcept { return capacity_ - entries_.size(); }
  bool full() const noexcept { return entries_.size() >= capacity_; }
  std::size_t size() const noexcept { return entries_.size(); }

  /// Opens the next element's offset; false (nothing opened) unless it is above
  /// every offset opened before.
  bool open(offset_type o) {
    if (any_ && o <= last_)
      return false;
    entries_.push_back(entry{o, 0, false});
    last_ = o;
    any_ = true;
    return true;
  }

  /// The attempts made so far for the open offset `o` (0 before the first), and
  /// counts one more.
  int next_attempt(offset_type o) {
    auto* e = find(o);
    return e ? e->attempts++ : 0;
  }

  /// Closes `o` (its answer is final); the watermark moves over the closed prefix.
  void close(offset_type o) {
    if (auto* e = find(o))
      e->closed = true;
    while (!entries_.empty() && entries_.front().closed) {
      watermark_ = entries_.front().offset;
      entries_.pop_front();
    }
  }

  /// The highest offset at or below which every opened element is closed; 0 while
  /// none is.
  offset_type watermark() const noexcept { return watermark_; }
  /// The last opened offset (0 before the first).
  offset_type last_opened() const noexcept { return last_; }

private:
  struct entry {
    offset_type offset;
    int attempts;
    bool closed;
  };

  entry* find(offset_type o) {
    auto i = std::lower_bound(entries_.begin(), entries_.end(), o,
                              [](const entry& e, offset_type x) { return e.offset < x; });
    return i != entries_.end() && i->offset == o ? &*i : nullptr;
  }

  std::size_t capacity_;
  std::deque<entry> entries_;
  offset_type watermark_ = 0;
  offset_type last_ = 0;
  bool any_ = false;
};

} // namespace troupe::streams::detail
