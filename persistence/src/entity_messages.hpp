// Internal: the messages between askers and entities (local only, never
// serialized; private types that no user message can match).
#pragma once

#include "troupe/persistence/detail/entity_model.hpp"

#include <caf/allowed_unsafe_message_type.hpp>

namespace troupe::persistence::detail {

/// A command for an entity; a null command is a state query (testkit).
struct command_envelope {
  command_ptr cmd;
};

/// An entity's reply (errors travel as caf::error).
struct reply_envelope {
  reply_box value;
};

} // namespace troupe::persistence::detail

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::persistence::detail::command_envelope)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::persistence::detail::reply_envelope)
