// Asking entities: blocking (troupe::ask on a scoped actor), from inside an actor,
// and one-way.
//
// The in-actor ask keeps its deadlines itself instead of giving every request a
// CAF timeout. In CAF 0.17 each timed request costs two trips through the actor
// clock's thread (set, then cancel the timeout; the cancel scans the asking actor's
// pending timeouts), which halved entity throughput when an actor kept thousands of
// asks in flight (bench/entity_persist.cpp). Here the request itself has no CAF
// timeout; the asking actor keeps a table of its pending asks ordered by deadline,
// and one timed "probe" request per asking actor wakes it at the earliest deadline
// to fail what is overdue with `timeout`. Every ask therefore still completes exactly
// once, with the reply, the error, or `timeout` at its deadline (give or take the
// clock's granularity). A reply arriving after its ask timed out is dropped. (A
// reply that never arrives at all would leave one CAF response handler behind in
// the asking actor; entities always answer or are known dead, so that does not
// happen for them.)
#include "troupe/persistence/detail/entity_control.hpp"
#include "troupe/persistence/detail/entity_routing.hpp"
#include "troupe/persistence/entity.hpp"

#include "entity_messages.hpp"
#include "entity_state.hpp"

#include "troupe/actors/ask.hpp"
#include "troupe/actors/caf_error.hpp"
#include "troupe/actors/spawn.hpp"

#include <caf/all.hpp>

#include <algorithm>
#include <mutex>
#include <set>
#include <unordered_map>

namespace troupe::persistence::detail {

struct deadline_probe {};

} // namespace troupe::persistence::detail

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::persistence::detail::deadline_probe)

namespace troupe::persistence::detail {

namespace {

using clock_type = std::chrono::steady_clock;
using time_point = clock_type::time_point;
using continuation = std::function<void(expected<reply_box>)>;

/// The pending asks of one asking actor. Used only on that actor's thread (its
/// handlers run one at a time), except creation and removal in the registry.
/// Slots are reused and deadlines kept in a heap, so an ask allocates nothing here
/// once the table has grown; heap entries of asks that completed are skipped (and
/// dropped in bulk when they outnumber the live ones).
class ask_table {
public:
  /// Registers an ask; returns its id.
  std::uint64_t add(time_point deadline, duration timeout, continuation k) {
    std::uint32_t index;
    if (free_.empty()) {
      index = static_cast<std::uint32_t>(slots_.size());
      slots_.emplace_back();
    } else {
      index = free_.back();
      free_.pop_back();
    }
    auto& s = slots_[index];
    s.k = std::move(k);
    s.deadline = deadline;
    s.timeout = timeout;
    s.live = true;
    ++live_;
    push_heap(heap_entry{deadline, index, s.generation});
    return id_of(index, s.generation);
  }

  /// Completes an ask with its reply; a no-op if it already timed out.
  void complete(std::uint64_t id, expected<reply_box> r) {
    // k may add asks (and grow slots_): it is taken out first.
    if (auto k = take(id))
      k(std::move(r));
  }

  /// Removes a live ask without completing it; its continuation (null if none).
  continuation take(std::uint64_t id) {
    auto index = static_cast<std::uint32_t>(id >> 32);
    auto generation = static_cast<std::uint32_t>(id);
    if (index >= slots_.size() || !slots_[index].live || slots_[index].generation != generation)
      return nullptr;
    auto& s = slots_[index];
    auto k = std::move(s.k);
    s.k = nullptr;
    s.live = false;
    ++s.generation;
    free_.push_back(index);
    --live_;
    return k;
  }

  /// Fails the asks whose deadline is at or before `now` with timeout.
  void expire(time_point now) {
    drop_stale();
    while (!heap_.empty() && heap_.front().deadline <= now) {
      auto top = pop_heap();
      auto& s = slots_[top.index];
      if (s.live && s.generation == top.generation)
        complete(id_of(top.index, top.generation),
                 error{errc::timeout,
                       "the entity did not reply within " + format_duration(s.timeout)});
      drop_stale();
    }
  }

  /// Fails every pending ask with `e`.
  void fail_all(const error& e) {
    for (std::uint32_t i = 0; i < slots_.size(); ++i)
      if (slots_[i].live)
        complete(id_of(i, slots_[i].generation), e);
  }

  /// The earliest deadline that no armed probe covers yet (a probe armed for t
  /// covers every deadline >= t: it re-arms for them when it fires).
  std::optional<time_point> uncovered() {
    drop_stale();
    if (heap_.empty())
      return std::nullopt;
    auto earliest = heap_.front().deadline;
    if (!probes_.empty() && *probes_.begin() <= earliest)
      return std::nullopt;
    return earliest;
  }

  void probe_armed(time_point t) { probes_.insert(t); }
  void probe_fired(time_point t) {
    if (auto i = probes_.find(t); i != probes_.end())
      probes_.erase(i);
  }

private:
  struct slot {
    continuation k;
    time_point deadline;
    duration timeout{0};
    std::uint32_t generation = 0;
    bool live = false;
  };
  struct heap_entry {
    time_point deadline;
    std::uint32_t index;
    std::uint32_t generation;
  };
  static bool later(const heap_entry& a, const heap_entry& b) { return a.deadline > b.deadline; }

  static std::uint64_t id_of(std::uint32_t index, std::uint32_t generation) {
    return (static_cast<std::uint64_t>(index) << 32) | generation;
  }

  void push_heap(heap_entry e) {
    heap_.push_back(e);
    std::push_heap(heap_.begin(), heap_.end(), later);
    // Entries of completed asks stay until they surface; rebuild when they dominate.
    if (heap_.size() > 64 && heap_.size() > 4 * live_) {
      std::erase_if(heap_, [this](const heap_entry& h) { return stale(h); });
      std::make_heap(heap_.begin(), heap_.end(), later);
    }
  }

  heap_entry pop_heap() {
    std::pop_heap(heap_.begin(), heap_.end(), later);
    auto e = heap_.back();
    heap_.pop_back();
    return e;
  }

  bool stale(const heap_entry& h) const {
    auto& s = slots_[h.index];
    return !s.live || s.generation != h.generation;
  }

  void drop_stale() {
    while (!heap_.empty() && stale(heap_.front()))
      pop_heap();
  }

  std::vector<slot> slots_;
  std::vector<std::uint32_t> free_;
  std::vector<heap_entry> heap_;
  std::size_t live_ = 0;
  std::multiset<time_point> probes_;
};

using table_ptr = std::shared_ptr<ask_table>;

/// The table of each actor that asked entities; an entry is removed when its
/// actor terminates.
class table_registry {
public:
  table_ptr of(caf::event_based_actor* self) {
    // An actor asks in bursts (a handler that asks many entities, or each reply
    // asking again), so the calling thread remembers the last table it used. An
    // actor's address may be reused after it terminates: the key also holds its
    // id and system, which no live actor shares with a dead one.
    thread_local struct {
      const void* actor = nullptr;
      caf::actor_id id = 0;
      const void* system = nullptr;
      std::weak_ptr<ask_table> table;
    } last;
    if (last.actor == self && last.id == self->id() && last.system == &self->system())
      if (auto t = last.table.lock())
        return t;
    auto t = lookup(self);
    last.actor = self;
    last.id = self->id();
    last.system = &self->system();
    last.table = t;
    return t;
  }

private:
  table_ptr lookup(caf::event_based_actor* self) {
    std::lock_guard<std::mutex> guard{mtx_};
    auto& t = tables_[self];
    if (!t) {
      t = std::make_shared<ask_table>();
      self->attach_functor([this, self] { forget(self); });
    }
    return t;
  }

  void forget(caf::event_based_actor* self) {
    table_ptr doomed;  // its continuations are destroyed outside the lock
    std::lock_guard<std::mutex> guard{mtx_};
    if (auto i = tables_.find(self); i != tables_.end()) {
      doomed = std::move(i->second);
      tables_.erase(i);
    }
  }

  std::mutex mtx_;
  std::unordered_map<const void*, table_ptr> tables_;
};

table_registry& registry() {
  static table_registry instance;  // outlives every actor system (function static)
  return instance;
}

/// Receives one probe and quits without answering: CAF 0.17 then sends no reply
/// at all, so the probe request ends exactly at its timeout.
caf::behavior probe_behavior(caf::event_based_actor* self) {
  return {[self](deadline_probe) {
    auto never_delivered = self->make_response_promise();
    self->quit();
  }};
}

void arm_probe(caf::event_based_actor* self, const table_ptr& table) {
  auto t = table->uncovered();
  if (!t)
    return;
  table->probe_armed(*t);
  auto probe = spawn_actor(self->system(), "entity-ask/deadline", probe_behavior);
  auto wait = std::max(clock_type::duration{0}, *t - clock_type::now());
  self
    ->request(probe, std::chrono::duration_cast<caf::timespan>(wait) + std::chrono::microseconds{1},
              deadline_probe{})
    .then([] {},
          [self, table, at = *t](caf::error& e) {
            table->probe_fired(at);
            if (e == caf::sec::request_timeout) {
              // Deadlines within a millisecond count as due: no re-arm ping-pong.
              table->expire(clock_type::now() + std::chrono::milliseconds{1});
              arm_probe(self, table);
            } else {
              // The probe could not run (the system is going down): nothing would
              // enforce the deadlines any more.
              table->fail_all(error{errc::shutting_down,
                                    "entity asks of this actor cannot be timed any more: "
                                      + self->system().render(e)});
            }
          });
}

} // namespace

ask_ticket begin_ask(caf::event_based_actor* self, duration timeout, ask_continuation k) {
  return begin_ask(self, clock_type::now() + timeout, timeout, std::move(k));
}

ask_ticket begin_ask(caf::event_based_actor* self, time_point deadline, duration timeout,
                     ask_continuation k) {
  auto table = registry().of(self);
  auto id = table->add(deadline, timeout, std::move(k));
  arm_probe(self, table);
  return {std::move(table), id};
}

void finish_ask(const ask_ticket& t, expected<reply_box> r) {
  static_cast<ask_table*>(t.table.get())->complete(t.id, std::move(r));
}

ask_continuation take_ask(const ask_ticket& t) {
  return static_cast<ask_table*>(t.table.get())->take(t.id);
}

expected<reply_box> ask_entity(caf::actor_system& sys, const caf::actor& dest, duration timeout,
                               command_ptr cmd) {
  bool bounced = false;
  return ask_entity(sys, dest, timeout, std::move(cmd), [] {}, bounced);
}

expected<reply_box> ask_entity(caf::actor_system& sys, const caf::actor& dest, duration timeout,
                               command_ptr cmd, const std::function<void()>& sent,
                               bool& bounced) {
  bounced = false;
  if (!dest) {
    sent();
    return error{errc::actor_down, "ask to an invalid (null) entity handle"};
  }
  troupe::detail::thread_caf_state_guard release_after;
  caf::scoped_actor self{sys};
  expected<reply_box> out{error{errc::timeout,
                                "the entity did not reply within " + format_duration(timeout)}};
  auto req = self->request(dest, troupe::detail::to_caf_duration(timeout),
                           command_envelope{std::move(cmd)});
  sent();
  req.receive([&](reply_envelope& r) { out = std::move(r.value); },
                         [&](caf::error& e) {
                           bounced = e == caf::sec::request_receiver_down;
                           if (e != caf::sec::request_timeout)
                             out = from_caf_error(e);
                         });
  return out;
}

void ask_entity(caf::event_based_actor* self, const caf::actor& dest, duration timeout,
                command_ptr cmd, std::function<void(expected<reply_box>)> done) {
  ask_entity(self, dest, clock_type::now() + timeout, timeout, std::move(cmd), std::move(done),
             nullptr);
}

void ask_entity(caf::event_based_actor* self, const caf::actor& dest, time_point deadline,
                duration timeout, command_ptr cmd, ask_continuation done, bounce_fn bounced) {
  if (!dest) {
    done(error{errc::actor_down, "ask to an invalid (null) entity handle"});
    return;
  }
  auto ticket = begin_ask(self, deadline, timeout, std::move(done));
  // Kept for a bounce only: the command is shared, not copied.
  auto resend = bounced ? cmd : nullptr;
  // No CAF timeout on the request itself: the table enforces the deadline.
  self->request(dest, caf::infinite, command_envelope{std::move(cmd)})
    .then([ticket](reply_envelope& r) { finish_ask(ticket, std::move(r.value)); },
          [ticket, resend, bounced = std::move(bounced)](caf::error& e) {
            if (bounced && e == caf::sec::request_receiver_down) {
              if (auto k = take_ask(ticket))
                bounced(resend, std::move(k));
              return;
            }
            finish_ask(ticket, from_caf_error(e));
          });
}

command_ptr command_of(const caf::mailbox_element& e) {
  auto& m = e.content();
  if (m.size() != 1 || !m.match_element<command_envelope>(0))
    return nullptr;
  return m.get_as<command_envelope>(0).cmd;
}

void answer_command(caf::response_promise& rp, expected<reply_box> r) {
  deliver(rp, std::move(r));  // as the entity itself answers (entity_state.hpp)
}

void tell_entity(const caf::actor& dest, command_ptr cmd) {
  if (dest)
    caf::anon_send(dest, command_envelope{std::move(cmd)});
}

expected<std::shared_ptr<void>> query_state(caf::actor_system& sys, const caf::actor& dest,
                                            duration timeout) {
  return ask_entity(sys, dest, timeout, nullptr);
}

} // namespace troupe::persistence::detail
