#include "recovery_permits.hpp"

#include <algorithm>

namespace troupe::persistence::detail {

std::shared_ptr<recovery_permits> recovery_permits::make(std::size_t limit) {
  return std::shared_ptr<recovery_permits>{new recovery_permits{std::max<std::size_t>(limit, 1)}};
}

std::uint64_t recovery_permits::acquire(grant_fn grant) {
  std::uint64_t ticket = 0;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    if (in_use_ >= limit_) {
      ticket = next_ticket_++;
      waiters_.emplace_back(ticket, std::move(grant));
      return ticket;
    }
    ++in_use_;
  }
  grant(std::make_shared<permit>(shared_from_this()));
  return ticket;
}

void recovery_permits::cancel(std::uint64_t ticket) {
  if (ticket == 0)
    return;
  grant_fn doomed;  // destroyed outside the lock
  std::lock_guard<std::mutex> guard{mtx_};
  auto i = std::find_if(waiters_.begin(), waiters_.end(),
                        [&](const auto& w) { return w.first == ticket; });
  if (i != waiters_.end()) {
    doomed = std::move(i->second);
    waiters_.erase(i);
  }
}

void recovery_permits::release() {
  grant_fn next;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    if (waiters_.empty()) {
      --in_use_;
      return;
    }
    // The permit passes to the next waiter: in_use_ stays the same.
    next = std::move(waiters_.front().second);
    waiters_.pop_front();
  }
  next(std::make_shared<permit>(shared_from_this()));
}

std::size_t recovery_permits::in_use() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return in_use_;
}

std::size_t recovery_permits::waiting() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return waiters_.size();
}

} // namespace troupe::persistence::detail
