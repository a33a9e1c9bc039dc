// The entity runtime's recovery (entity_state.hpp): a permit, the latest
// snapshot, the journal's highest sequence nr, then paged replay with read-ahead.
#include "entity_state.hpp"

#include "troupe/actors/node_context.hpp"

namespace troupe::persistence::detail {

namespace {

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
  if (st.ph != phase::recovering || step != st.step || !st.recovery)
    return nullptr;
  if (!result) {
    recovery_failed(self, error{result.error().code(), fmt::format("{} {}: {}", *st.pid, what,
                                                                   result.error().message())});
    return nullptr;
  }
  return &*result;
}

/// Requests the page that starts at `from` (the answer is the next recovery step).
void request_page(entity_actor* self, sequence_nr from) {
  auto& st = self->state;
  auto step = ++st.step;
  st.journal->read_events(*st.pid, from, st.recovery->replay_to, st.page_size(),
                          [to = mailbox_ref::of(self), step](expected<std::vector<event_record>> r) {
                            to.post(page_loaded{step, std::move(r)});
                          });
}

void recovery_done(entity_actor* self) {
  auto& st = self->state;
  auto took = std::chrono::steady_clock::now() - st.recovery->started;
  auto replayed = st.recovery->replayed;
  st.end_recovery();
  st.ph = phase::running;
  st.metrics->recoveries.inc();
  st.metrics->recovery_seconds.observe(std::chrono::duration<double>(took).count());
  st.log->debug(st.label(), "recovered at seq {} ({} events replayed in {} us)", st.last_seq,
                replayed,
                std::chrono::duration_cast<std::chrono::microseconds>(took).count());
  st.model->recovery_completed();
  note_activity(self);
  drain(self);
}

} // namespace

void on_permit(entity_actor* self, permit_granted& m) {
  auto& st = self->state;
  if (st.ph != phase::waiting_permit || !st.recovery)
    return;  // m.permit goes back when the message is destroyed
  auto& r = *st.recovery;
  r.ticket = 0;
  if (r.counted_waiting) {
    r.counted_waiting = false;
    st.rt->waiting_for_permit->add(-1);
  }
  r.permit = std::move(m.permit);
  r.counted_recovering = true;
  st.rt->recovering->add(1);
  st.ph = phase::recovering;
  r.started = std::chrono::steady_clock::now();
  auto step = ++st.step;
  r.checked_step = step;
  r.watch = st.rt->watchdog->begin(self->system(), self->address());
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
  st.recovery->replay_to = *highest;
  if (st.last_seq >= st.recovery->replay_to)
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
                              *st.pid, st.last_seq + 1, st.recovery->replay_to)});
  // Read-ahead: the journal reads the next page while this one is decoded and
  // applied, so I/O and decoding overlap. Still bounded: one page being applied,
  // at most one being read, however long the journal.
  auto next = page.back().seq + 1;
  auto& rs = *st.recovery;
  bool ahead = st.rt->replay_read_ahead && next <= rs.replay_to;
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
  rs.replayed += page.size();
  st.metrics->events_replayed.inc(page.size());
  st.journal->recycle(std::move(page));
  if (st.last_seq >= rs.replay_to)
    recovery_done(self);  // a read-ahead answer (none expected here) would be stale
  else if (!ahead)
    request_page(self, st.last_seq + 1);  // strict: the next page only now
}

void on_recovery_check(entity_actor* self, recovery_check) {
  auto& st = self->state;
  if (st.ph != phase::recovering || !st.recovery)
    return;
  if (st.recovery->checked_step != st.step) {  // progress since the last check
    st.recovery->checked_step = st.step;
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
  st.ph = phase::waiting_permit;
  st.end_recovery();  // none expected; a fresh one
  st.recovery = std::make_unique<entity_state::recovery_state>();
  auto& r = *st.recovery;
  r.ticket = st.rt->permits->acquire([a = me(self)](recovery_permits::permit_ptr p) {
    caf::anon_send(a, permit_granted{std::move(p)});
  });
  if (r.ticket != 0) {
    r.counted_waiting = true;
    st.rt->waiting_for_permit->add(1);
  }
}

} // namespace troupe::persistence::detail
