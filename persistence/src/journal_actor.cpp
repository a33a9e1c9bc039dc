// The node's journal actor (journal_actor.hpp): answers journal requests of actors
// with messages. The service calls back on its own threads; the callback only
// sends the result to this actor, which then delivers the response promise (a
// promise is delivered on its actor's thread, never from a foreign one).
#include "troupe/persistence/journal_actor.hpp"
#include "troupe/persistence/journal_service.hpp"

#include "troupe/actors/caf_error.hpp"
#include "troupe/actors/node.hpp"
#include "troupe/actors/spawn.hpp"

#include <caf/all.hpp>

namespace troupe::persistence::detail {

/// The journal actor's handle, hung on the node (weak: the guardian owns the actor).
struct journal_actor_handle {
  caf::actor_addr addr;
};

/// A service answer on its way back to the journal actor.
struct fence_answer {
  caf::response_promise rp;
  bool advanced = false;    ///< an advance_fence (else a fence_epoch) answer
  std::string key;
  std::uint64_t epoch = 0;  ///< the epoch requested (advance) or read
  error failure;
};

} // namespace troupe::persistence::detail

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::persistence::detail::fence_answer)

namespace troupe::persistence {

namespace detail {

namespace {

void deliver(fence_answer& m) {
  if (m.failure)
    m.rp.deliver(to_caf_error(m.failure));
  else if (m.advanced)
    m.rp.deliver(fence_advanced{std::move(m.key), m.epoch});
  else
    m.rp.deliver(fence_epoch_is{std::move(m.key), m.epoch});
}

caf::behavior journal_behavior(caf::event_based_actor* self,
                               std::shared_ptr<journal_service> svc) {
  return {
    [self, svc](advance_fence_request& r) {
      fence_answer a{self->make_response_promise(), true, r.key, r.epoch, {}};
      svc->advance_fence(r.key, r.epoch,
                         [to = caf::actor_cast<caf::actor>(self), a = std::move(a)](
                           expected<void> x) mutable {
                           if (!x)
                             a.failure = std::move(x).error();
                           caf::anon_send(to, std::move(a));
                         });
    },
    [self, svc](fence_epoch_request& r) {
      fence_answer a{self->make_response_promise(), false, r.key, 0, {}};
      svc->fence_epoch(r.key, [to = caf::actor_cast<caf::actor>(self),
                               a = std::move(a)](expected<std::uint64_t> x) mutable {
        if (x)
          a.epoch = *x;
        else
          a.failure = std::move(x).error();
        caf::anon_send(to, std::move(a));
      });
    },
    [](fence_answer& m) { deliver(m); },
  };
}

} // namespace

expected<void> start_journal_actor(node& n, std::shared_ptr<journal_service> svc) {
  auto a = n.adopt_actor("persistence/journal", [svc](caf::actor_system& sys) {
    return spawn_actor(sys, "persistence/journal", journal_behavior, svc);
  });
  if (!a)
    return std::move(a).error();
  n.context().set_extension<journal_actor_handle>(
    std::make_shared<journal_actor_handle>(journal_actor_handle{a->address()}));
  return {};
}

} // namespace detail

caf::actor journal_actor(node_context& ctx) {
  auto h = ctx.extension<detail::journal_actor_handle>();
  return h ? caf::actor_cast<caf::actor>(h->addr) : caf::actor{};
}

} // namespace troupe::persistence
