#include "troupe/actors/detail/after_queued_work.hpp"

#include "scheduler.hpp"

#include <caf/actor_addr.hpp>
#include <caf/actor_cast.hpp>
#include <caf/message_id.hpp>
#include <caf/ref_counted.hpp>
#include <caf/resumable.hpp>
#include <caf/scheduled_actor.hpp>

#include <utility>

namespace troupe::detail {

namespace {

/// The queued job: delivers its message on the worker that runs it, so the
/// receiver is queued at that worker's front and runs next.
class deferred_message final : public caf::ref_counted, public caf::resumable {
public:
  deferred_message(caf::actor_addr to, caf::message msg)
      : to_(std::move(to)), msg_(std::move(msg)) {
  }

  subtype_t subtype() const override {
    return resumable::function_object;
  }

  resume_result resume(caf::execution_unit* eu, size_t) override {
    if (auto to = caf::actor_cast<caf::strong_actor_ptr>(to_))
      to->enqueue(nullptr, caf::make_message_id(), std::move(msg_), eu);
    return resumable::done;
  }

  void intrusive_ptr_add_ref_impl() override {
    ref();
  }

  void intrusive_ptr_release_impl() override {
    deref();
  }

private:
  caf::actor_addr to_;  ///< weak: a pending job keeps no actor alive
  caf::message msg_;
};

} // namespace

void send_after_queued_work(caf::scheduled_actor* self, caf::message msg) {
  // Owned by the queue from here: the worker releases it once it ran (or the
  // scheduler at shutdown, with what else it still held).
  auto* job = new deferred_message(self->address(), std::move(msg));
  using worker = caf::scheduler::worker<wake_policy>;
  if (auto* w = dynamic_cast<worker*>(self->context()))
    wake_policy::append_own(w, job);
  else
    self->home_system().scheduler().enqueue(job);
}

} // namespace troupe::detail
