// Cluster singletons: one instance of an actor in the whole cluster, on the oldest
// up member (optionally among those with a role), moved when that member leaves.
//
//   // on every node (before or after it joined):
//   troupe::membership::singleton_spec spec{"coordinator", "", [](caf::actor_system& sys) {
//     return troupe::spawn_actor(sys, "coordinator", coordinator_behavior);
//   }};
//   auto manager = troupe::membership::start_singleton(*node, spec);
//   // anywhere, to talk to it wherever it runs:
//   auto proxy = troupe::membership::singleton_proxy(*node, "coordinator");
//   troupe::ask<int>(self, *proxy, 2s, get_atom_v).then(...);
//
// The manager (one per node and singleton) runs singleton_core
// (singleton_core.hpp): the instance starts only after every older member handed
// over (its instance stopped) or was removed. The instance is registered with the
// transport as "troupe.singleton.<name>". The proxy finds the node that should run
// it (the oldest up member), asks that node's manager for the instance, and
// forwards (sender and request id kept, so asks work through it). While the
// singleton moves or is not known yet, the proxy buffers up to `buffer_size`
// messages; beyond that a request is answered with `overloaded` naming the
// singleton, and a one-way message is dropped and counted
// (troupe_singleton_proxy_dropped_total{singleton}). Messages to a remote
// instance must be transport message types (remote::add_message_type).
//
// Thread-safety: the functions may be called from any non-actor thread.
#pragma once

#include "troupe/actors/expected.hpp"
#include "troupe/membership/timestamp.hpp"

#include <caf/actor.hpp>
#include <caf/fwd.hpp>

#include <cstddef>
#include <functional>
#include <string>

namespace troupe {
class node;
} // namespace troupe

namespace troupe::membership {

struct singleton_spec {
  std::string name;
  /// Run only on members with this role (empty: any member).
  std::string role;
  /// Starts the instance on this node. It must stop when it gets an exit message
  /// (hand-over waits for it).
  std::function<caf::actor(caf::actor_system&)> start;
  duration hand_over_retry_interval = std::chrono::seconds{1};
};

/// Starts this node's manager of singleton `spec.name` (the cluster must run).
/// The node's shutdown stops it (handing over first, in the cluster-leave phase).
expected<caf::actor> start_singleton(node& n, singleton_spec spec);

struct singleton_proxy_options {
  std::string role;  ///< the singleton's role, as in its spec
  std::size_t buffer_size = 1000;
  duration identify_timeout = std::chrono::seconds{2};
};

/// A local actor that forwards to singleton `name` wherever it runs.
expected<caf::actor> singleton_proxy(node& n, std::string name,
                                     singleton_proxy_options options = {});

} // namespace troupe::membership
