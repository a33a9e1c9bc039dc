// The event-sourced entity runtime: one CAF actor per entity incarnation, driving a
// type-erased entity_model (detail/entity_model.hpp) against the node's
// journal_service. This file and its two siblings (entity_state.hpp lists them) are
// the only CAF-heavy translation units of the runtime; the user's entity types
// only instantiate the model templates.
//
// Life of an incarnation:
//   waiting_permit -> recovering (latest snapshot, highest seq, paged replay)
//   -> running <-> persisting / snapshotting / throttled -> stopped
// (throttled: the journal's write queue was full; the command waits in the stash
// and is tried again after a short backoff.)
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
#include "troupe/persistence/detail/entity_control.hpp"
#include "troupe/persistence/owned_entity.hpp"

#include "entity_state.hpp"

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

// -- stopping --------------------------------------------------------------------------

/// Stops the incarnation with an error: a supervisor restarts it.
void fail(entity_actor* self, error reason) {
  auto& st = self->state;
  if (st.ph == phase::stopped)
    return;
  st.ph = phase::stopped;
  st.log->error(st.label(), "stopping: {}", reason.to_string());
  st.set_stop_reason(reason);
  deliver(st.in_flight, reason);
  st.fail_stash(reason);
  st.end_recovery();
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
    case errc::fenced:
    case errc::shutting_down:
    case errc::internal:
      return false;
    default:
      return true;
  }
}

/// The time left of the backoff, or zero once it passed.
std::chrono::steady_clock::duration backoff_left(const entity_state& st) {
  if (!st.trouble)
    return std::chrono::steady_clock::duration::zero();
  auto left = st.trouble->restart_after - std::chrono::steady_clock::now();
  return left > std::chrono::steady_clock::duration::zero() ? left
                                                             : std::chrono::steady_clock::duration::zero();
}

std::string describe_backoff(const entity_state& st) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(backoff_left(st));
  return fmt::format("{} is stopped after a journal failure; a command after {} starts it "
                     "again: {}",
                     *st.pid, format_duration(left),
                     st.trouble ? st.trouble->failure.message() : std::string{});
}

/// Ends the incarnation after a journal failure, keeping the actor: every command
/// it holds gets `reason` (naming the entity and the cause), its state is dropped,
/// and commands are refused until the backoff passed.
void stop_incarnation(entity_actor* self, error reason) {
  auto& st = self->state;
  if (!st.trouble)
    st.trouble = std::make_unique<entity_state::journal_trouble>();
  auto& trouble = *st.trouble;
  auto first = trouble.failures_in_a_row++ == 0;
  std::uniform_real_distribution<double> u{0.0, 1.0};
  static thread_local std::minstd_rand rng{std::random_device{}()};
  auto delay = st.rt->restart_backoff().delay(trouble.failures_in_a_row, u(rng));
  trouble.restart_after = std::chrono::steady_clock::now() + delay;
  // Thousands of entities fail together when the disk fills: one line each, then
  // debug while the failures go on.
  auto line = fmt::format(
    "stopped (restarts on a command after {}): {}",
    format_duration(std::chrono::duration_cast<std::chrono::milliseconds>(delay)),
    reason.to_string());
  if (first)
    st.log->warn(st.label(), "{}", line);
  else
    st.log->debug(st.label(), "{}", line);
  st.metrics->journal_stops.inc();
  st.ph = phase::backing_off;
  trouble.failure = reason;
  deliver(st.in_flight, reason);
  st.fail_stash(reason);
  st.end_recovery();
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
  st.set_stop_reason(error{errc::stopped, *st.pid + " stopped itself"});
  st.fail_stash(st.stop_reason());
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

void start_write(entity_actor* self, command_ptr cmd, caf::response_promise rp,
                 std::vector<event_record> events) {
  auto& st = self->state;
  atomic_write w;
  w.persistence_id = *st.pid;
  w.fence = st.bp->fence;
  st.in_flight_cmd = std::move(cmd);
  w.events = std::move(events);
  auto writer = st.rt->writer_id(st.writer);
  // Events leave persistence_id empty (it is the write's) and timestamp_ms 0 (the
  // journal stamps the time of the write).
  auto seq = st.last_seq;
  for (auto& e : w.events) {
    e.seq = ++seq;
    if (&e == &w.events.back())
      e.writer = std::move(writer);
    else
      e.writer = writer;
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
  std::vector<event_record> encoded;
  auto h = st.model->handle(*cmd, encoded);
  switch (h.what) {
    case handle_result::kind::complete:
      finish(self, rp, st.model->complete());
      return;
    case handle_result::kind::persist:
      start_write(self, std::move(cmd), std::move(rp), std::move(encoded));
      return;
    case handle_result::kind::unhandled:
      st.log->debug(st.label(), "{}", h.failure.message());
      deliver(rp, h.failure);
      return;
    case handle_result::kind::rejected:
      st.metrics->persist_rejected.inc();
      st.log->warn(st.label(), "persist rejected: {}", h.failure.message());
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
  st.writer = st.rt->next_writer();
  st.metrics->restarts.inc();
  st.log->info(st.label(), "starting again after a journal failure ({} in a row): {}",
               st.trouble->failures_in_a_row, st.trouble->failure.message());
  begin_recovery(self);
  return false;
}

void on_command(entity_actor* self, command_ptr cmd) {
  auto& st = self->state;
  auto rp = self->make_response_promise();
  note_activity(self);
  if (st.ph == phase::backing_off && !st.handing_back && refused_while_backing_off(self, cmd, rp))
    return;
  if (st.ph == phase::running && st.stash.empty() && !st.handing_back) {
    process(self, std::move(cmd), std::move(rp));
    return;
  }
  if (st.ph == phase::stopped) {
    deliver(rp, st.stop_reason());
    return;
  }
  if (st.stash.size() >= st.stash_capacity()) {
    st.metrics->stash_overflow.inc();
    auto what = cmd ? cmd->name() : std::string{"a state query"};
    auto e = error{errc::overloaded,
                   fmt::format("{} is busy and its stash of {} commands is full; {} refused",
                               *st.pid, st.stash_capacity(), what)};
    if (!st.overflow_logged) {  // once per burst: the metric counts them all
      st.overflow_logged = true;
      st.log->warn(st.label(), "{}", e.message());
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
  if (st.stash.size() < st.stash_capacity() / 2)
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
    st.log->warn(st.label(), "snapshot at seq {} not saved: {}", s.seq, r.error().to_string());
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

void resume(entity_actor* self) {
  auto& st = self->state;
  if (st.handing_back) {
    finish_hand_back(self);
    return;
  }
  st.ph = phase::running;
  drain(self);
}

/// The journal's write queue was full (overloaded): nothing was stored. The
/// command goes back to the front of the stash and is handled again after a short
/// backoff (doubling while the queue stays full), instead of failing it.
void throttle(entity_actor* self, command_ptr cmd, caf::response_promise rp, const error& why) {
  auto& st = self->state;
  st.stash.push_front(stashed{std::move(cmd), std::move(rp)});
  st.metrics->stashed.add(1);
  st.metrics->persist_throttled.inc();
  st.ph = phase::throttled;
  if (st.handing_back) {
    finish_hand_back(self);
    return;
  }
  auto shift = std::min(st.overloads_in_a_row++, 6);
  auto delay = std::chrono::milliseconds{5} * (1 << shift);  // 5 ms .. 320 ms
  if (shift == 0)
    st.log->debug(st.label(), "persist deferred for {} ms: {}", delay.count(), why.message());
  self->delayed_send(self, delay, retry_persist{st.incarnation});
}

void on_retry_persist(entity_actor* self, retry_persist m) {
  auto& st = self->state;
  if (st.ph != phase::throttled || m.incarnation != st.incarnation)
    return;
  st.ph = phase::running;
  drain(self);
}

void on_write_done(entity_actor* self, write_done& m) {
  auto& st = self->state;
  if (st.ph != phase::persisting || m.token != st.write_token)
    return;
  auto rp = std::move(st.in_flight);
  st.in_flight = caf::response_promise{};
  auto cmd = std::move(st.in_flight_cmd);
  auto first = st.last_seq + 1;
  auto last = st.last_seq + st.in_flight_events;
  if (m.result) {
    auto before = st.last_seq;
    st.last_seq = last;
    st.trouble.reset();  // a successful persist ends a run of failures
    st.overloads_in_a_row = 0;
    st.metrics->events_persisted.inc(st.in_flight_events);
    auto c = st.model->complete();
    auto stop = c.stop || static_cast<bool>(c.failure);
    finish(self, rp, std::move(c));
    if (stop)
      return;
    if (st.handing_back || !maybe_snapshot(self, before))
      resume(self);
    return;
  }
  st.model->discard();
  const auto& err = m.result.error();
  if (err.code() == errc::overloaded)
    return throttle(self, std::move(cmd), std::move(rp), err);
  auto range = first == last ? fmt::format("seq {}", first)
                             : fmt::format("seq {}..{}", first, last);
  if (err.code() == errc::journal_rejected) {
    st.metrics->persist_rejected.inc();
    auto e = error{errc::journal_rejected,
                   fmt::format("{}: the journal rejected {} (nothing was stored; the entity "
                               "goes on): {}",
                               *st.pid, range, err.message())};
    st.log->warn(st.label(), "{}", e.message());
    deliver(rp, e);
    resume(self);
    return;
  }
  st.metrics->persist_failed.inc();
  error e;
  if (err.code() == errc::fenced)
    e = error{errc::fenced, fmt::format("{}: persisting {} was fenced; the entity stopped (a "
                                        "newer owner took over): {}",
                                        *st.pid, range, err.message())};
  else if (err.code() == errc::sequence_conflict)
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
  // A hand back waiting for this persist still hands back what is held: those
  // commands never ran, and the next home recovers what was stored.
  if (st.handing_back && restartable(e))
    return finish_hand_back(self);
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
    st.log->warn(st.label(), "saving the snapshot at seq {} failed (the entity goes on): {}",
                 m.seq, m.result.error().to_string());
  }
  resume(self);
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

/// Every message of an entity but its commands (entity_behavior): the journal's
/// answers, its own timers, stop_and_hand_back. A plain function, so that the
/// actor's default handler allocates nothing.
caf::result<caf::message> dispatch_internal(caf::scheduled_actor* base, caf::message_view& x) {
  auto* self = static_cast<entity_actor*>(base);
  auto& m = x.content();
  if (m.size() != 1)
    return caf::sec::unexpected_message;
  // The hot ones first.
  if (m.match_element<write_done>(0))
    on_write_done(self, m.get_mutable_as<write_done>(0));
  else if (m.match_element<permit_granted>(0))
    on_permit(self, m.get_mutable_as<permit_granted>(0));
  else if (m.match_element<page_loaded>(0))
    on_page_loaded(self, m.get_mutable_as<page_loaded>(0));
  else if (m.match_element<snapshot_loaded>(0))
    on_snapshot_loaded(self, m.get_mutable_as<snapshot_loaded>(0));
  else if (m.match_element<highest_loaded>(0))
    on_highest_loaded(self, m.get_mutable_as<highest_loaded>(0));
  else if (m.match_element<recovery_check>(0))
    on_recovery_check(self, m.get_mutable_as<recovery_check>(0));
  else if (m.match_element<drain_stash>(0)) {
    if (self->state.ph == phase::running)
      drain(self);
  } else if (m.match_element<idle_check>(0))
    on_idle_check(self);
  else if (m.match_element<stop_and_hand_back>(0))
    on_hand_back(self);
  else if (m.match_element<snapshot_saved>(0))
    on_snapshot_saved(self, m.get_mutable_as<snapshot_saved>(0));
  else if (m.match_element<retry_persist>(0))
    on_retry_persist(self, m.get_mutable_as<retry_persist>(0));
  else if (m.match_element<housekeeping_failed>(0)) {
    auto& h = m.get_mutable_as<housekeeping_failed>(0);
    self->state.log->warn(self->state.label(), "{} failed: {}", h.what, h.reason.to_string());
  } else
    return caf::sec::unexpected_message;
  // Answers, if any, went through response promises.
  return caf::delegated<caf::message>{};
}

caf::behavior entity_behavior(entity_actor* self, blueprint_ptr bp) {
  auto& st = self->state;
  auto& ctx = node_of(self);
  st.bp = bp;
  st.pid = &bp->persistence_id;
  st.log = &ctx.log();
  st.rt = entity_runtime::of(ctx);
  st.metrics = &st.rt->metrics_for(bp->entity_type);
  st.writer = st.rt->next_writer();
  auto journal = journal_of(ctx);
  auto model = journal ? bp->make_model(ctx.shared_codec())
                       : expected<std::unique_ptr<entity_model>>{journal.error()};
  if (!model) {
    auto e = error{model.error().code(),
                   fmt::format("{} cannot start: {}", bp->persistence_id, model.error().message())};
    st.ph = phase::stopped;
    st.set_stop_reason(e);
    st.log->error(st.label(), "{}", e.message());
    self->quit(to_caf_error(e));
    return {};
  }
  st.journal = std::move(*journal);
  st.model = std::move(*model);
  watch_owner(self);
  begin_recovery(self);
  // One handler in the behaviour, the rest dispatched by dispatch_internal: CAF
  // 0.17 builds a behaviour per actor, about 45 bytes per handler, which was a
  // sixth of an idle entity's memory (bench/entity_memory.cpp).
  self->set_default_handler(dispatch_internal);
  return {
    [self](command_envelope& env) { on_command(self, std::move(env.cmd)); },
  };
}

std::string entity_label(caf::scheduled_actor* s) {
  return static_cast<entity_actor*>(s)->state.label();
}

caf::actor spawn_incarnation(caf::actor_system& sys, const blueprint_ptr& bp) {
  // troupe's default handlers in their allocation-free form (spawn.hpp).
  return sys.spawn(
    [](entity_actor* self, const blueprint_ptr& bp) {
      init_actor(self, &entity_label);
      return entity_behavior(self, bp);
    },
    bp);
}

// -- public entry points -----------------------------------------------------------------

expected<void> check_spawnable(node_context& ctx, const blueprint_ptr& bp) {
  if (bp->entity_id.empty())
    return error{errc::invalid_argument,
                 fmt::format("entity type '{}': an entity id must not be empty", bp->entity_type)};
  if (auto j = journal_of(ctx); !j)
    return std::move(j).error();
  // Check the codec registrations now, so the caller gets the error, not a log line.
  if (auto m = bp->make_model(ctx.shared_codec()); !m)
    return error{m.error().code(),
                 fmt::format("{} cannot start: {}", bp->persistence_id, m.error().message())};
  return {};
}

expected<caf::actor> spawn_entity(node& n, blueprint_ptr bp) {
  if (auto ok = check_spawnable(n.context(), bp); !ok)
    return std::move(ok).error();
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
