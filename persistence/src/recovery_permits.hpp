// recovery_permits: the node-wide limit on concurrent entity recoveries (Akka's
// max-concurrent-recoveries). Recovery reads a lot; without a limit, starting
// thousands of entities at once would queue thousands of replays on the journal's
// reader threads and hold all their pages in memory.
//
// A permit is a shared object whose destruction releases it, so a permit can travel
// inside a CAF message: if the entity died before the message arrived, CAF destroys
// the message and the permit goes to the next waiter. Waiters are granted in FIFO
// order. `grant` callbacks run on the thread that calls acquire() or releases a
// permit, never under the internal lock; they must be short (send a message).
//
// Thread-safety: every member may be called concurrently.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>

namespace troupe::persistence::detail {

class recovery_permits : public std::enable_shared_from_this<recovery_permits> {
public:
  class permit {
  public:
    explicit permit(std::shared_ptr<recovery_permits> owner) : owner_(std::move(owner)) {}
    ~permit() { owner_->release(); }
    permit(const permit&) = delete;
    permit& operator=(const permit&) = delete;

  private:
    std::shared_ptr<recovery_permits> owner_;
  };
  using permit_ptr = std::shared_ptr<permit>;
  using grant_fn = std::function<void(permit_ptr)>;

  /// At most `limit` permits exist at a time (at least 1).
  static std::shared_ptr<recovery_permits> make(std::size_t limit);

  /// Calls `grant` with a permit, at once if one is free, else when one is
  /// released. Returns a ticket for cancel() (0 if granted at once).
  std::uint64_t acquire(grant_fn grant);

  /// Forgets a waiter that no longer wants a permit (no-op if already granted).
  void cancel(std::uint64_t ticket);

  std::size_t limit() const noexcept { return limit_; }
  std::size_t in_use() const;
  std::size_t waiting() const;

private:
  explicit recovery_permits(std::size_t limit) : limit_(limit) {}
  void release();

  const std::size_t limit_;
  mutable std::mutex mtx_;
  std::size_t in_use_ = 0;
  std::uint64_t next_ticket_ = 1;
  std::deque<std::pair<std::uint64_t, grant_fn>> waiters_;
};

} // namespace troupe::persistence::detail
