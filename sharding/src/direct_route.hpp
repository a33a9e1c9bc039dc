// Internal: the direct route from an entity_ref to a local entity incarnation.
//
// An ask through the region costs four messages (ref -> region -> entity ->
// region -> ref); a ref that knows the entity runs on its own node sends the
// command to it directly: two messages, like a plain actor request. The region
// stays the authority on where an entity runs:
//
// - It hands out a direct_route for an incarnation it runs (with the reply to a
//   routed ask), and closes the route before it stops that incarnation (hand-off,
//   passivation) and when the incarnation ends.
// - A sender enters the route, enqueues, and leaves; close() waits until no sender
//   is inside. So every direct command is in the entity's mailbox before the
//   region's stop_and_hand_back: it is handled, or handed back and routed again
//   by the region (to the entity's next home) with its original sender.
// - A command that reaches an incarnation which ended otherwise (a crash, a
//   fence) is bounced by CAF without being handled; the ref sends it again
//   through the region. A tell to such an incarnation is lost, as a tell to a
//   crashing entity through the region is (tells are at most once).
//
// Thread-safety: every member may be called from any thread.
#pragma once

#include <caf/actor.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>

#include <time.h>

namespace troupe::sharding::detail {

class direct_route {
public:
  explicit direct_route(caf::actor entity) : entity_(std::move(entity)) {}

  /// The incarnation; only between a successful enter() and leave() (close()
  /// drops it).
  const caf::actor& entity() const noexcept { return entity_; }

  /// True if the route is open: the caller enqueues its command, then leave().
  bool enter() noexcept {
    inside_.fetch_add(1, std::memory_order_seq_cst);
    if (open_.load(std::memory_order_seq_cst))
      return true;
    inside_.fetch_sub(1, std::memory_order_seq_cst);
    return false;
  }

  /// After a successful enter(), once the command is enqueued; notes the use.
  void leave() noexcept {
    last_used_.store(now_ns(), std::memory_order_relaxed);
    inside_.fetch_sub(1, std::memory_order_seq_cst);
  }

  /// Closes the route; returns once no sender is between enter() and leave().
  /// Called by the region only.
  void close() noexcept;

  bool is_open() const noexcept { return open_.load(std::memory_order_relaxed); }

  /// When a sender last used the route (steady clock, up to a scheduler tick
  /// early: see now_ns).
  std::chrono::steady_clock::time_point last_used() const noexcept {
    return std::chrono::steady_clock::time_point{
      std::chrono::nanoseconds{last_used_.load(std::memory_order_relaxed)}};
  }

private:
  /// The coarse monotonic clock: steady_clock's timeline (CLOCK_MONOTONIC) at the
  /// kernel tick's resolution, a few nanoseconds to read instead of a full clock
  /// read per message. The route's last use decides idle passivation, measured in
  /// seconds or minutes, so a few milliseconds early does not matter.
  static std::int64_t now_ns() noexcept {
    timespec ts{};
    ::clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return std::int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
  }

  caf::actor entity_;
  std::atomic<bool> open_{true};
  std::atomic<std::uint32_t> inside_{0};
  std::atomic<std::int64_t> last_used_{0};
};

using direct_route_ptr = std::shared_ptr<direct_route>;

/// The route an entity_ref (and its copies) last got from the region.
///
/// Order: a sender's commands through one ref must reach the entity in the order
/// sent, but a command sent through the region may still be on its way (in the
/// region's mailbox or buffer) when a later one could go directly. So commands
/// through the region are numbered, the region reports each one it has enqueued
/// at the local entity (it keeps one id's commands in order, so all earlier ones
/// are enqueued, or were answered without reaching it), and the route is used
/// only while every command sent through the region has been enqueued.
class direct_cache {
public:
  /// The route, if it may be used now.
  direct_route_ptr usable() const {
    std::lock_guard<std::mutex> guard{mtx_};
    return forwarded_ >= sent_ ? route_ : nullptr;
  }
  /// Numbers a command sent through the region (for forwarded()).
  std::uint64_t sending_through_region() {
    std::lock_guard<std::mutex> guard{mtx_};
    return ++sent_;
  }
  /// The region enqueued the command numbered `seq` at the local incarnation
  /// whose route is `r` (null: none given yet).
  void forwarded(std::uint64_t seq, direct_route_ptr r) {
    std::lock_guard<std::mutex> guard{mtx_};
    if (seq < forwarded_)
      return;
    forwarded_ = seq;
    route_ = std::move(r);
  }
  /// Forgets `r` if it is still the cached route.
  void forget(const direct_route_ptr& r) {
    std::lock_guard<std::mutex> guard{mtx_};
    if (route_ == r)
      route_.reset();
  }

private:
  mutable std::mutex mtx_;
  direct_route_ptr route_;
  std::uint64_t sent_ = 0;
  std::uint64_t forwarded_ = 0;
};

} // namespace troupe::sharding::detail
