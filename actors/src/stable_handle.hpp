// A supervised child's stable handle: the CAF handle clients keep across restarts.
//
// It is an actor without a mailbox (like the transport's remote proxies): a message
// sent to it is handed, on the sender's thread, straight to the child's current
// incarnation, keeping sender, request id and forwarding stages, so a message through
// the handle costs what a message to the child costs, plus one uncontended
// spin_lock (a single locked instruction) and a read of the child's failing flag
// (which the supervisor keeps alone on its cache line: see supervisor.cpp).
// While the child restarts the handle holds messages (up to `capacity`; beyond that
// requests are answered `overloaded` and one-way messages dropped and counted), and
// hands them to the next incarnation in order before anything sent later. Once the
// child is gone for good the handle answers requests with the reason (answer_held:
// forwarding stages are not supported through stable handles, the error goes to the
// sender; one-way messages are dropped).
//
// Thread-safety: enqueue() may be called from any thread; route_to(), hold() and
// close() are called by the supervisor. All take the handle's lock, so a message
// is either forwarded before a hold or held after it, never lost in between.
#pragma once

#include "spin_lock.hpp"
#include "troupe/actors/metrics.hpp"

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <caf/mailbox_element.hpp>
#include <caf/monitorable_actor.hpp>

#include <atomic>
#include <deque>
#include <memory>
#include <string>

namespace troupe::detail {

class stable_handle final : public caf::monitorable_actor {
public:
  /// Set (by the child's exception handler) when the child's handler threw: the
  /// incarnation is dying, and what is sent from then on waits for the next one.
  using failing_flag = std::shared_ptr<std::atomic<bool>>;

  stable_handle(caf::actor_config& cfg, std::string child, std::size_t capacity,
                counter_metric& dropped);

  /// Answers the requests it still holds (stopped).
  ~stable_handle() override;

  void enqueue(caf::mailbox_element_ptr what, caf::execution_unit* eu) override;

  const char* name() const override { return "troupe.stable-handle"; }

  /// Forwards to `target` from now on, after the messages held so far.
  void route_to(const caf::actor& target, failing_flag failing);

  /// Holds messages until the next route_to (the child is restarting).
  void hold();

  /// The child is gone for good: held and future requests get `reason` (the
  /// first reason given, if closed twice).
  void close(const caf::error& reason);

  /// The supervisor's incarnation ended: closes, and tells monitors and links that
  /// this handle is gone.
  void end(const caf::error& reason);

private:
  const std::string child_;
  const std::size_t capacity_;
  counter_metric& dropped_;
  spin_lock mtx_;
  caf::strong_actor_ptr target_;  // guarded by mtx_
  failing_flag failing_;          // guarded by mtx_
  bool closed_ = false;           // guarded by mtx_
  caf::error close_reason_;       // guarded by mtx_
  std::deque<caf::mailbox_element_ptr> held_;  // guarded by mtx_
};

/// A new stable handle for `child` of a supervisor running in `sys` (a troupe node).
caf::actor make_stable_handle(caf::actor_system& sys, std::string child, std::size_t capacity);

/// The handle behind `h`, which make_stable_handle created.
stable_handle& stable_handle_of(const caf::actor& h);

} // namespace troupe::detail
