// The actor clock of troupe's scheduler: CAF's timeouts and delayed messages without a
// thread wake-up per request.
//
// CAF 0.17.6's clock thread takes every timer through a queue and is woken for each
// one: every `request(..., timeout)` costs a futex wake-up and a context switch of
// the clock thread (~7 µs of a 28 µs cross-process round trip here), although a
// request timeout is rarely the next timer to fire (CAF never cancels request
// timeouts; they fire later into actors that ignore them). This clock keeps CAF's
// own bookkeeping (simple_actor_clock) under a mutex instead: a new timer is inserted
// by the thread that sets it, and the clock thread is woken only when the new timer
// is due before the one it sleeps for. Timers fire in due order, at most `slack`
// late, so that a steady stream of timers wakes the thread about once per `slack`
// rather than once per timer.
//
// Thread-safety: every member may be called from any thread. Events are shipped
// (delivered to their actors) by the clock thread, outside the lock.
#pragma once

#include <caf/detail/thread_safe_actor_clock.hpp>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

namespace caf {
class actor_system;
}

namespace troupe::detail {

// Derives from CAF's thread-safe clock only because the coordinator's clock() must
// return one; none of its queue machinery is used.
class scheduler_clock final : public caf::detail::thread_safe_actor_clock {
public:
  using bookkeeping = caf::detail::simple_actor_clock;

  /// How late a timer may fire so that it shares a wake-up with earlier ones.
  static constexpr std::chrono::microseconds slack{500};

  scheduler_clock() = default;
  ~scheduler_clock() override;

  /// Starts the clock thread (once, before any actor runs).
  void start(caf::actor_system& sys);
  /// Stops and joins the clock thread; pending timers are dropped.
  void stop();

  void set_ordinary_timeout(time_point t, caf::abstract_actor* self, caf::atom_value type,
                            uint64_t id) override;
  void set_request_timeout(time_point t, caf::abstract_actor* self, caf::message_id id) override;
  void set_multi_timeout(time_point t, caf::abstract_actor* self, caf::atom_value type,
                         uint64_t id) override;
  void cancel_ordinary_timeout(caf::abstract_actor* self, caf::atom_value type) override;
  void cancel_request_timeout(caf::abstract_actor* self, caf::message_id id) override;
  void cancel_timeouts(caf::abstract_actor* self) override;
  void schedule_message(time_point t, caf::strong_actor_ptr receiver,
                        caf::mailbox_element_ptr content) override;
  void schedule_message(time_point t, caf::group target, caf::strong_actor_ptr sender,
                        caf::message content) override;
  void cancel_all() override;

private:
  using guard_type = std::unique_lock<std::mutex>;

  /// Wakes the clock thread if `t` is due before the time it sleeps until.
  void added(time_point t);
  void run(caf::actor_system& sys);

  std::mutex mtx_;
  std::condition_variable cv_;
  time_point wake_at_ = time_point::max();  // guarded by mtx_
  bool done_ = false;                        // guarded by mtx_
  std::vector<unique_delayed_event_ptr> due_;  // the clock thread's
  std::thread thread_;
};

} // namespace troupe::detail
