#include "troupe/actors/forwarding.hpp"

#include <caf/make_message.hpp>

namespace troupe {

caf::mailbox_element_ptr take_current_message(caf::scheduled_actor* self, caf::message_view& x) {
  auto* e = self->current_mailbox_element();
  auto mid = e->mid;
  e->mid.mark_as_answered();
  return caf::make_mailbox_element(std::move(e->sender), mid, std::move(e->stages),
                                   x.move_content_to_message());
}

void answer_held(caf::mailbox_element& e, const caf::error& reason) {
  if (e.mid.is_request() && !e.mid.is_answered() && e.sender)
    e.sender->enqueue(nullptr, e.mid.response_id(), caf::make_message(reason), nullptr);
}

} // namespace troupe
