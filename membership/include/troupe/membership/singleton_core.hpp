// troupe::membership::singleton_core: where one cluster singleton runs, as a
// deterministic state machine (one per singleton name and node).
//
// The singleton runs on the oldest up member (optionally among those with a
// role). When that changes, the instance moves, acknowledged: the new oldest asks
// every older member that is still a member to hand over; each answers once its
// instance (if any) has stopped, or is removed from the cluster. Only then does
// the new instance start. Asking every older member, not only the previous
// oldest, is what keeps two instances apart when several members leave at once
// (Akka's #27487). A node that handed its instance over never starts it again.
//
// Inputs: the membership state after every change (update), the other managers'
// messages (receive), the local instance having stopped (instance_stopped) and
// time (tick, for retries). Outputs: messages, and whether to start or stop the
// local instance. The shell (singleton.hpp) runs the instance as an actor.
//
// What this does not prevent: during a partition, the side that lost the old
// oldest starts a new instance once the old oldest is removed there, while the
// old one may run until its own side downs itself (about the same time, both
// decided after stable-after). Singletons that write shared state must fence
// (sharding's coordinator does, with epochs).
//
// Thread-safety: none.
#pragma once

#include "troupe/membership/gossip.hpp"
#include "troupe/membership/timestamp.hpp"

#include <optional>
#include <string>
#include <variant>
#include <vector>

namespace troupe::membership {

/// A newer oldest to an older member: stop your instance and tell me.
struct hand_over_to_me {};
/// An older member: my instance has stopped (or never ran).
struct hand_over_done {};
/// A leaving oldest to the new oldest: ask me now (speeds up a graceful move).
struct take_over_from_me {};

using singleton_message = std::variant<hand_over_to_me, hand_over_done, take_over_from_me>;

struct singleton_envelope {
  node_identity from;
  node_identity to;
  std::string singleton;  ///< the singleton's name
  singleton_message message;
};

struct singleton_effects {
  std::vector<singleton_envelope> messages;
  bool start = false;  ///< start the local instance now
  bool stop = false;   ///< stop the local instance; call instance_stopped when it has

  void clear() {
    messages.clear();
    start = stop = false;
  }
};

class singleton_core {
public:
  enum class phase {
    younger,          ///< another member should run it
    becoming_oldest,  ///< waiting for older members to hand over
    oldest,           ///< the instance runs here
    stopping,         ///< the instance was asked to stop
    handed_over,      ///< stopped for good on this incarnation
  };

  singleton_core(node_identity self, std::string name, std::string role,
                 duration retry_interval = std::chrono::seconds{1});

  void update(timestamp now, const gossip& state, singleton_effects& out);
  void receive(timestamp now, const singleton_envelope& m, singleton_effects& out);
  void instance_stopped(timestamp now, singleton_effects& out);
  void tick(timestamp now, singleton_effects& out);

  phase current_phase() const noexcept { return phase_; }
  bool running_here() const noexcept { return phase_ == phase::oldest; }
  /// Where the singleton should run in the latest state (the oldest up member).
  std::optional<node_identity> target() const { return target_; }
  const std::string& name() const noexcept { return name_; }

private:
  void send(const node_identity& to, singleton_message m, singleton_effects& out);
  void ask_older(timestamp now, singleton_effects& out);
  void start_if_clear(singleton_effects& out);
  void begin_stop(singleton_effects& out);

  node_identity self_;
  std::string name_;
  std::string role_;
  duration retry_interval_;
  phase phase_ = phase::younger;
  std::optional<node_identity> target_;
  std::vector<node_identity> waiting_for_;    ///< older members that must hand over
  std::vector<node_identity> report_done_to_; ///< asked us to hand over
  timestamp next_retry_{0};
  bool self_gone_ = false;  ///< this node is exiting, down or removed
};

std::string_view to_string(singleton_core::phase p) noexcept;

} // namespace troupe::membership
