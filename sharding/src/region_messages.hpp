// Internal: the local messages of a shard region (never serialized).
#pragma once

#include "direct_route.hpp"

#include "troupe/persistence/detail/entity_model.hpp"

#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/atom.hpp>

#include <chrono>
#include <string>

namespace troupe::sharding::detail {

using persistence::detail::command_ptr;
using persistence::detail::reply_box;

/// How long the region holds a command that has no deadline of its own (a tell,
/// or a command an entity handed back that a ref had sent it directly; an ask's
/// asker keeps its own deadline besides).
constexpr auto held_command_deadline = std::chrono::seconds{30};

/// A command for the entity `id`, from an entity_ref on this node: its direct
/// route cache (direct_route.hpp) and the command's number there.
struct sharded_command {
  std::string id;
  command_ptr cmd;
  std::chrono::steady_clock::time_point deadline;
  std::shared_ptr<direct_cache> cache;
  std::uint64_t seq = 0;
};

/// The entity's reply to a sharded_command (errors travel as caf::error).
struct sharded_reply {
  reply_box value;
};

using region_tick_atom = caf::atom_constant<caf::atom("sh_tick")>;
/// Send the forwarded commands and answers queued in this burst (it comes at the
/// end of the worker's burst: after_queued_work.hpp).
using flush_forwarded_atom = caf::atom_constant<caf::atom("sh_flush")>;
using coordinator_tick_atom = caf::atom_constant<caf::atom("sh_ctick")>;
/// Hand every hosted shard off (this node leaves); answered once none is left.
using hand_off_all_atom = caf::atom_constant<caf::atom("sh_leave")>;
/// A region's report (region_report) for state queries.
using report_atom = caf::atom_constant<caf::atom("sh_report")>;

} // namespace troupe::sharding::detail

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::sharding::detail::sharded_command)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::sharding::detail::sharded_reply)
