#include "scheduler_clock.hpp"

#include <caf/actor_system.hpp>

#include <pthread.h>

namespace troupe::detail {

scheduler_clock::~scheduler_clock() {
  stop();
}

void scheduler_clock::start(caf::actor_system& sys) {
  thread_ = std::thread{[this, &sys] { run(sys); }};
}

void scheduler_clock::stop() {
  if (!thread_.joinable())
    return;
  {
    guard_type guard{mtx_};
    done_ = true;
  }
  cv_.notify_one();
  thread_.join();
  cancel_all();
}

// Every timer goes through here; the lock is held.
void scheduler_clock::added(time_point t) {
  if (t + slack < wake_at_) {
    wake_at_ = t + slack;
    cv_.notify_one();
  }
}

void scheduler_clock::set_ordinary_timeout(time_point t, caf::abstract_actor* self,
                                           caf::atom_value type, uint64_t id) {
  guard_type guard{mtx_};
  bookkeeping::set_ordinary_timeout(t, self, type, id);
  added(t);
}

void scheduler_clock::set_request_timeout(time_point t, caf::abstract_actor* self,
                                          caf::message_id id) {
  guard_type guard{mtx_};
  bookkeeping::set_request_timeout(t, self, id);
  added(t);
}

void scheduler_clock::set_multi_timeout(time_point t, caf::abstract_actor* self,
                                        caf::atom_value type, uint64_t id) {
  guard_type guard{mtx_};
  bookkeeping::set_multi_timeout(t, self, type, id);
  added(t);
}

// The cancellations below run on the actor whose timers they drop, so the
// references they release are never the last ones.
void scheduler_clock::cancel_ordinary_timeout(caf::abstract_actor* self, caf::atom_value type) {
  guard_type guard{mtx_};
  bookkeeping::cancel_ordinary_timeout(self, type);
}

void scheduler_clock::cancel_request_timeout(caf::abstract_actor* self, caf::message_id id) {
  guard_type guard{mtx_};
  bookkeeping::cancel_request_timeout(self, id);
}

void scheduler_clock::cancel_timeouts(caf::abstract_actor* self) {
  guard_type guard{mtx_};
  bookkeeping::cancel_timeouts(self);
}

void scheduler_clock::schedule_message(time_point t, caf::strong_actor_ptr receiver,
                                       caf::mailbox_element_ptr content) {
  guard_type guard{mtx_};
  bookkeeping::schedule_message(t, std::move(receiver), std::move(content));
  added(t);
}

void scheduler_clock::schedule_message(time_point t, caf::group target,
                                       caf::strong_actor_ptr sender, caf::message content) {
  guard_type guard{mtx_};
  bookkeeping::schedule_message(t, std::move(target), std::move(sender), std::move(content));
  added(t);
}

void scheduler_clock::cancel_all() {
  // Dropped outside the lock: releasing the last reference to an actor destroys it,
  // and its cleanup cancels its timeouts here.
  schedule_map doomed;
  {
    guard_type guard{mtx_};
    actor_lookup_.clear();
    doomed.swap(schedule_);
  }
}

void scheduler_clock::run(caf::actor_system& sys) {
  pthread_setname_np(pthread_self(), "troupe.clock");
  sys.thread_started();
  guard_type guard{mtx_};
  while (!done_) {
    if (schedule_.empty()) {
      wake_at_ = time_point::max();
      cv_.wait(guard);
      continue;
    }
    auto t = now();
    auto next = schedule_.begin()->first;
    if (next > t) {
      wake_at_ = next + slack;
      cv_.wait_until(guard, wake_at_);
      continue;
    }
    for (auto i = schedule_.begin(); i != schedule_.end() && i->first <= t;) {
      if (i->second->backlink != actor_lookup_.end())
        actor_lookup_.erase(i->second->backlink);
      due_.push_back(std::move(i->second));
      i = schedule_.erase(i);
    }
    // While shipping, new timers need not wake this thread: it looks again after.
    wake_at_ = time_point::min();
    guard.unlock();
    for (auto& e : due_)
      ship(*e);
    due_.clear();
    guard.lock();
  }
  guard.unlock();
  sys.thread_terminates();
}

} // namespace troupe::detail
