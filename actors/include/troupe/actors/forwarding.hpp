// Forwarding a message later, as if the sender had sent it to the final receiver:
// the building blocks of actors that buffer and route (a supervisor's stable
// handle, a cluster singleton's proxy, a shard region).
//
//   self->set_default_handler([=](caf::scheduled_actor*, caf::message_view& x)
//                                 -> caf::result<caf::message> {
//     buffer.push_back(troupe::take_current_message(self, x));   // hold it
//     return caf::delegated<caf::message>{};
//   });
//   ...
//   target->enqueue(std::move(buffer.front()), self->context());  // deliver it
//   troupe::answer_held(*element, reason);                         // or refuse it
//
// Thread-safety: call from inside the actor that holds the messages.
#pragma once

#include <caf/error.hpp>
#include <caf/mailbox_element.hpp>
#include <caf/message_view.hpp>
#include <caf/scheduled_actor.hpp>

namespace troupe {

/// Takes the message being processed out of the actor's current mailbox element,
/// keeping its sender, request id and forwarding stages, so that whoever finally
/// receives it answers the original sender.
caf::mailbox_element_ptr take_current_message(caf::scheduled_actor* self, caf::message_view& x);

/// Answers a held request with `reason` (a one-way message is just dropped). CAF's
/// own request bouncer always says request_receiver_down, whatever the reason.
void answer_held(caf::mailbox_element& e, const caf::error& reason);

} // namespace troupe
