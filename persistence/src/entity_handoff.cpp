// Owned entities (owned_entity.hpp): the owner link, stop and hand back, and the
// idle timeout. Part of the entity actor (entity_state.hpp).
#include "troupe/persistence/owned_entity.hpp"

#include "entity_state.hpp"

#include "troupe/actors/node.hpp"
#include "troupe/actors/node_context.hpp"

#include <caf/all.hpp>

#include <mutex>
#include <unordered_map>

namespace troupe::persistence::detail {

namespace {

void arm_idle(entity_actor* self, std::chrono::steady_clock::duration after) {
  auto& st = self->state;
  if (st.idle_armed)
    return;
  st.idle_armed = true;
  self->delayed_send(self, std::max(after, std::chrono::steady_clock::duration{std::chrono::milliseconds{1}}),
                     idle_check{});
}

/// Stops an entity nobody is told about (no owner): the idle timeout's
/// passivation. Nothing is held (it is idle).
void stop_idle(entity_actor* self) {
  auto& st = self->state;
  st.metrics->passivations.inc();
  st.log->debug(st.label(), "stopping: idle for {}", format_duration(st.bp->options.idle_timeout));
  st.ph = phase::stopped;
  st.set_stop_reason(error{errc::stopped, fmt::format("{} stopped after being idle for {}", *st.pid,
                                                    format_duration(st.bp->options.idle_timeout))});
  st.fail_stash(st.stop_reason());
  self->quit(caf::exit_reason::normal);
}

constexpr std::string_view owner_stopped_message = "the owner of this entity stopped";

/// The live owned entities of one owner, so that the owner's end stops them all
/// and an entity's end costs O(1). (Each entity monitoring its owner would do the
/// same, but an actor's attachables are a list: with n entities, every entity's
/// end scans the owner's list, and stopping a shard of n entities costs O(n²).)
struct owned_entities {
  std::mutex mtx;
  std::unordered_map<caf::actor_id, caf::actor_addr> live;
};

std::mutex registry_mtx;

/// Owners with live owned entities, by control block (an owner is removed from
/// it when it ends, before its memory can be reused).
std::unordered_map<caf::actor_control_block*, std::shared_ptr<owned_entities>>& owners() {
  static std::unordered_map<caf::actor_control_block*, std::shared_ptr<owned_entities>> m;
  return m;
}

/// The owned entities of `owner` (called from inside it); the first call attaches
/// what stops them when the owner ends.
std::shared_ptr<owned_entities> owned_by(caf::event_based_actor* owner) {
  auto* key = caf::actor_cast<caf::actor_control_block*>(owner);
  std::lock_guard<std::mutex> guard{registry_mtx};
  auto& set = owners()[key];
  if (set)
    return set;
  set = std::make_shared<owned_entities>();
  owner->attach_functor([key, set] {
    {
      std::lock_guard<std::mutex> g{registry_mtx};
      owners().erase(key);
    }
    std::unordered_map<caf::actor_id, caf::actor_addr> live;
    {
      std::lock_guard<std::mutex> g{set->mtx};
      live.swap(set->live);
    }
    auto reason = to_caf_error(error{errc::stopped, std::string{owner_stopped_message}});
    for (auto& [id, addr] : live)
      if (auto a = caf::actor_cast<caf::actor>(addr))
        a->enqueue(nullptr, caf::make_message_id(),
                   caf::make_message(caf::exit_msg{a.address(), reason}), nullptr);
  });
  return set;
}

/// The stashed command as the mailbox element it arrived in: its sender, request
/// id and forwarding stages, so whoever handles it answers the original sender.
caf::mailbox_element_ptr to_element(stashed& s) {
  auto e = caf::make_mailbox_element(s.rp.source(), s.rp.id(), s.rp.stages(),
                                     caf::make_message(command_envelope{std::move(s.cmd)}));
  s.rp = caf::response_promise{};  // the element carries the request now
  return e;
}

} // namespace

void watch_owner(entity_actor* self) {
  if (!self->state.bp->owner)
    return;
  // The owner's end reaches the entity as an exit with owner_stopped_reason()
  // (see owned_by below); any other exit ends it as usual.
  self->set_exit_handler([self](caf::exit_msg& em) {
    if (!em.reason)
      return;
    auto e = from_caf_error(em.reason);
    auto& st = self->state;
    if (e.code() == errc::stopped && e.message() == owner_stopped_message) {
      st.ph = phase::stopped;
      st.set_stop_reason(error{errc::stopped, fmt::format("{} stopped: its owner stopped", *st.pid)});
      self->quit(caf::exit_reason::user_shutdown);
      return;
    }
    self->quit(std::move(em.reason));
  });
}

void on_hand_back(entity_actor* self) {
  auto& st = self->state;
  auto rp = self->make_response_promise();
  if (st.ph == phase::stopped) {
    deliver(rp, st.stop_reason());
    return;
  }
  if (st.handing_back) {
    deliver(rp, error{errc::invalid_argument,
                      fmt::format("{} is already stopping to hand back its commands", *st.pid)});
    return;
  }
  st.handing_back = true;
  st.hand_back_rp = std::make_unique<caf::response_promise>(std::move(rp));
  // Only a persist in flight is waited for (its reply goes out once durable); a
  // snapshot save in flight completes in the journal without the entity.
  if (st.ph != phase::persisting)
    finish_hand_back(self);
}

void finish_hand_back(entity_actor* self) {
  auto& st = self->state;
  auto held = std::make_shared<std::vector<caf::mailbox_element_ptr>>();
  held->reserve(st.stash.size());
  while (!st.stash.empty()) {
    auto s = st.pop_stash();
    held->push_back(to_element(s));
  }
  st.metrics->passivations.inc();
  st.log->debug(st.label(), "stopped, handing back {} command(s)", held->size());
  st.ph = phase::stopped;
  st.set_stop_reason(error{errc::stopped, fmt::format("{} stopped and handed back its commands",
                                                    *st.pid)});
  if (st.hand_back_rp && st.hand_back_rp->pending())
    st.hand_back_rp->deliver(handed_back{*st.pid, std::move(held)});
  self->quit(caf::exit_reason::normal);
}

void note_activity(entity_actor* self) {
  auto& st = self->state;
  auto timeout = st.bp->options.idle_timeout;
  if (timeout <= duration::zero())
    return;
  st.last_active = std::chrono::steady_clock::now();
  st.idle_notified = false;
  arm_idle(self, timeout);
}

void on_idle_check(entity_actor* self) {
  auto& st = self->state;
  st.idle_armed = false;
  if (st.ph == phase::stopped || st.handing_back || st.idle_notified)
    return;
  auto timeout = std::chrono::duration_cast<std::chrono::steady_clock::duration>(
    st.bp->options.idle_timeout);
  auto idle_for = std::chrono::steady_clock::now() - st.last_active;
  if (st.ph != phase::running || !st.stash.empty()) {
    arm_idle(self, timeout);  // busy: not idle
    return;
  }
  if (idle_for < timeout) {
    arm_idle(self, timeout - idle_for);
    return;
  }
  auto to = caf::actor_cast<caf::actor>(st.bp->idle_to);
  if (!to) {
    stop_idle(self);
    return;
  }
  st.idle_notified = true;  // once, until a command arrives
  self->send(to, entity_idle{*st.pid, me(self)});
}

expected<caf::actor> spawn_owned_entity(caf::event_based_actor* owner, blueprint_ptr bp) {
  auto& ctx = node_of(owner);
  if (auto ok = check_spawnable(ctx, bp); !ok)
    return std::move(ok).error();
  if (ctx.stopping())
    return error{errc::shutting_down,
                 fmt::format("{} cannot start: the node is stopping", bp->persistence_id)};
  auto a = spawn_incarnation(owner->system(), bp);
  owner->monitor(a);
  auto set = owned_by(owner);
  {
    std::lock_guard<std::mutex> guard{set->mtx};
    set->live.emplace(a.id(), a.address());
  }
  a->attach_functor([set, id = a.id()] {
    std::lock_guard<std::mutex> guard{set->mtx};
    set->live.erase(id);
  });
  return a;
}

} // namespace troupe::persistence::detail
