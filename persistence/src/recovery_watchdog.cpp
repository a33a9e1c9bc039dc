#include "recovery_watchdog.hpp"

#include "entity_state.hpp"

#include "troupe/actors/node_context.hpp"
#include "troupe/actors/spawn.hpp"

#include <caf/all.hpp>

#include <algorithm>
#include <vector>

namespace troupe::persistence::detail {

namespace {

using watchdog_tick_atom = caf::atom_constant<caf::atom("rc_tick")>;

/// Holds the watchdog weakly: the node's runtime owns it, and its destructor
/// stops the ticker (a stopping node's clock may never deliver another tick).
caf::behavior ticker(caf::event_based_actor* self, std::weak_ptr<recovery_watchdog> watchdog,
                     caf::timespan every) {
  self->delayed_send(self, every, watchdog_tick_atom::value);
  return {[self, watchdog, every](watchdog_tick_atom) {
    auto dog = watchdog.lock();
    if (!dog || node_of(self).stopping() || !dog->tick(recovery_watchdog::clock::now())) {
      self->quit();
      return;
    }
    self->delayed_send(self, every, watchdog_tick_atom::value);
  }};
}

} // namespace

std::shared_ptr<recovery_watchdog> recovery_watchdog::make(duration timeout) {
  return std::shared_ptr<recovery_watchdog>{new recovery_watchdog(timeout)};
}

duration recovery_watchdog::tick_interval() const noexcept {
  return std::clamp<duration>(timeout_ / 4, std::chrono::milliseconds{10}, std::chrono::seconds{1});
}

recovery_watchdog::~recovery_watchdog() {
  if (ticker_)
    caf::anon_send_exit(ticker_, caf::exit_reason::user_shutdown);
}

std::uint64_t recovery_watchdog::begin(caf::actor_system& sys, caf::actor_addr entity) {
  std::lock_guard<std::mutex> guard{mtx_};
  auto ticket = next_ticket_++;
  watched_.emplace(ticket, entry{std::move(entity), clock::now() + timeout_});
  if (!ticking_) {
    ticking_ = true;
    ticker_ = spawn_actor(sys, "entity-recovery/watchdog", ticker, weak_from_this(),
                          std::chrono::duration_cast<caf::timespan>(tick_interval()));
  }
  return ticket;
}

void recovery_watchdog::end(std::uint64_t ticket) noexcept {
  if (ticket == 0)
    return;
  caf::actor_addr doomed;  // released outside the lock
  std::lock_guard<std::mutex> guard{mtx_};
  if (auto i = watched_.find(ticket); i != watched_.end()) {
    doomed = std::move(i->second.entity);
    watched_.erase(i);
  }
}

bool recovery_watchdog::tick(clock::time_point now) {
  std::vector<caf::actor_addr> due;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    if (watched_.empty()) {
      ticking_ = false;
      ticker_ = caf::actor{};
      return false;
    }
    for (auto& [ticket, e] : watched_)
      if (e.due <= now) {
        due.push_back(e.entity);
        e.due = now + timeout_;
      }
  }
  for (auto& a : due)
    if (auto entity = caf::actor_cast<caf::actor>(a))
      caf::anon_send(entity, recovery_check{});
  return true;
}

} // namespace troupe::persistence::detail
