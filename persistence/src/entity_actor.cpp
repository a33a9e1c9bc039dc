// The event-sourced entity runtime: one CAF actor per entity incarnation, driving a
// type-erased entity_model (detail/entity_model.hpp) against the node's
// journal_service. This is the only CAF-heavy translation unit of the runtime; the
// user's entity types only instantiate the model templates.
//
// Life of an incarnation:
//   waiting_permit -> recovering (latest snapshot, highest seq, paged replay)
//   -> running <-> persisting / snapshotting -> stopped
// Commands that arrive while the entity is not `running`, or while older commands
// still wait, go to the bounded stash and are handled in arrival order.
//
// A journal failure (a persist that failed, a recovery that failed) is not a bug in
// the entity: the incarnation stops (its state is dropped, every command it holds
// is answered with the error) but the actor stays, `backing_off`. Commands get that
// error at once until the backoff has passed; the next one starts a new
// incarnation, which recovers what the journal really stored. So a disk that is
// full for a while ends with entities serving again, with no supervisor restarts
// spent and no handle gone stale. Bugs (a handler that throws) and a sequence
// conflict (another writer) stop the actor itself, for its supervisor.
//
// Journal callbacks run on the journal service's threads; they only post a message
// to the actor. Every request the entity accepted (in flight or stashed) is
// answered exactly once: with the reply, an error, or, if the actor stops in any
// way, an error from entity_state's destructor.
#include "troupe/persistence/entity.hpp"
#include "troupe/persistence/journal_service.hpp"
#include "troupe/persistence/detail/entity_control.hpp"

#include "entity_messages.hpp"
#include "entity_runtime.hpp"

#include "troupe/actors/ask.hpp"
#include "troupe/actors/caf_error.hpp"
#include "troupe/actors/node.hpp"
#include "troupe/actors/node_context.hpp"
#include "troupe/actors/spawn.hpp"

#include <caf/all.hpp>

#include <chrono>
#include <deque>
#include <random>

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
struct recovery_check {
  std::uint64_t step;
};
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

namespace troupe::persistence::detail {

namespace {

/// Commands handled from the stash in one go before the actor yields (so that a
/// long stash of read-only commands neither starves other actors nor recurses).
constexpr std::size_t drain_budget = 512;

enum class phase {
  waiting_permit,
  recovering,
  running,
  persisting,
  snapshotting,
  backing_off,  ///< the incarnation stopped after a journal failure; the actor waits
  stopped,
};

struct stashed {
  command_ptr cmd;  // null: a state query
  caf::response_promise rp;
};

void deliver(caf::response_promise& rp, const error& e) {
  if (rp.pending())
    rp.deliver(to_caf_error(e));
}

void deliver(caf::response_promise& rp, reply_result r) {
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
  std::string label;
  std::string writer;
  std::size_t stash_capacity = 0;
  std::size_t page_size = 0;
  bool read_ahead = true;
  bool overflow_logged = false;

  phase ph = phase::waiting_permit;
  sequence_nr last_seq = 0;
  std::uint64_t incarnation = 0;  // counts starts; stale journal answers are ignored

  // after a journal failure (phase::backing_off)
  backoff_policy backoff;
  int failures_in_a_row = 0;   // reset by a successful persist
  std::chrono::steady_clock::time_point restart_after;
  error failure;               // why the last incarnation stopped

  // recovery
  std::uint64_t step = 0;      // the recovery step in flight; older answers are stale
  sequence_nr replay_to = 0;   // the journal's highest seq when the recovery read it
  std::uint64_t ticket = 0;    // waiting for a permit
  recovery_permits::permit_ptr permit;
  bool counted_waiting = false;     // in rt->waiting_for_permit
  bool counted_recovering = false;  // in rt->recovering
  std::chrono::steady_clock::time_point recovery_started;
  std::size_t replayed = 0;

  // persisting
  std::deque<stashed> stash;
  std::vector<event_record> encoded;  // reused buffer for handle()
  caf::response_promise in_flight;
  std::size_t in_flight_events = 0;
  std::uint64_t write_token = 0;

  error stop_reason;  // why the actor stopped, for the requests still held

  entity_state() = default;
  entity_state(const entity_state&) = delete;
  entity_state& operator=(const entity_state&) = delete;

  // Runs when the actor terminates for any reason (also kill or an exception):
  // nothing the entity accepted may be left unanswered.
  ~entity_state() {
    if (rt && ticket != 0)
      rt->permits->cancel(ticket);
    release_permit();
    if (counted_waiting)
      rt->waiting_for_permit->add(-1);
    auto reason = stop_reason ? stop_reason
                              : error{errc::actor_down,
                                      (pid ? *pid : std::string{"entity"}) + " stopped"};
    deliver(in_flight, reason);
    fail_stash(reason);
  }

  void release_permit() {
    permit.reset();
    if (counted_recovering) {
      counted_recovering = false;
      rt->recovering->add(-1);
    }
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
    for (auto& s : stash) {
      auto what = s.cmd ? s.cmd->name() : std::string{"a state query"};
      deliver(s.rp, error{reason.code() == errc::stopped ? errc::stopped : errc::actor_down,
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

caf::actor me(entity_actor* self) {
  return caf::actor_cast<caf::actor>(self);
}

// -- stopping --------------------------------------------------------------------------

/// Stops the incarnation with an error: a supervisor restarts it.
void fail(entity_actor* self, error reason) {
  auto& st = self->state;
  if (st.ph == phase::stopped)
    return;
  st.ph = phase::stopped;
  st.log->error(st.label, "stopping: {}", reason.to_string());
  st.stop_reason = reason;
  deliver(st.in_flight, reason);
  st.fail_stash(reason);
  st.release_permit();
  self->quit(to_caf_error(reason));
}

/// Errors after which a new incarnation may succeed: everything the journal (or
/// the stored data) causes. A handler that throws (actor_failed) is a bug, a
/// sequence conflict means another writer, shutting_down means the node stops:
/// those stop the actor itself.
bool restartable(const error& e) {
  switch (e.code()) {
    case errc::actor_failed:
    case errc::sequence_conflict:
    case errc::shutting_down:
    case errc::internal:
      return false;
    default:
      return true;
  }
}

/// The time left of the backoff, or zero once it passed.
std::chrono::steady_clock::duration backoff_left(const entity_state& st) {
  auto left = st.restart_after - std::chrono::steady_clock::now();
  return left > std::chrono::steady_clock::duration::zero() ? left
                                                             : std::chrono::steady_clock::duration::zero();
}

std::string describe_backoff(const entity_state& st) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(backoff_left(st));
  return fmt::format("{} is stopped after a journal failure; a command after {} starts it "
                     "again: {}",
                     *st.pid, format_duration(left), st.failure.message());
}

/// Ends the incarnation after a journal failure, keeping the actor: every command
/// it holds gets `reason` (naming the entity and the cause), its state is dropped,
/// and commands are refused until the backoff passed.
void stop_incarnation(entity_actor* self, error reason) {
  auto& st = self->state;
  auto first = st.failures_in_a_row++ == 0;
  std::uniform_real_distribution<double> u{0.0, 1.0};
  static thread_local std::minstd_rand rng{std::random_device{}()};
  auto delay = st.backoff.delay(st.failures_in_a_row, u(rng));
  st.restart_after = std::chrono::steady_clock::now() + delay;
  // Thousands of entities fail together when the disk fills: one line each, then
  // debug while the failures go on.
  auto line = fmt::format(
    "stopped (restarts on a command after {}): {}",
    format_duration(std::chrono::duration_cast<std::chrono::milliseconds>(delay)),
    reason.to_string());
  if (first)
    st.log->warn(st.label, "{}", line);
  else
    st.log->debug(st.label, "{}", line);
  st.metrics->journal_stops.inc();
  st.ph = phase::backing_off;
  st.failure = reason;
  deliver(st.in_flight, reason);
  st.fail_stash(reason);
  if (st.ticket != 0) {
    st.rt->permits->cancel(st.ticket);
    st.ticket = 0;
  }
  if (st.counted_waiting) {
    st.counted_waiting = false;
    st.rt->waiting_for_permit->add(-1);
  }
  st.release_permit();
  st.model.reset();
  st.last_seq = 0;
  ++st.step;  // answers to the old incarnation's requests are now stale
}

/// Stops the incarnation: restartable journal failures end it but keep the actor
/// (stop_incarnation), everything else stops the actor (fail).
void end_incarnation(entity_actor* self, error reason) {
  if (self->state.ph == phase::stopped || self->state.ph == phase::backing_off)
    return;
  if (restartable(reason) && !node_of(self).stopping())
    stop_incarnation(self, std::move(reason));
  else
    fail(self, std::move(reason));
}

/// Stops the incarnation normally (effect::stop / then_stop).
void stop_normally(entity_actor* self) {
  auto& st = self->state;
  if (st.ph == phase::stopped)
    return;
  st.ph = phase::stopped;
  st.stop_reason = error{errc::stopped, *st.pid + " stopped itself"};
  st.fail_stash(st.stop_reason);
  self->quit(caf::exit_reason::normal);
}

// -- commands --------------------------------------------------------------------------

void drain(entity_actor* self);

void finish(entity_actor* self, caf::response_promise& rp, completion c) {
  deliver(rp, std::move(c.reply));
  if (c.failure)
    fail(self, std::move(c.failure));
  else if (c.stop)
    stop_normally(self);
}

void start_write(entity_actor* self, caf::response_promise rp) {
  auto& st = self->state;
  atomic_write w;
  w.persistence_id = *st.pid;
  w.events = std::move(st.encoded);
  st.encoded = {};
  // Events leave persistence_id empty (it is the write's) and timestamp_ms 0 (the
  // journal stamps the time of the write).
  auto seq = st.last_seq;
  for (auto& e : w.events) {
    e.seq = ++seq;
    e.writer = st.writer;
  }
  st.in_flight = std::move(rp);
  st.in_flight_events = w.events.size();
  auto token = ++st.write_token;
  st.ph = phase::persisting;
  st.journal->write(std::move(w), [to = mailbox_ref::of(self), token](expected<void> r) {
    to.post(write_done{token, std::move(r)});
  });
}

void answer_state_query(entity_actor* self, caf::response_promise& rp) {
  deliver(rp, reply_result{self->state.model->state_copy()});
}

/// Handles one command on the running entity.
void process(entity_actor* self, command_ptr cmd, caf::response_promise rp) {
  auto& st = self->state;
  if (!cmd) {
    answer_state_query(self, rp);
    return;
  }
  st.metrics->commands.inc();
  st.encoded.clear();
  auto h = st.model->handle(*cmd, st.encoded);
  switch (h.what) {
    case handle_result::kind::complete:
      finish(self, rp, st.model->complete());
      return;
    case handle_result::kind::persist:
      start_write(self, std::move(rp));
      return;
    case handle_result::kind::unhandled:
      st.log->debug(st.label, "{}", h.failure.message());
      deliver(rp, h.failure);
      return;
    case handle_result::kind::rejected:
      st.metrics->persist_rejected.inc();
      st.log->warn(st.label, "persist rejected: {}", h.failure.message());
      deliver(rp, h.failure);
      return;
    case handle_result::kind::failed:
      deliver(rp, h.failure);
      fail(self, h.failure);
      return;
  }
}

void begin_recovery(entity_actor* self);

/// A command for an entity backing off: refused until the backoff passed, then it
/// starts a new incarnation (and waits for its recovery in the stash). Returns
/// whether the command was answered here.
bool refused_while_backing_off(entity_actor* self, const command_ptr& cmd,
                               caf::response_promise& rp) {
  auto& st = self->state;
  if (!cmd) {  // a state query (testkit): no incarnation, no state
    deliver(rp, reply_result{std::shared_ptr<void>{}});
    return true;
  }
  if (backoff_left(st) > std::chrono::steady_clock::duration::zero()) {
    deliver(rp, error{errc::actor_down, describe_backoff(st)});
    return true;
  }
  auto model = st.bp->make_model(node_of(self).shared_codec());
  if (!model) {
    deliver(rp, model.error());
    return true;
  }
  st.model = std::move(*model);
  st.writer = st.rt->next_writer_id();
  st.metrics->restarts.inc();
  st.log->info(st.label, "starting again after a journal failure ({} in a row): {}",
               st.failures_in_a_row, st.failure.message());
  begin_recovery(self);
  return false;
}

void on_command(entity_actor* self, command_ptr cmd) {
  auto& st = self->state;
  auto rp = self->make_response_promise();
  if (st.ph == phase::backing_off && refused_while_backing_off(self, cmd, rp))
    return;
  if (st.ph == phase::running && st.stash.empty()) {
    process(self, std::move(cmd), std::move(rp));
    return;
  }
  if (st.ph == phase::stopped) {
    deliver(rp, st.stop_reason);
    return;
  }
  if (st.stash.size() >= st.stash_capacity) {
    st.metrics->stash_overflow.inc();
    auto what = cmd ? cmd->name() : std::string{"a state query"};
    auto e = error{errc::overloaded,
                   fmt::format("{} is busy and its stash of {} commands is full; {} refused",
                               *st.pid, st.stash_capacity, what)};
    if (!st.overflow_logged) {  // once per burst: the metric counts them all
      st.overflow_logged = true;
      st.log->warn(st.label, "{}", e.message());
    }
    deliver(rp, e);
    return;
  }
  st.push_stash(stashed{std::move(cmd), std::move(rp)});
}

void drain(entity_actor* self) {
  auto& st = self->state;
  auto budget = drain_budget;
  while (st.ph == phase::running && !st.stash.empty()) {
    if (budget-- == 0) {
      self->send(self, drain_stash{});
      return;
    }
    auto next = st.pop_stash();
    process(self, std::move(next.cmd), std::move(next.rp));
  }
  if (st.stash.size() < st.stash_capacity / 2)
    st.overflow_logged = false;
}

// -- snapshots -------------------------------------------------------------------------

void retention(entity_actor* self, sequence_nr snapshot_seq) {
  auto& st = self->state;
  auto& opts = st.bp->options;
  auto span = static_cast<sequence_nr>(std::max<std::uint32_t>(opts.keep_snapshots, 1))
              * opts.snapshot_every;
  if (snapshot_seq <= span)
    return;
  auto upper = snapshot_seq - span;
  auto report = [self](std::string what) {
    return [to = mailbox_ref::of(self), what = std::move(what)](expected<void> r) {
      if (r)
        to.drop();
      else
        to.post(housekeeping_failed{what, r.error()});
    };
  };
  snapshot_criteria older;
  older.max_seq = upper;
  st.journal->delete_snapshots(*st.pid, older,
                               report(fmt::format("deleting snapshots up to seq {}", upper)));
  if (opts.delete_events_on_snapshot)
    st.journal->delete_events_to(*st.pid, upper,
                                 report(fmt::format("deleting events up to seq {}", upper)));
}

/// Saves a snapshot if the last persist crossed a multiple of snapshot_every;
/// returns whether one is being saved (the entity then waits for it).
bool maybe_snapshot(entity_actor* self, sequence_nr before) {
  auto& st = self->state;
  auto every = st.bp->options.snapshot_every;
  if (every == 0 || st.last_seq / every == before / every)
    return false;
  snapshot_record s;
  s.persistence_id = *st.pid;
  s.seq = st.last_seq;
  s.timestamp_ms = now_ms();
  if (auto r = st.model->encode_state(s); !r) {
    st.metrics->snapshot_failures.inc();
    st.log->warn(st.label, "snapshot at seq {} not saved: {}", s.seq, r.error().to_string());
    return false;
  }
  st.ph = phase::snapshotting;
  st.journal->save_snapshot(std::move(s), [to = mailbox_ref::of(self), inc = st.incarnation,
                                           seq = st.last_seq](expected<void> r) {
    to.post(snapshot_saved{inc, seq, std::move(r)});
  });
  return true;
}

// -- persist results -------------------------------------------------------------------

void on_write_done(entity_actor* self, write_done& m) {
  auto& st = self->state;
  if (st.ph != phase::persisting || m.token != st.write_token)
    return;
  auto rp = std::move(st.in_flight);
  st.in_flight = caf::response_promise{};
  auto first = st.last_seq + 1;
  auto last = st.last_seq + st.in_flight_events;
  if (m.result) {
    auto before = st.last_seq;
    st.last_seq = last;
    st.failures_in_a_row = 0;
    st.metrics->events_persisted.inc(st.in_flight_events);
    auto c = st.model->complete();
    auto stop = c.stop || static_cast<bool>(c.failure);
    finish(self, rp, std::move(c));
    if (stop)
      return;
    if (!maybe_snapshot(self, before)) {
      st.ph = phase::running;
      drain(self);
    }
    return;
  }
  st.model->discard();
  const auto& err = m.result.error();
  auto range = first == last ? fmt::format("seq {}", first)
                             : fmt::format("seq {}..{}", first, last);
  if (err.code() == errc::journal_rejected) {
    st.metrics->persist_rejected.inc();
    auto e = error{errc::journal_rejected,
                   fmt::format("{}: the journal rejected {} (nothing was stored; the entity "
                               "goes on): {}",
                               *st.pid, range, err.message())};
    st.log->warn(st.label, "{}", e.message());
    deliver(rp, e);
    st.ph = phase::running;
    drain(self);
    return;
  }
  st.metrics->persist_failed.inc();
  error e;
  if (err.code() == errc::sequence_conflict)
    e = error{errc::sequence_conflict,
              fmt::format("{}: {} was already written by another writer; stopping (single "
                          "writer): {}",
                          *st.pid, range, err.message())};
  else
    e = error{err.code(), fmt::format("{}: persisting {} failed, the outcome is unknown; the "
                                      "entity stopped and recovers what was stored when it "
                                      "starts again: {}",
                                      *st.pid, range, err.message())};
  deliver(rp, e);
  end_incarnation(self, std::move(e));
}

void on_snapshot_saved(entity_actor* self, snapshot_saved& m) {
  auto& st = self->state;
  if (st.ph != phase::snapshotting || m.incarnation != st.incarnation)
    return;
  if (m.result) {
    st.metrics->snapshots_saved.inc();
    retention(self, m.seq);
  } else {
    st.metrics->snapshot_failures.inc();
    st.log->warn(st.label, "saving the snapshot at seq {} failed (the entity goes on): {}",
                 m.seq, m.result.error().to_string());
  }
  st.ph = phase::running;
  drain(self);
}

// -- recovery --------------------------------------------------------------------------

void recovery_failed(entity_actor* self, error reason) {
  self->state.metrics->recovery_failures.inc();
  end_incarnation(self, error{reason.code(), "recovery failed: " + reason.message()});
}

/// The answer to the recovery step in flight; nullptr if it is stale (an older step,
/// or the entity stopped recovering) or an error (the recovery then failed, the
/// error naming `what`: the step and the sequence number).
template <class T>
T* step_result(entity_actor* self, std::uint64_t step, expected<T>& result,
               const std::string& what) {
  auto& st = self->state;
  if (st.ph != phase::recovering || step != st.step)
    return nullptr;
  if (!result) {
    recovery_failed(self, error{result.error().code(), fmt::format("{} {}: {}", *st.pid, what,
                                                                   result.error().message())});
    return nullptr;
  }
  return &*result;
}

void arm_recovery_check(entity_actor* self) {
  auto& st = self->state;
  self->delayed_send(self, std::chrono::duration_cast<caf::timespan>(st.rt->recovery_timeout),
                     recovery_check{st.step});
}

/// Requests the page that starts at `from` (the answer is the next recovery step).
void request_page(entity_actor* self, sequence_nr from) {
  auto& st = self->state;
  auto step = ++st.step;
  st.journal->read_events(*st.pid, from, st.replay_to, st.page_size,
                          [to = mailbox_ref::of(self), step](expected<std::vector<event_record>> r) {
                            to.post(page_loaded{step, std::move(r)});
                          });
}

void recovery_done(entity_actor* self) {
  auto& st = self->state;
  st.release_permit();
  st.ph = phase::running;
  st.metrics->recoveries.inc();
  auto took = std::chrono::steady_clock::now() - st.recovery_started;
  st.log->debug(st.label, "recovered at seq {} ({} events replayed in {} us)", st.last_seq,
                st.replayed,
                std::chrono::duration_cast<std::chrono::microseconds>(took).count());
  st.model->recovery_completed();
  drain(self);
}

void on_permit(entity_actor* self, permit_granted& m) {
  auto& st = self->state;
  if (st.ph != phase::waiting_permit)
    return;  // m.permit goes back when the message is destroyed
  st.ticket = 0;
  if (st.counted_waiting) {
    st.counted_waiting = false;
    st.rt->waiting_for_permit->add(-1);
  }
  st.permit = std::move(m.permit);
  st.counted_recovering = true;
  st.rt->recovering->add(1);
  st.ph = phase::recovering;
  st.recovery_started = std::chrono::steady_clock::now();
  auto step = ++st.step;
  arm_recovery_check(self);
  st.journal->load_snapshot(*st.pid, snapshot_criteria::latest(),
                            [to = mailbox_ref::of(self), step](expected<std::optional<snapshot_record>> r) {
                              to.post(snapshot_loaded{step, std::move(r)});
                            });
}

void on_snapshot_loaded(entity_actor* self, snapshot_loaded& m) {
  auto& st = self->state;
  auto* loaded = step_result(self, m.step, m.result, "(loading the latest snapshot)");
  if (!loaded)
    return;
  if (auto& snap = *loaded) {
    if (auto r = st.model->restore(*snap); !r)
      return recovery_failed(self, r.error());
    st.last_seq = snap->seq;
  }
  // The service answers only after every write submitted before has completed, so
  // a write of the previous incarnation still in flight is either part of the
  // replay or failed.
  auto step = ++st.step;
  st.journal->highest_sequence_nr(*st.pid,
                                  [to = mailbox_ref::of(self), step](expected<sequence_nr> r) {
                                    to.post(highest_loaded{step, std::move(r)});
                                  });
}

void on_highest_loaded(entity_actor* self, highest_loaded& m) {
  auto& st = self->state;
  auto* highest = step_result(
    self, m.step, m.result, fmt::format("seq {} (reading the highest seq)", st.last_seq + 1));
  if (!highest)
    return;
  if (*highest < st.last_seq)
    return recovery_failed(
      self, error{errc::decode_failed,
                  fmt::format("{} seq {}: the latest snapshot is at seq {}, above the journal's "
                              "highest seq {}: it does not belong to these events (restored "
                              "from elsewhere, or renumbered); refusing to recover from it "
                              "(`troupe journal verify` lists it)",
                              *st.pid, st.last_seq, st.last_seq, *highest)});
  st.replay_to = *highest;
  if (st.last_seq >= st.replay_to)
    return recovery_done(self);
  request_page(self, st.last_seq + 1);
}

void on_page_loaded(entity_actor* self, page_loaded& m) {
  auto& st = self->state;
  auto* loaded = step_result(self, m.step, m.result,
                             fmt::format("seq {} (replay)", st.last_seq + 1));
  if (!loaded)
    return;
  auto page = std::move(*loaded);
  if (page.empty())
    return recovery_failed(
      self, error{errc::journal_failure,
                  fmt::format("{} seq {}: missing from the journal (its highest seq is {})",
                              *st.pid, st.last_seq + 1, st.replay_to)});
  // Read-ahead: the journal reads the next page while this one is decoded and
  // applied, so I/O and decoding overlap. Still bounded: one page being applied,
  // at most one being read, however long the journal.
  auto next = page.back().seq + 1;
  bool ahead = st.read_ahead && next <= st.replay_to;
  if (ahead)
    request_page(self, next);
  for (auto& rec : page) {
    if (rec.seq != st.last_seq + 1)
      return recovery_failed(self,
                             error{errc::journal_failure,
                                   fmt::format("{} seq {}: missing from the journal (replay "
                                               "found seq {} next)",
                                               *st.pid, st.last_seq + 1, rec.seq)});
    if (auto r = st.model->apply(rec); !r)
      return recovery_failed(self, r.error());
    st.last_seq = rec.seq;
  }
  st.replayed += page.size();
  st.metrics->events_replayed.inc(page.size());
  if (st.last_seq >= st.replay_to)
    recovery_done(self);  // a read-ahead answer (none expected here) would be stale
  else if (!ahead)
    request_page(self, st.last_seq + 1);  // strict: the next page only now
}

void on_recovery_check(entity_actor* self, recovery_check m) {
  auto& st = self->state;
  if (st.ph != phase::recovering)
    return;
  if (m.step != st.step) {  // progress since the check was armed
    arm_recovery_check(self);
    return;
  }
  recovery_failed(self, error{errc::timeout,
                              fmt::format("{} seq {}: the journal did not answer within {}",
                                          *st.pid, st.last_seq + 1,
                                          format_duration(st.rt->recovery_timeout))});
}

void begin_recovery(entity_actor* self) {
  auto& st = self->state;
  ++st.incarnation;
  st.last_seq = 0;
  st.replayed = 0;
  st.ph = phase::waiting_permit;
  st.ticket = st.rt->permits->acquire([a = me(self)](recovery_permits::permit_ptr p) {
    caf::anon_send(a, permit_granted{std::move(p)});
  });
  if (st.ticket != 0) {
    st.counted_waiting = true;
    st.rt->waiting_for_permit->add(1);
  }
}

// -- the actor -------------------------------------------------------------------------

// The service install_journal hung on the node (find_journal needs the node; an
// actor only has its context).
expected<std::shared_ptr<journal_service>> journal_of(node_context& ctx) {
  if (auto j = ctx.extension<journal_service>())
    return j;
  return error{errc::not_found,
               fmt::format("node '{}' has no journal: call persistence::install_journal first",
                           ctx.name())};
}

caf::behavior entity_behavior(entity_actor* self, blueprint_ptr bp) {
  auto& st = self->state;
  auto& ctx = node_of(self);
  st.bp = bp;
  st.pid = &bp->persistence_id;
  st.log = &ctx.log();
  st.label = "entity/" + bp->persistence_id;
  st.rt = entity_runtime::of(ctx);
  st.metrics = &st.rt->metrics_for(bp->entity_type);
  st.writer = st.rt->next_writer_id();
  st.stash_capacity = bp->options.stash_capacity > 0 ? bp->options.stash_capacity
                                                     : st.rt->stash_capacity;
  st.page_size = bp->options.recovery_page_size > 0 ? bp->options.recovery_page_size
                                                     : st.rt->recovery_page_size;
  st.read_ahead = st.rt->replay_read_ahead;
  st.backoff = backoff_policy{.min = st.rt->restart_backoff_min,
                              .max = std::max(st.rt->restart_backoff_min,
                                              st.rt->restart_backoff_max)};
  auto journal = journal_of(ctx);
  auto model = journal ? bp->make_model(ctx.shared_codec())
                       : expected<std::unique_ptr<entity_model>>{journal.error()};
  if (!model) {
    auto e = error{model.error().code(),
                   fmt::format("{} cannot start: {}", bp->persistence_id, model.error().message())};
    st.ph = phase::stopped;
    st.stop_reason = e;
    st.log->error(st.label, "{}", e.message());
    self->quit(to_caf_error(e));
    return {};
  }
  st.journal = std::move(*journal);
  st.model = std::move(*model);
  begin_recovery(self);
  return {
    [self](command_envelope& env) { on_command(self, std::move(env.cmd)); },
    [self](permit_granted& m) { on_permit(self, m); },
    [self](snapshot_loaded& m) { on_snapshot_loaded(self, m); },
    [self](page_loaded& m) { on_page_loaded(self, m); },
    [self](highest_loaded& m) { on_highest_loaded(self, m); },
    [self](recovery_check m) { on_recovery_check(self, m); },
    [self](write_done& m) { on_write_done(self, m); },
    [self](snapshot_saved& m) { on_snapshot_saved(self, m); },
    [self](housekeeping_failed& m) {
      self->state.log->warn(self->state.label, "{} failed: {}", m.what, m.reason.to_string());
    },
    [self](drain_stash) {
      if (self->state.ph == phase::running)
        drain(self);
    },
  };
}

caf::actor spawn_incarnation(caf::actor_system& sys, const blueprint_ptr& bp) {
  return spawn_actor(sys, "entity/" + bp->persistence_id, entity_behavior, bp);
}

} // namespace

// -- public entry points -----------------------------------------------------------------

expected<caf::actor> spawn_entity(node& n, blueprint_ptr bp) {
  if (bp->entity_id.empty())
    return error{errc::invalid_argument,
                 fmt::format("entity type '{}': an entity id must not be empty", bp->entity_type)};
  if (auto j = journal_of(n.context()); !j)
    return std::move(j).error();
  // Check the codec registrations now, so the caller gets the error, not a log line.
  if (auto m = bp->make_model(n.context().shared_codec()); !m)
    return error{m.error().code(),
                 fmt::format("{} cannot start: {}", bp->persistence_id, m.error().message())};
  auto name = bp->persistence_id;
  return n.adopt_actor(std::move(name),
                       [bp](caf::actor_system& sys) { return spawn_incarnation(sys, bp); });
}

child_spec entity_child(blueprint_ptr bp, restart_policy restart) {
  auto name = bp->persistence_id;
  return child_spec{std::move(name),
                    [bp](caf::actor_system& sys) { return spawn_incarnation(sys, bp); },
                    restart};
}

expected<void> stop_and_wait(caf::actor_system& sys, const caf::actor& dest, duration timeout) {
  if (!dest)
    return {};
  troupe::detail::thread_caf_state_guard release_after;
  caf::scoped_actor self{sys};
  self->monitor(dest);
  self->send_exit(dest, caf::exit_reason::user_shutdown);
  bool down = false;
  self->receive([&](caf::down_msg&) { down = true; },
                caf::after(std::chrono::duration_cast<caf::timespan>(timeout)) >> [] {});
  if (!down)
    return error{errc::timeout, "the entity did not stop within " + format_duration(timeout)};
  return {};
}

} // namespace troupe::persistence::detail
