// Internal: one timer for the recoveries of a node's entities.
//
// An entity whose journal stops answering during recovery must fail within the
// recovery timeout (persistence.entity.recovery-timeout). A delayed message per
// entity did that, but CAF 0.17 cannot cancel one: an entity that recovered in a
// millisecond kept its pending check (about 190 bytes in CAF's clock and a
// mailbox element) for the whole timeout, which for a million freshly started
// idle entities is 190 MB. The watchdog holds an entry only while a recovery
// runs, and its ticker actor exists only while some entry does.
//
// Contract: begin() when a recovery starts, end() once it ended, whatever the
// outcome. While it runs, the entity gets a recovery_check at least every
// `timeout` (plus one tick); it fails the recovery if no step completed since
// the previous check.
//
// Thread-safety: every member may be called from any thread.
#pragma once

#include "troupe/actors/config.hpp"

#include <caf/actor.hpp>
#include <caf/actor_addr.hpp>
#include <caf/fwd.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <unordered_map>

namespace troupe::persistence::detail {

class recovery_watchdog : public std::enable_shared_from_this<recovery_watchdog> {
public:
  using clock = std::chrono::steady_clock;

  static std::shared_ptr<recovery_watchdog> make(duration timeout);

  /// Stops the ticker, if one runs.
  ~recovery_watchdog();

  /// Starts watching the recovery of `entity`; returns the ticket for end().
  std::uint64_t begin(caf::actor_system& sys, caf::actor_addr entity);

  /// Stops watching (no-op for ticket 0 or one already ended).
  void end(std::uint64_t ticket) noexcept;

  /// Sends recovery_check to every watched entity whose check is due. Returns
  /// false once nothing is watched: the ticker stops (begin() starts another).
  bool tick(clock::time_point now);

  /// How often the ticker looks: a quarter of the timeout, within [10ms, 1s].
  duration tick_interval() const noexcept;

private:
  explicit recovery_watchdog(duration timeout) : timeout_(timeout) {}

  struct entry {
    caf::actor_addr entity;
    clock::time_point due;
  };

  const duration timeout_;
  std::mutex mtx_;
  std::unordered_map<std::uint64_t, entry> watched_;
  std::uint64_t next_ticket_ = 1;
  bool ticking_ = false;  ///< a ticker actor runs (or was spawned)
  caf::actor ticker_;     ///< while ticking_
};

} // namespace troupe::persistence::detail
