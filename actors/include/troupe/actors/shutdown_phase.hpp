// The named phases of a node's coordinated shutdown, in the spirit of Akka's
// coordinated shutdown: each layer adds its step to the phase where it belongs,
// and node::shutdown() runs the phases in this order before it stops any actor.
//
//   before-service-unbind             stop accepting new outside work
//   service-stop                      finish or refuse what is in flight
//   cluster-sharding-shutdown-region  shard regions hand their shards off
//   cluster-leave                     the node leaves the cluster (until exiting)
//   cluster-exiting                   ... and waits until it was removed
//   before-actor-system-terminate     last words before the actors stop
//
// Then the guardian stops every actor (reverse start order) and the stop hooks
// run (the transport says goodbye, journals close). Each phase has its own
// timeout (shutdown.phase.<name>; docs/configuration.md), and all of it is
// bounded by shutdown.timeout. A task gets its phase's deadline and must return
// by then; sharding derives its hand-off timeouts from its phase's budget.
//
// Thread-safety: value types and pure functions.
#pragma once

#include <array>
#include <string_view>

namespace troupe {

enum class shutdown_phase {
  before_service_unbind,
  service_stop,
  cluster_sharding_shutdown_region,
  cluster_leave,
  cluster_exiting,
  before_actor_system_terminate,
};

inline constexpr std::array<shutdown_phase, 6> all_shutdown_phases{
  shutdown_phase::before_service_unbind,
  shutdown_phase::service_stop,
  shutdown_phase::cluster_sharding_shutdown_region,
  shutdown_phase::cluster_leave,
  shutdown_phase::cluster_exiting,
  shutdown_phase::before_actor_system_terminate,
};

/// "cluster-leave" etc.
std::string_view to_string(shutdown_phase p) noexcept;

} // namespace troupe
