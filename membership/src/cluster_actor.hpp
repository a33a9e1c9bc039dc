// Internal: the actor that runs one node's membership core (cluster.hpp).
#pragma once

#include "cluster_shared.hpp"

#include <caf/atom.hpp>
#include <caf/stateful_actor.hpp>

#include <memory>

namespace troupe::membership::detail {

using join_atom = caf::atom_constant<caf::atom("m_join")>;
using leave_atom = caf::atom_constant<caf::atom("m_leave")>;
using down_atom = caf::atom_constant<caf::atom("m_down")>;
using subscribe_atom = caf::atom_constant<caf::atom("m_sub")>;
using unsubscribe_atom = caf::atom_constant<caf::atom("m_unsub")>;
using tick_atom = caf::atom_constant<caf::atom("m_tick")>;
using quarantine_atom = caf::atom_constant<caf::atom("m_quar")>;

using event_callback = std::function<void(const cluster_event&)>;

struct cluster_actor_state {
  std::shared_ptr<cluster_shared> shared;
  std::unique_ptr<membership_core> core;
  std::vector<caf::actor> subscribers;
  std::map<std::uint64_t, event_callback> callbacks;
  std::vector<remote::transport::subscription> transport_subscriptions;
  core_stats reported;  // what the metrics already counted
  effects fx;
};

/// The behaviour of "troupe.cluster": owns the core, talks through the transport.
caf::behavior cluster_actor(caf::stateful_actor<cluster_actor_state>* self,
                            std::shared_ptr<cluster_shared> shared);

} // namespace troupe::membership::detail

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::remote::node_address)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::remote::node_identity)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(std::vector<troupe::remote::node_address>)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::membership::detail::event_callback)
