// Owned entities (owned_entity.hpp): the owner link, stop and hand back, and the
// idle timeout. Part of the entity actor (entity_state.hpp).
#include "troupe/persistence/owned_entity.hpp"

#include "entity_state.hpp"

#include "troupe/actors/node.hpp"
#include "troupe/actors/node_context.hpp"

#include <caf/default_attachable.hpp>

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
  st.log->debug(st.label, "stopping: idle for {}", format_duration(st.bp->options.idle_timeout));
  st.ph = phase::stopped;
  st.stop_reason = error{errc::stopped, fmt::format("{} stopped after being idle for {}", *st.pid,
                                                    format_duration(st.bp->options.idle_timeout))};
  st.fail_stash(st.stop_reason);
  self->quit(caf::exit_reason::normal);
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
  auto& owner_addr = self->state.bp->owner;
  if (!owner_addr)
    return;
  auto owner = caf::actor_cast<caf::actor>(owner_addr);
  if (!owner) {
    self->quit(caf::exit_reason::user_shutdown);
    return;
  }
  self->monitor(owner);
  self->set_down_handler([self](caf::down_msg& dm) {
    auto& st = self->state;
    if (dm.source != st.bp->owner)
      return;
    st.ph = phase::stopped;
    st.stop_reason = error{errc::stopped, fmt::format("{} stopped: its owner stopped", *st.pid)};
    self->quit(caf::exit_reason::user_shutdown);
  });
  // The monitor lives in the owner: remove it when the entity ends first, or a
  // long-lived owner (a shard) would keep one per entity it ever had.
  self->attach_functor([owner_addr, me_addr = self->address()] {
    if (auto o = caf::actor_cast<caf::strong_actor_ptr>(owner_addr))
      o->get()->detach(caf::default_attachable::observe_token{me_addr,
                                                               caf::default_attachable::monitor});
  });
}

void on_hand_back(entity_actor* self) {
  auto& st = self->state;
  auto rp = self->make_response_promise();
  if (st.ph == phase::stopped) {
    deliver(rp, st.stop_reason);
    return;
  }
  if (st.handing_back) {
    deliver(rp, error{errc::invalid_argument,
                      fmt::format("{} is already stopping to hand back its commands", *st.pid)});
    return;
  }
  st.handing_back = true;
  st.hand_back_rp = std::move(rp);
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
  st.log->debug(st.label, "stopped, handing back {} command(s)", held->size());
  st.ph = phase::stopped;
  st.stop_reason = error{errc::stopped, fmt::format("{} stopped and handed back its commands",
                                                    *st.pid)};
  if (st.hand_back_rp.pending())
    st.hand_back_rp.deliver(handed_back{*st.pid, std::move(held)});
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
  return a;
}

} // namespace troupe::persistence::detail
