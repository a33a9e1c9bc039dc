// The journal as an actor: journal requests an actor makes without blocking,
// answered as messages (request/response with a timeout, like troupe::ask).
//
// A shard's new host raises the shard's fence before it starts any entity, so that
// from then on every write of the old host under an older epoch is refused:
//
//   troupe::persistence::advance_fence(self, "account/shard-7", epoch, 5s)
//     .then([=](troupe::expected<troupe::persistence::fence_advanced> r) {
//       if (r) start_entities();       // else: r.error() is fenced, timeout, ...
//     });
//
// install_journal starts the node's journal actor ("persistence/journal", under
// the guardian). It hands each request to the journal_service (the writer thread
// for advance_fence, a reader thread for fence_epoch) and answers when the service
// calls back, so no actor thread ever waits for SQLite.
//
// Thread-safety: the functions are called from inside an actor (the in-actor ask)
// or from any thread (journal_actor).
#pragma once

#include "troupe/actors/ask.hpp"
#include "troupe/actors/node_context.hpp"

#include <caf/actor.hpp>
#include <caf/allowed_unsafe_message_type.hpp>

#include <cstdint>
#include <string>

namespace troupe {
class node;
} // namespace troupe

namespace troupe::persistence {

/// Request: journal_backend::advance_fence(key, epoch). Reply: fence_advanced, or
/// an error (fenced when the stored epoch is newer, journal_failure, ...).
struct advance_fence_request {
  std::string key;
  std::uint64_t epoch = 0;
};
struct fence_advanced {
  std::string key;
  std::uint64_t epoch = 0;  ///< the key's stored epoch now (the one requested)
};

/// Request: journal_backend::fence_epoch(key). Reply: fence_epoch_is, or an error.
struct fence_epoch_request {
  std::string key;
};
struct fence_epoch_is {
  std::string key;
  std::uint64_t epoch = 0;  ///< 0 if the key never had a fence
};

/// The node's journal actor, or a null handle when no journal is installed.
caf::actor journal_actor(node_context& ctx);

/// In-actor advance_fence: `.then([](expected<fence_advanced>) {...})` runs once,
/// on the asking actor, with the answer or the error (timeout, actor_down when no
/// journal is installed, fenced, ...).
template <class Self>
auto advance_fence(Self* self, std::string key, std::uint64_t epoch, duration timeout) {
  return troupe::ask<fence_advanced>(self, journal_actor(node_of(self)), timeout,
                                     advance_fence_request{std::move(key), epoch});
}

/// In-actor fence_epoch, answered like advance_fence.
template <class Self>
auto read_fence_epoch(Self* self, std::string key, duration timeout) {
  return troupe::ask<fence_epoch_is>(self, journal_actor(node_of(self)), timeout,
                                     fence_epoch_request{std::move(key)});
}

} // namespace troupe::persistence

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::persistence::advance_fence_request)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::persistence::fence_advanced)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::persistence::fence_epoch_request)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::persistence::fence_epoch_is)
