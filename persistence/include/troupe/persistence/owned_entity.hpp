// Entities owned by an actor: what a shard (sharding/) needs of the entity runtime.
//
//   // inside the shard actor, once advance_fence(shard key, epoch) succeeded:
//   auto e = troupe::persistence::spawn_owned_entity<account>(
//     self, "acct-42", {.fence = write_fence{"account/shard-7", epoch}});
//   ...
//   // passivation or hand-off: finish the persist in flight, stop, give back
//   // what is held
//   troupe::ask<handed_back>(self, e->actor(), 10s, stop_and_hand_back{})
//     .then([=](expected<handed_back> r) { forward r->commands, in order });
//
// - Owner: the actor that spawned the entity. It monitors the entity (a down_msg
//   with the exit reason when it ends: `fenced` when a newer owner took over) and
//   the entity stops when the owner stops.
// - Fence: every persist carries it; a persist the journal refuses as `fenced`
//   ends the entity: the command in flight and every stashed one get the `fenced`
//   error naming the entity, the fence key and both epochs, and the owner sees the
//   same error as the exit reason. Nothing of the refused persist is stored.
// - stop_and_hand_back: the entity lets the persist in flight finish (its reply
//   goes out once durable; a persist that failed is answered with its error),
//   stops, and answers with every command it still holds (stashed, or arrived
//   since), in arrival order, as CAF mailbox elements that keep each sender and
//   request id: enqueue them at the entity's next home (troupe/actors/
//   forwarding.hpp) and the replies go to the original requesters. None of them is
//   answered by the entity and none is lost. The exit reason is `normal`.
// - Idle timeout (entity_options::idle_timeout): an entity with no command for
//   that long sends entity_idle to `idle_to` (default: the owner), once, until a
//   command arrives again; the owner passivates it with stop_and_hand_back. An
//   entity with nobody to tell (spawned by spawn_entity) stops itself.
//
// Thread-safety: spawn_owned_entity is called from inside the owning actor.
#pragma once

#include "troupe/persistence/entity.hpp"

#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/mailbox_element.hpp>

#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace troupe::persistence {

/// How an owned entity runs.
struct entity_placement {
  /// Every persist carries it (journal.hpp, write_fence).
  std::optional<write_fence> fence;
  /// Told entity_idle after entity_options::idle_timeout; null: the owner.
  caf::actor idle_to;
};

/// Sent by an entity idle for entity_options::idle_timeout.
struct entity_idle {
  std::string persistence_id;
  caf::actor entity;
};

/// Request to an entity: finish the persist in flight, stop, hand back what is
/// held. Reply: handed_back (or the error that stopped it meanwhile).
struct stop_and_hand_back {};

struct handed_back {
  std::string persistence_id;
  /// The commands the entity held, in arrival order, each with its sender and
  /// request id. Shared (a CAF message must be copyable); take them once.
  std::shared_ptr<std::vector<caf::mailbox_element_ptr>> commands;
};

namespace detail {
// entity_handoff.cpp
expected<caf::actor> spawn_owned_entity(caf::event_based_actor* owner, blueprint_ptr bp);
} // namespace detail

/// Spawns an entity owned by `owner` (see above). Fails like spawn_entity (no
/// journal, an unregistered event, command or reply type, an empty id).
template <class Entity>
expected<entity_ref<Entity>>
spawn_owned_entity(caf::event_based_actor* owner, std::string entity_id,
                   entity_placement placement = {},
                   entity_options opts = detail::default_options<Entity>()) {
  auto bp = detail::make_blueprint<Entity>(std::move(entity_id), opts);
  bp->fence = std::move(placement.fence);
  bp->owner = owner->address();
  bp->idle_to = placement.idle_to ? placement.idle_to.address() : owner->address();
  auto a = detail::spawn_owned_entity(owner, std::move(bp));
  if (!a)
    return std::move(a).error();
  return entity_ref<Entity>{std::move(*a)};
}

} // namespace troupe::persistence

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::persistence::entity_idle)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::persistence::stop_and_hand_back)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::persistence::handed_back)
