// Internal: controls used by the testkit and the replay tool (not by entities).
// Blocking; call them from non-actor threads only.
#pragma once

#include "troupe/actors/config.hpp"
#include "troupe/actors/expected.hpp"

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>

#include <memory>

namespace troupe::persistence::detail {

/// A copy of the entity's state (a boxed Entity::state), taken after every command
/// sent before it was handled; null while no incarnation runs (a journal failure
/// stopped it and no command started it again yet).
expected<std::shared_ptr<void>> query_state(caf::actor_system& sys, const caf::actor& dest,
                                            duration timeout);

/// Asks the entity to stop (user_shutdown) and waits until it terminated.
expected<void> stop_and_wait(caf::actor_system& sys, const caf::actor& dest, duration timeout);

} // namespace troupe::persistence::detail
