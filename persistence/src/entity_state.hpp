// Internal: the entity actor's state, its private messages, and the functions
// the parts of the runtime share. The runtime is one actor in three files:
//   entity_actor.cpp    commands, persisting, snapshots, stopping, the behavior
//   entity_recovery.cpp waiting for a permit, snapshot + replay
//   entity_handoff.cpp  owned entities: owner, stop and hand back, idle timeout
// All of them run on the entity's own thread (CAF handlers, one at a time).
#pragma once

#include "troupe/persistence/entity.hpp"
#include "troupe/persistence/journal_service.hpp"

#include "entity_messages.hpp"
#include "entity_runtime.hpp"

#include "troupe/actors/caf_error.hpp"
#include "troupe/actors/detail/lazy_deque.hpp"
#include "troupe/actors/log.hpp"
#include "troupe/actors/supervisor.hpp"

#include <caf/all.hpp>

#include <chrono>

namespace troupe::persistence::detail {

// -- messages (local only; private types no user message can match) --------------------

struct permit_granted {
  recovery_permits::permit_ptr permit;
};
struct snapshot_loaded {
  std::uint64_t step;
  expected<std::optional<snapshot_record>> result;
};
struct page_loaded {
  std::uint64_t step;
  expected<std::vector<event_record>> result;
};
struct highest_loaded {
  std::uint64_t step;
  expected<sequence_nr> result;
};
/// From the runtime's recovery_watchdog: fail unless a step completed since the last.
struct recovery_check {};
struct write_done {
  std::uint64_t token;
  expected<void> result;
};
struct snapshot_saved {
  std::uint64_t incarnation;
  sequence_nr seq;
  expected<void> result;
};
struct housekeeping_failed {
  std::string what;
  error reason;
};
struct drain_stash {};
/// The idle timer (entity_options::idle_timeout) fired.
struct idle_check {};
/// Try the persist the journal refused as overloaded again.
struct retry_persist {
  std::uint64_t incarnation;
};

} // namespace troupe::persistence::detail

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::persistence::detail::permit_granted)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::persistence::detail::snapshot_loaded)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::persistence::detail::page_loaded)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::persistence::detail::highest_loaded)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::persistence::detail::recovery_check)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::persistence::detail::write_done)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::persistence::detail::snapshot_saved)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::persistence::detail::housekeeping_failed)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::persistence::detail::drain_stash)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::persistence::detail::idle_check)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::persistence::detail::retry_persist)

namespace troupe::persistence::detail {

/// Commands handled from the stash in one go before the actor yields (so that a
/// long stash of read-only commands neither starves other actors nor recurses).
constexpr std::size_t drain_budget = 512;

enum class phase {
  waiting_permit,
  recovering,
  running,
  persisting,
  snapshotting,
  throttled,    ///< the journal's queue was full: the command waits for a retry
  backing_off,  ///< the incarnation stopped after a journal failure; the actor waits
  stopped,
};

struct stashed {
  command_ptr cmd;  // null: a state query
  caf::response_promise rp;
};

inline void deliver(caf::response_promise& rp, const error& e) {
  if (rp.pending())
    rp.deliver(to_caf_error(e));
}

inline void deliver(caf::response_promise& rp, reply_result r) {
  if (!rp.pending())
    return;
  if (r)
    rp.deliver(reply_envelope{std::move(*r)});
  else
    rp.deliver(to_caf_error(r.error()));
}

struct entity_state {
  static inline const char* name = "troupe.entity";

  blueprint_ptr bp;
  const std::string* pid = nullptr;
  std::unique_ptr<entity_model> model;
  std::shared_ptr<journal_service> journal;
  std::shared_ptr<entity_runtime> rt;
  entity_metrics* metrics = nullptr;
  logger* log = nullptr;
  std::uint64_t writer = 0;  // this incarnation's writer number (entity_runtime::writer_id)
  bool overflow_logged = false;

  phase ph = phase::waiting_permit;
  sequence_nr last_seq = 0;
  std::uint64_t incarnation = 0;  // counts starts; stale journal answers are ignored

  /// After a journal failure (phase::backing_off). Allocated on the first one and
  /// dropped by the next successful persist: idle entities carry one pointer.
  struct journal_trouble {
    int failures_in_a_row = 0;
    std::chrono::steady_clock::time_point restart_after;
    error failure;  // why the last incarnation stopped
  };
  std::unique_ptr<journal_trouble> trouble;

  // recovery
  std::uint64_t step = 0;  // the recovery step in flight; older answers are stale (never reset)

  /// While the entity waits for a permit or recovers. Dropped once it runs: an
  /// idle entity carries one pointer.
  struct recovery_state {
    std::uint64_t ticket = 0;  // waiting for a permit
    recovery_permits::permit_ptr permit;
    std::uint64_t watch = 0;         // the recovery_watchdog's ticket
    std::uint64_t checked_step = 0;  // the step at the watchdog's last check
    sequence_nr replay_to = 0;       // the journal's highest seq when the recovery read it
    std::size_t replayed = 0;
    std::chrono::steady_clock::time_point started;
    bool counted_waiting = false;     // in rt->waiting_for_permit
    bool counted_recovering = false;  // in rt->recovering
  };
  std::unique_ptr<recovery_state> recovery;

  // persisting
  troupe::detail::lazy_deque<stashed> stash;  // empty for almost every entity
  caf::response_promise in_flight;
  command_ptr in_flight_cmd;  // kept to retry it when the journal was overloaded
  std::size_t in_flight_events = 0;
  std::uint64_t write_token = 0;
  int overloads_in_a_row = 0;

  // stop and hand back (owned_entity.hpp): the requester, while the persist in
  // flight finishes
  bool handing_back = false;
  std::unique_ptr<caf::response_promise> hand_back_rp;  // while handing_back

  // idle timeout
  std::chrono::steady_clock::time_point last_active;
  bool idle_armed = false;     // an idle_check is on its way
  bool idle_notified = false;  // entity_idle went out; no more until a command

  /// Why the actor stopped, for the requests still held; allocated when it stops.
  std::unique_ptr<error> stopped_because;
  void set_stop_reason(error e) { stopped_because = std::make_unique<error>(std::move(e)); }
  error stop_reason() const {
    return stopped_because ? *stopped_because
                           : error{errc::actor_down, (pid ? *pid : std::string{"entity"}) + " stopped"};
  }

  /// The entity's name in log lines ("entity/<persistence id>"), made when a line
  /// is written rather than kept per entity.
  std::string label() const { return "entity/" + (pid ? *pid : std::string{"?"}); }

  entity_state() = default;
  entity_state(const entity_state&) = delete;
  entity_state& operator=(const entity_state&) = delete;

  // Runs when the actor terminates for any reason (also kill or an exception):
  // nothing the entity accepted may be left unanswered.
  ~entity_state() {
    end_recovery();
    auto reason = stop_reason();
    deliver(in_flight, reason);
    fail_stash(reason);
  }

  /// Ends the recovery's bookkeeping, whatever its outcome: the permit (or the
  /// wait for one), the watchdog's entry, the gauges. No-op without a recovery.
  void end_recovery() {
    if (!recovery)
      return;
    auto& r = *recovery;
    if (r.ticket != 0)
      rt->permits->cancel(r.ticket);
    if (r.counted_waiting)
      rt->waiting_for_permit->add(-1);
    rt->watchdog->end(r.watch);
    r.permit.reset();
    if (r.counted_recovering)
      rt->recovering->add(-1);
    recovery.reset();
  }

  std::size_t stash_capacity() const {
    return bp->options.stash_capacity > 0 ? bp->options.stash_capacity : rt->stash_capacity;
  }

  std::size_t page_size() const {
    return bp->options.recovery_page_size > 0 ? bp->options.recovery_page_size
                                              : rt->recovery_page_size;
  }

  void push_stash(stashed s) {
    stash.push_back(std::move(s));
    metrics->stashed.add(1);
  }

  stashed pop_stash() {
    auto s = std::move(stash.front());
    stash.pop_front();
    metrics->stashed.add(-1);
    return s;
  }

  void fail_stash(const error& reason) {
    if (stash.empty())
      return;
    metrics->stashed.add(-static_cast<double>(stash.size()));
    auto code = reason.code() == errc::stopped || reason.code() == errc::fenced ? reason.code()
                                                                                 : errc::actor_down;
    for (auto& s : stash) {
      auto what = s.cmd ? s.cmd->name() : std::string{"a state query"};
      deliver(s.rp, error{code,
                          fmt::format("{} stopped before handling {}: {}", *pid, what,
                                      reason.message())});
    }
    stash.clear();
  }
};

using entity_actor = caf::stateful_actor<entity_state>;

/// The entity as seen by a journal callback: one pointer, trivially copyable, so
/// the callback's std::function stores it without allocating (the write path runs
/// one callback per write on the journal's writer thread). It holds one strong
/// reference, given up by post() or drop(): a journal callback runs exactly once.
class mailbox_ref {
public:
  static mailbox_ref of(entity_actor* self) {
    auto* ctrl = caf::actor_control_block::from(self);
    intrusive_ptr_add_ref(ctrl);
    return mailbox_ref{ctrl};
  }

  /// Sends `msg` to the entity (dropped if it terminated meanwhile).
  template <class T>
  void post(T&& msg) const {
    caf::strong_actor_ptr dest{ctrl_, false};  // adopts our reference
    dest->enqueue(nullptr, caf::make_message_id(), caf::make_message(std::forward<T>(msg)),
                  nullptr);
  }

  void drop() const { intrusive_ptr_release(ctrl_); }

private:
  explicit mailbox_ref(caf::actor_control_block* ctrl) : ctrl_(ctrl) {}
  caf::actor_control_block* ctrl_;
};

inline caf::actor me(entity_actor* self) {
  return caf::actor_cast<caf::actor>(self);
}

// -- shared by the parts (see the top of this file) -------------------------------------

// entity_actor.cpp
void fail(entity_actor* self, error reason);
void end_incarnation(entity_actor* self, error reason);
bool restartable(const error& e);
void drain(entity_actor* self);
/// Goes on after a persist or snapshot: running and draining the stash, or
/// finishing a stop and hand back that waited for it.
void resume(entity_actor* self);
expected<std::shared_ptr<journal_service>> journal_of(node_context& ctx);
/// What spawning needs: an id, a journal, every type registered in the codec.
expected<void> check_spawnable(node_context& ctx, const blueprint_ptr& bp);
caf::actor spawn_incarnation(caf::actor_system& sys, const blueprint_ptr& bp);

// entity_recovery.cpp
void begin_recovery(entity_actor* self);
void on_permit(entity_actor* self, permit_granted& m);
void on_snapshot_loaded(entity_actor* self, snapshot_loaded& m);
void on_highest_loaded(entity_actor* self, highest_loaded& m);
void on_page_loaded(entity_actor* self, page_loaded& m);
void on_recovery_check(entity_actor* self, recovery_check m);

// entity_handoff.cpp
/// Monitors the owner (blueprint::owner): the entity stops when it stops.
void watch_owner(entity_actor* self);
void on_hand_back(entity_actor* self);
/// Stops the entity and answers the stop_and_hand_back request with every
/// command it holds.
void finish_hand_back(entity_actor* self);
/// A command arrived (or the entity started running): restarts the idle clock.
void note_activity(entity_actor* self);
void on_idle_check(entity_actor* self);

} // namespace troupe::persistence::detail
