// An entity_ref's asks and tells (sharding.hpp): over the direct route to a local
// incarnation when the ref has a usable one (direct_route.hpp), otherwise through
// the node's shard region.
#include "direct_route.hpp"
#include "region_messages.hpp"

#include "troupe/actors/ask.hpp"
#include "troupe/actors/caf_error.hpp"
#include "troupe/persistence/detail/entity_routing.hpp"
#include "troupe/sharding/sharding.hpp"

#include <caf/all.hpp>

#include <thread>

namespace troupe::sharding::detail {

void direct_route::close() noexcept {
  open_.store(false, std::memory_order_seq_cst);
  // A sender inside has checked open_ and is enqueueing: a handful of instructions.
  while (inside_.load(std::memory_order_seq_cst) != 0)
    std::this_thread::yield();
  // Nobody reads it any more (enter() fails from here on): a ref that keeps this
  // route must not keep the incarnation's memory alive.
  entity_ = caf::actor{};
}

std::shared_ptr<direct_cache> make_direct_cache() {
  return std::make_shared<direct_cache>();
}

namespace {

using clock = std::chrono::steady_clock;
using persistence::detail::ask_continuation;

/// The region answers an ask at its deadline at the latest; the asker waits a
/// little longer so the region's answer, not a race, decides.
constexpr auto grace = std::chrono::milliseconds{500};

error no_region() {
  return error{errc::actor_down, "ask to an entity type without a shard region on this node"};
}

duration until(clock::time_point deadline) {
  return std::max(duration::zero(),
                  std::chrono::duration_cast<duration>(deadline - clock::now()));
}

/// The route of `cache` to use now, entered (leave() once the command is
/// enqueued), or null.
direct_route_ptr enter_route(const std::shared_ptr<direct_cache>& cache) {
  if (!cache)
    return nullptr;
  auto r = cache->usable();
  return r && r->enter() ? r : nullptr;
}

/// The command for the region, numbered in `cache` (if any).
sharded_command through_region(const std::shared_ptr<direct_cache>& cache, std::string id,
                               command_ptr cmd, clock::time_point deadline) {
  auto seq = cache ? cache->sending_through_region() : 0;
  return sharded_command{std::move(id), std::move(cmd), deadline, cache, seq};
}

/// Through the region, from inside an actor.
void ask_region(caf::event_based_actor* self, const caf::actor& region,
                const std::shared_ptr<direct_cache>& cache, std::string id, command_ptr cmd,
                clock::time_point deadline, ask_continuation done) {
  auto ticket = persistence::detail::begin_ask(self, until(deadline) + grace, std::move(done));
  self->request(region, caf::infinite, through_region(cache, std::move(id), std::move(cmd), deadline))
    .then(
      [ticket](sharded_reply& r) { persistence::detail::finish_ask(ticket, std::move(r.value)); },
      [ticket](caf::error& e) { persistence::detail::finish_ask(ticket, from_caf_error(e)); });
}

} // namespace

expected<reply_box> ask_sharded(const caf::actor& region, const std::shared_ptr<direct_cache>& cache,
                                std::string id, command_ptr cmd, duration timeout) {
  if (!region)
    return no_region();
  auto deadline = clock::now() + timeout;
  if (auto route = enter_route(cache)) {
    bool bounced = false;
    auto entity = route->entity();  // a copy: after leave() the route may drop it
    auto r = persistence::detail::ask_entity(region->home_system(), entity, timeout, cmd,
                                             [&] { route->leave(); }, bounced);
    if (!bounced)
      return r;
    cache->forget(route);  // that incarnation ended: the region knows the next one
  }
  auto r = troupe::ask<sharded_reply>(region->home_system(), region, until(deadline) + grace,
                                      through_region(cache, std::move(id), std::move(cmd), deadline));
  if (!r)
    return std::move(r).error();
  return std::move(r->value);
}

void ask_sharded(caf::event_based_actor* self, const caf::actor& region,
                 const std::shared_ptr<direct_cache>& cache, std::string id, command_ptr cmd,
                 duration timeout, std::function<void(expected<reply_box>)> done) {
  if (!region) {
    done(no_region());
    return;
  }
  auto deadline = clock::now() + timeout;
  if (auto route = enter_route(cache)) {
    persistence::detail::ask_entity(
      self, route->entity(), deadline, timeout, std::move(cmd), std::move(done),
      [self, region, cache, route, id = std::move(id), deadline](command_ptr c,
                                                                 ask_continuation k) mutable {
        cache->forget(route);
        ask_region(self, region, cache, std::move(id), std::move(c), deadline, std::move(k));
      });
    route->leave();
    return;
  }
  ask_region(self, region, cache, std::move(id), std::move(cmd), deadline, std::move(done));
}

void tell_sharded(const caf::actor& region, const std::shared_ptr<direct_cache>& cache,
                  std::string id, command_ptr cmd) {
  if (!region)
    return;
  if (auto route = enter_route(cache)) {
    persistence::detail::tell_entity(route->entity(), std::move(cmd));
    route->leave();
    return;
  }
  caf::anon_send(region,
                 through_region(cache, std::move(id), std::move(cmd), clock::now() + held_command_deadline));
}

} // namespace troupe::sharding::detail
