// troupe::membership::cluster: this node's membership in a troupe cluster.
//
//   auto t = troupe::remote::transport::start(*node);          // the transport first
//   auto settings = troupe::membership::settings_from(node->config());
//   auto c = troupe::membership::cluster::start(*node, *settings);
//   c->wait_until_up(30s);                                     // joined and up
//   c->subscribe(self);                // cluster_event messages: the state, then changes
//   c->leave();                        // graceful: leaving -> exiting -> removed
//
// A shell around the deterministic membership_core (membership_core.hpp): one
// actor ("troupe.cluster") owns the core, feeds it the transport's packets (channel
// "troupe.membership"), its connection-lost signals and a timer, and carries out
// what the core decides: messages through the transport, events to subscribers,
// the transport's quarantine for removed incarnations, logs and metrics
// (troupe_cluster_*). docs/membership.md describes the protocol and the settings.
//
// Shutdown: start() adds the node's cluster-leave and cluster-exiting shutdown
// tasks, so node::shutdown() leaves the cluster (and waits until removed, within
// the phases' timeouts) before any actor stops.
//
// When this node is downed, removed or refused, the cluster is over for it: the
// on_terminated callbacks run once (troupe-node exits non-zero; an embedded
// application decides), and terminated() says why.
//
// Thread-safety: every member may be called from any thread. The blocking ones
// (wait_until_up, and leave/down, which wait for the actor's answer) must not be
// called from inside an actor.
#pragma once

#include "troupe/actors/expected.hpp"
#include "troupe/membership/cluster_event.hpp"
#include "troupe/membership/gossip.hpp"
#include "troupe/membership/membership_core.hpp"
#include "troupe/membership/settings.hpp"

#include <caf/actor.hpp>
#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/fwd.hpp>

#include <algorithm>
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

namespace troupe {
class node;
} // namespace troupe

namespace troupe::membership {

namespace detail {
struct cluster_shared;
} // namespace detail

/// One node's view of the cluster at one moment. `state` lives as long as the
/// view: keep the view while using what it points to. (`for (auto& m :
/// c.view().state->members)` reads freed memory: the temporary view, and with it
/// possibly the last reference to `state`, is gone before the loop body runs.)
struct cluster_view {
  node_identity self;
  membership_core::phase phase = membership_core::phase::idle;
  std::shared_ptr<const gossip> state;  ///< never null
  std::optional<node_identity> leader;
  bool converged = false;
  std::vector<std::pair<node_identity, double>> phi;  ///< monitored members

  const member* self_member() const { return state->find(self); }
  bool self_up() const;
  /// How many members are in status `s`.
  std::size_t count(member_status s) const {
    return static_cast<std::size_t>(std::count_if(state->members.begin(), state->members.end(),
                                                  [s](const member& m) { return m.status == s; }));
  }
};

class cluster {
public:
  /// Starts this node's membership (the transport must run). Joins through
  /// settings.seed_nodes; with none, call join() later.
  static expected<std::shared_ptr<cluster>> start(node& n, membership_settings settings);
  /// The cluster started for a node, or nullptr.
  static std::shared_ptr<cluster> of(node& n);
  static std::shared_ptr<cluster> of(caf::actor_system& sys);

  ~cluster();
  cluster(const cluster&) = delete;
  cluster& operator=(const cluster&) = delete;

  const node_identity& self() const noexcept;
  const membership_settings& settings() const noexcept;
  cluster_view view() const;

  /// Sends `subscriber` cluster_event messages: the current state as events first,
  /// then every change, in the order this node saw them.
  void subscribe(caf::actor subscriber);
  void unsubscribe(const caf::actor& subscriber);
  using subscription = std::uint64_t;
  /// The same as a callback, run on the cluster actor: keep it short.
  subscription subscribe(std::function<void(const cluster_event&)> fn);
  void unsubscribe(subscription id);
  /// Runs once when this node is downed, removed or refused (on the cluster actor).
  void on_terminated(std::function<void(const cluster_event&)> fn);
  /// Why this node's membership ended, once it has.
  std::optional<cluster_event> terminated() const;

  /// Joins through `seeds` (when started without seed nodes).
  expected<void> join(std::vector<node_address> seeds);
  /// Graceful leave of this node, or of the member at `node`.
  expected<void> leave();
  expected<void> leave(const node_address& node);
  /// Marks the member at `node` down (an operator's decision).
  expected<void> down(const node_address& node);

  /// Blocks until this node is up (ok), its membership ended (the reason), or
  /// `timeout` passes (timeout).
  expected<void> wait_until_up(duration timeout) const;
  /// Blocks until this node was removed or terminated, or `timeout` passes.
  bool wait_until_gone(duration timeout) const;

  /// The actor that runs the core.
  caf::actor actor() const;

  /// Stops the cluster actor (node shutdown does it); idempotent.
  void stop();

private:
  explicit cluster(std::shared_ptr<detail::cluster_shared> s) : shared_(std::move(s)) {}
  std::shared_ptr<detail::cluster_shared> shared_;
};

} // namespace troupe::membership

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::membership::cluster_event)
