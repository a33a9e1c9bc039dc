// Streams into sharded entities: each element becomes a command to the entity
// whose id it names, wherever in the cluster that entity lives.
//
//   // after sharding::start<bank::account>(node, ...) on this node:
//   readings
//     .to(ts::to_entities<bank::account, reading>(
//       node, [](const reading& r) { return r.account; },            // the entity id
//       [](const reading& r) { return bank::deposit{r.amount, ""}; },  // the command
//       {.ask = {.parallelism = 256}}))
//     .run(node);
//
// It is ask_sink (ask_sink.hpp) with the sharding layer's entity_ref as the target:
// - at most `parallelism` elements are held; one command per entity at a time,
//   so the order is kept per entity;
// - the reply comes once the entity handled the command (for a persisting
//   command: once its events are durable), so a slow journal slows the source;
// - the sharding layer pushes back without the stream growing: a command for a
//   shard in hand-off, or whose home is not known yet, waits in the region (the
//   element stays held, its slot used); a region whose buffer is full answers
//   `overloaded`, which is retried after a backoff. Either way the source slows
//   down instead of the stream failing or buffering more.
// - a timeout, `overloaded`, `actor_down` or `node_unreachable` is retried
//   (`ask_options`): effects are at least once. Exactly once needs the entity to
//   deduplicate (docs/streams.md, "Delivery guarantees").
//
// Refs are kept per entity id (up to `ref_cache` of them, all dropped when full)
// so that commands to an entity running on this node go to it directly, not
// through the region (docs/sharding.md, "Direct routes").
//
// Thread-safety: the blueprints may be run any number of times, concurrently;
// the node must outlive every run.
#pragma once

#include "troupe/actors/node.hpp"
#include "troupe/sharding/sharding.hpp"
#include "troupe/streams/ask_sink.hpp"

#include <fmt/format.h>

#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <type_traits>
#include <unordered_map>

namespace troupe::streams {

struct entity_sink_options {
  ask_options ask;
  /// Entity refs kept for direct routes; all are dropped when it is reached.
  std::size_t ref_cache = 10'000;
};

namespace detail {

/// The refs of one entity type on one node, by id (any thread).
template <class Entity>
class sharded_refs {
public:
  sharded_refs(caf::actor region, std::size_t capacity)
    : region_(std::move(region)), capacity_(capacity) {}

  bool has_region() const noexcept { return static_cast<bool>(region_); }

  sharding::entity_ref<Entity> get(const std::string& id) {
    if (capacity_ == 0)
      return {region_, id};
    std::lock_guard<std::mutex> lock{mtx_};
    if (auto i = refs_.find(id); i != refs_.end())
      return i->second;
    if (refs_.size() >= capacity_)
      refs_.clear();
    return refs_.emplace(id, sharding::entity_ref<Entity>{region_, id}).first->second;
  }

private:
  caf::actor region_;
  std::size_t capacity_;
  std::mutex mtx_;
  std::unordered_map<std::string, sharding::entity_ref<Entity>> refs_;
};

} // namespace detail

/// An ask_fn to the sharded entities of `Entity` on node `n`: id_of(element)
/// names the entity, to_command(element) makes the command. Without a region of
/// the type on `n` (sharding::start not run), every ask fails with
/// invalid_argument naming the type (not retried).
template <class Entity, class T, class IdFn, class ToCommand>
auto ask_sharded_entity(node& n, IdFn id_of, ToCommand to_command, std::size_t ref_cache = 10'000) {
  using Command = std::decay_t<std::invoke_result_t<ToCommand&, const T&>>;
  using R = typename Command::reply;
  auto refs = std::make_shared<detail::sharded_refs<Entity>>(
    sharding::detail::region_of(n, Entity::entity_type), ref_cache);
  return ask_fn<T, R>{[refs, id_of, to_command](caf::event_based_actor* self, const T& x,
                                                 duration timeout, reply_fn<R> reply) {
    if (!refs->has_region()) {
      reply(error{errc::invalid_argument,
                  fmt::format("to_entities: no shard region of entity type '{}' on this node "
                              "(run sharding::start first)",
                              Entity::entity_type)});
      return;
    }
    refs->get(std::string{id_of(x)})
      .ask(self, to_command(x), timeout, [reply](expected<R> r) { reply(std::move(r)); });
  }};
}

/// A flow: each element -> the reply of the command it became, in completion
/// order (order kept per entity).
template <class Entity, class T, class IdFn, class ToCommand>
auto entities_flow(node& n, IdFn id_of, ToCommand to_command, entity_sink_options opts = {}) {
  using Command = std::decay_t<std::invoke_result_t<ToCommand&, const T&>>;
  auto ask = ask_sharded_entity<Entity, T>(n, id_of, std::move(to_command), opts.ref_cache);
  return ask_flow<T, typename Command::reply>(
    [id_of](const T& x) { return std::string{id_of(x)}; }, std::move(ask), std::move(opts.ask));
}

/// A sink: entities_flow with the replies discarded; its completion fails as the
/// stream does (a command that failed for good, with the decider's stop).
template <class Entity, class T, class IdFn, class ToCommand>
sink<T, completion> to_entities(node& n, IdFn id_of, ToCommand to_command,
                                entity_sink_options opts = {}) {
  using Command = std::decay_t<std::invoke_result_t<ToCommand&, const T&>>;
  using R = typename Command::reply;
  return flow<T, R>{entities_flow<Entity, T>(n, std::move(id_of), std::move(to_command),
                                             std::move(opts))}
    .to(ignore<R>());
}

} // namespace troupe::streams
