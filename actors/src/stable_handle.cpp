#include "stable_handle.hpp"

#include "troupe/actors/caf_error.hpp"
#include "troupe/actors/forwarding.hpp"
#include "troupe/actors/node_context.hpp"

#include <caf/make_actor.hpp>

#include <fmt/core.h>

namespace troupe::detail {

stable_handle::stable_handle(caf::actor_config& cfg, std::string child, std::size_t capacity,
                             counter_metric& dropped)
  : caf::monitorable_actor(cfg), child_(std::move(child)), capacity_(capacity), dropped_(dropped) {
}

stable_handle::~stable_handle() {
  auto reason = close_reason_ ? close_reason_
                              : to_caf_error(error{errc::stopped,
                                                   "the child's supervisor stopped"});
  for (auto& e : held_)
    answer_held(*e, reason);
}

void stable_handle::enqueue(caf::mailbox_element_ptr what, caf::execution_unit* eu) {
  caf::error refused;
  {
    // The child's enqueue runs under the lock: copying the target out would cost
    // two atomic operations on the child's reference count, a cache line its
    // worker touches too. Only senders to this handle ever wait on the lock.
    std::lock_guard<spin_lock> guard{mtx_};
    if (target_ && failing_ && failing_->load(std::memory_order_acquire))
      target_ = nullptr;  // dying: hold what follows for the next incarnation
    if (target_) {
      target_->enqueue(std::move(what), eu);
      return;
    }
    if (!closed_ && held_.size() < capacity_) {
      held_.push_back(std::move(what));
      return;
    }
    if (closed_) {
      refused = close_reason_;
    } else {
      dropped_.inc();
      refused = to_caf_error(error{errc::overloaded,
                                   fmt::format("child '{}' is restarting and its handle's "
                                               "buffer of {} messages is full",
                                               child_, capacity_)});
    }
  }
  answer_held(*what, refused);
}

void stable_handle::route_to(const caf::actor& target, failing_flag failing) {
  std::lock_guard<spin_lock> guard{mtx_};
  target_ = caf::actor_cast<caf::strong_actor_ptr>(target);
  failing_ = std::move(failing);
  // Under the lock: nothing sent from now on overtakes what was held.
  while (!held_.empty()) {
    target_->enqueue(std::move(held_.front()), nullptr);
    held_.pop_front();
  }
}

void stable_handle::hold() {
  std::lock_guard<spin_lock> guard{mtx_};
  target_ = nullptr;
}

void stable_handle::close(const caf::error& reason) {
  std::deque<caf::mailbox_element_ptr> doomed;
  {
    std::lock_guard<spin_lock> guard{mtx_};
    target_ = nullptr;
    if (!closed_) {  // the first reason stays
      closed_ = true;
      close_reason_ = reason;
    }
    doomed.swap(held_);
  }
  for (auto& e : doomed)
    answer_held(*e, reason);
}

void stable_handle::end(const caf::error& reason) {
  close(reason);
  cleanup(caf::error{reason}, nullptr);
}

caf::actor make_stable_handle(caf::actor_system& sys, std::string child, std::size_t capacity) {
  auto& dropped = node_of(sys).metrics().counter(
    "troupe_supervisor_handle_dropped_total", {{"child", child}},
    "Messages a stable child handle could not buffer while the child restarted.");
  caf::actor_config cfg;
  auto ptr = caf::make_actor<stable_handle, caf::strong_actor_ptr>(
    sys.next_actor_id(), sys.node(), &sys, cfg, std::move(child), capacity, dropped);
  return caf::actor_cast<caf::actor>(std::move(ptr));
}

stable_handle& stable_handle_of(const caf::actor& h) {
  return *static_cast<stable_handle*>(caf::actor_cast<caf::abstract_actor*>(h));
}

} // namespace troupe::detail
