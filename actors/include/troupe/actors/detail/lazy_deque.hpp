// Internal: a std::deque that allocates nothing until its first element.
//
// libstdc++'s std::deque allocates its map and a 512-byte block when it is
// constructed, empty or not. A queue that is empty almost always — an entity's
// stash, a region's waiting list, one per entity among a million — then costs
// ~600 bytes each for nothing. lazy_deque holds no storage until the first push
// and gives it back once it is empty again (pop_front of the last element, clear).
//
// Thread-safety: none (like std::deque).
#pragma once

#include <cstddef>
#include <deque>
#include <memory>
#include <utility>

namespace troupe::detail {

template <class T>
class lazy_deque {
public:
  using value_type = T;
  using iterator = typename std::deque<T>::iterator;

  bool empty() const noexcept { return !q_ || q_->empty(); }
  std::size_t size() const noexcept { return q_ ? q_->size() : 0; }

  T& front() { return q_->front(); }
  T& back() { return q_->back(); }

  void push_back(T x) { get().push_back(std::move(x)); }
  void push_front(T x) { get().push_front(std::move(x)); }
  void pop_front() {
    q_->pop_front();
    if (q_->empty())
      q_.reset();
  }

  void clear() noexcept { q_.reset(); }

  iterator begin() { return q_ ? q_->begin() : iterator{}; }
  iterator end() { return q_ ? q_->end() : iterator{}; }

private:
  std::deque<T>& get() {
    if (!q_)
      q_ = std::make_unique<std::deque<T>>();
    return *q_;
  }

  std::unique_ptr<std::deque<T>> q_;
};

} // namespace troupe::detail
