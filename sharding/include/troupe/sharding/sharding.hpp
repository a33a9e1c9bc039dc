// Cluster sharding: entities of a type placed on the cluster's nodes by shard,
// reached by id from anywhere.
//
//   // on every node, after the transport, the cluster and the journal started:
//   troupe::sharding::sharding_settings s;           // shards, role, passivation
//   troupe::sharding::start<bank::account>(*node, s);
//   // anywhere in the cluster:
//   auto acct = troupe::sharding::entity_for<bank::account>(*node, "acct-42");
//   auto ok = acct.ask(bank::deposit{100}, 2s);      // expected<done>, wherever it lives
//
// Each node runs one shard region per entity type (registered with the transport
// as "troupe.sharding.region.<type>"); a cluster singleton on the oldest member with
// the role runs the type's shard coordinator, which stores which region hosts which
// shard, under which epoch, in the journal (persistence id
// "troupe.sharding-coordinator|<type>"). An entity's shard is
// shard_of(id, number_of_shards) (shard_id.hpp). The region starts an entity on its
// first command, passivates it after `passivate_idle_after` without commands, and
// stops a shard's entities before the shard moves. docs/sharding.md has the
// protocol and its guarantees.
//
// Commands and replies cross nodes through the codec: register every command and
// reply type (codec_registry::add) before start(); start() fails naming the first
// one missing (persistence/entity_protocol.hpp; `done` needs no registration).
//
// Fencing: a region that is given a shard under epoch N first raises the journal's
// fence "<type>/shard-<n>" to N, then starts the shard's entities with that fence
// on every persist; a region that still runs the shard under an older epoch (a
// paused or partitioned node) has its persists refused (errc::fenced, nothing
// stored), and those entities stop. See docs/sharding.md, "Fencing".
//
// Thread-safety: start() and entity_for() may be called from any non-actor thread;
// entity_ref is a value type usable from any thread, except that the blocking ask
// must not be called from inside an actor (use the in-actor ask there).
#pragma once

#include "troupe/actors/expected.hpp"
#include "troupe/actors/remote/address.hpp"
#include "troupe/membership/settings.hpp"
#include "troupe/membership/timestamp.hpp"
#include "troupe/persistence/entity.hpp"
#include "troupe/persistence/journal.hpp"
#include "troupe/persistence/detail/message_codec.hpp"
#include "troupe/persistence/owned_entity.hpp"
#include "troupe/sharding/shard_id.hpp"

#include <caf/actor.hpp>
#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/fwd.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <string>

namespace troupe {
class node;
} // namespace troupe

namespace troupe::sharding {

using membership::duration;

struct sharding_settings {
  /// Shards of the type; must be the same on every node.
  std::uint32_t number_of_shards = 100;
  /// Host shards only on members with this role (empty: every member); a node
  /// without it runs a proxy-only region that routes but hosts nothing.
  std::string role;
  /// An entity without commands for this long is stopped (0: never).
  duration passivate_idle_after = std::chrono::minutes{2};
  /// At most this many entities run in one region (0: no limit); starting one
  /// more passivates the least recently used idle one.
  std::size_t max_active_entities = 0;
  /// Remember-entities: the entities running in a shard (started by a command,
  /// not passivated since) are stored in the journal and started again, without
  /// waiting for a command, wherever the shard starts next (after a crash, a
  /// rebalance or a leave). Off by default: it costs a journal write per entity
  /// start and passivation.
  bool remember_entities = false;
  /// How many remembered entities a region starts per second (their recoveries
  /// are further bounded by the journal's recovery permits): a failover does not
  /// stampede the journal (Akka #20744).
  std::size_t remembered_starts_per_second = 1000;
  /// Messages a region holds while homes are unknown or shards move (all shards).
  std::size_t buffer_size = 100000;
  /// How often the coordinator considers a rebalance round.
  duration rebalance_interval = std::chrono::seconds{10};
  /// Hand-off phases: regions acknowledge "begin", then the owner stops the shard.
  duration begin_hand_off_timeout = std::chrono::seconds{5};
  duration hand_off_timeout = std::chrono::seconds{10};
};

/// What one node's region of one entity type hosts (state queries, metrics).
struct region_report {
  struct shard {
    shard_id id = 0;
    std::uint64_t epoch = 0;
    std::size_t entities = 0;
  };
  std::string entity_type;
  remote::node_identity region;
  std::vector<shard> shards;
  std::size_t entities = 0;
  std::size_t buffered = 0;
  std::uint64_t refused = 0;
};

/// Where a shard lives, with its epoch, as the coordinator stored it.
struct shard_allocation {
  shard_id shard = 0;
  remote::node_identity region;
  std::uint64_t epoch = 0;
};

/// The allocations of `entity_type` folded from the coordinator's journal: the
/// cluster-wide truth that every coordinator recovers (shards without a home are
/// absent). Errors: the journal's, or decode_failed naming the event.
expected<std::vector<shard_allocation>>
current_allocations(persistence::journal_backend& journal, std::string_view entity_type);

/// Makes the number of shards of `entity_type` a membership compatibility entry
/// ("sharding.<type>.number-of-shards"): a node that disagrees is refused at join
/// with a message naming both values, instead of routing ids to other shards.
/// Call it on the settings before membership::cluster::start (node_program's
/// configure_cluster hook), on every node that starts the type.
void require_same_shards(membership::membership_settings& s, std::string_view entity_type,
                         const sharding_settings& settings);

/// This node's region report of `entity_type` (not_found if it runs none).
expected<region_report> report(node& n, std::string_view entity_type, duration timeout);

/// One member's region report, or why it has none (it did not answer in time,
/// runs no region of the type, ...).
struct member_report {
  remote::node_identity member;
  expected<region_report> report;
};

/// The region reports of every up member (this node included; a member without
/// the type's role reports its proxy-only region, a member that never started
/// the type reports an error), asked over the transport concurrently, each
/// within `timeout`: cluster-wide shard and entity counts. Not from inside an actor.
std::vector<member_report> cluster_report(node& n, std::string_view entity_type,
                                          duration timeout);

/// Hands every shard this node hosts to other nodes and waits until none is left
/// or `timeout` passes (node shutdown does this in its
/// cluster-sharding-shutdown-region phase).
expected<void> hand_off_all(node& n, std::string_view entity_type, duration timeout);

namespace detail {

using persistence::detail::command_box;
using persistence::detail::command_ptr;
using persistence::detail::reply_box;

/// Everything a region needs to host entities of one type.
struct entity_type_spec {
  std::string name;
  sharding_settings settings;
  std::shared_ptr<const persistence::detail::message_codec> protocol;
  /// Starts an incarnation of the entity `id`, owned by the region `owner`
  /// (owned_entity.hpp: it is monitored by and ends with the region).
  std::function<expected<caf::actor>(caf::event_based_actor* owner, const std::string& id,
                                     persistence::entity_placement placement)>
    spawn;
};

/// The fence key of a shard: "<type>/shard-<n>".
std::string shard_fence_key(std::string_view entity_type, shard_id shard);

expected<void> start_region(node& n, entity_type_spec spec);
std::shared_ptr<const codec_registry> codec_of(node& n);
/// The region of `entity_type` on this node, or an invalid handle.
caf::actor region_of(node& n, std::string_view entity_type);

/// The direct route an entity_ref caches (direct_route.hpp).
class direct_cache;
std::shared_ptr<direct_cache> make_direct_cache();

// An entity_ref's asks and tells: directly to a local incarnation whose route the
// region gave `cache`, otherwise through the region (`cache` may be null).
expected<reply_box> ask_sharded(const caf::actor& region, const std::shared_ptr<direct_cache>& cache,
                                std::string id, command_ptr cmd, duration timeout);
void ask_sharded(caf::event_based_actor* self, const caf::actor& region,
                 const std::shared_ptr<direct_cache>& cache, std::string id, command_ptr cmd,
                 duration timeout, std::function<void(expected<reply_box>)> done);
void tell_sharded(const caf::actor& region, const std::shared_ptr<direct_cache>& cache,
                  std::string id, command_ptr cmd);

} // namespace detail

/// Starts this node's region of `Entity` (and its share of the coordinator
/// singleton). The transport, the cluster and the journal must run.
template <class Entity>
expected<void> start(node& n, sharding_settings settings = {},
                     persistence::entity_options opts =
                       persistence::detail::default_options<Entity>());

/// A reference to the entity `id` of type `Entity`, wherever it lives.
///
/// Once the entity runs on this node, a ref (and its copies) sends to it directly
/// instead of through the region: keep and reuse refs on hot paths. Commands from
/// one thread or actor through one ref reach the entity in the order they were
/// sent, across hand-offs and passivation (docs/sharding.md, "Direct routes").
template <class Entity>
class entity_ref {
public:
  entity_ref() = default;
  entity_ref(caf::actor region, std::string id)
    : region_(std::move(region)), id_(std::move(id)), cache_(detail::make_direct_cache()) {}

  const std::string& id() const noexcept { return id_; }
  explicit operator bool() const noexcept { return static_cast<bool>(region_); }

  /// Sends a command without waiting for its reply.
  template <class Command>
  void tell(Command cmd) const {
    persistence::detail::check_command<Entity, Command>();
    detail::tell_sharded(region_, cache_, id_, boxed::wrap(std::move(cmd)));
  }

  /// Sends a command and blocks for its reply, the entity's error, or `timeout`.
  /// Not from inside an actor.
  template <class Command>
  expected<typename Command::reply> ask(Command cmd, duration timeout) const {
    persistence::detail::check_command<Entity, Command>();
    auto r = detail::ask_sharded(region_, cache_, id_, boxed::wrap(std::move(cmd)), timeout);
    return boxed::template unbox<typename Command::reply>(std::move(r));
  }

  /// The same from inside an actor: `f(expected<reply>)` runs once, on `self`.
  template <class Command, class F>
  void ask(caf::event_based_actor* self, Command cmd, duration timeout, F f) const {
    persistence::detail::check_command<Entity, Command>();
    detail::ask_sharded(self, region_, cache_, id_, boxed::wrap(std::move(cmd)), timeout,
                        [f = std::move(f)](expected<detail::reply_box> r) mutable {
                          f(boxed::template unbox<typename Command::reply>(std::move(r)));
                        });
  }

private:
  using boxed = persistence::entity_ref<Entity>;
  caf::actor region_;
  std::string id_;
  std::shared_ptr<detail::direct_cache> cache_;
};

/// The entity `id` of type `Entity` (start<Entity>() must have run on this node;
/// otherwise every ask fails with actor_down).
template <class Entity>
entity_ref<Entity> entity_for(node& n, std::string id) {
  return entity_ref<Entity>{detail::region_of(n, Entity::entity_type), std::move(id)};
}

template <class Entity>
expected<void> start(node& n, sharding_settings settings, persistence::entity_options opts) {
  auto protocol = persistence::detail::cached_message_codec<Entity>(detail::codec_of(n));
  if (!protocol)
    return std::move(protocol).error();
  detail::entity_type_spec spec;
  spec.name = std::string{Entity::entity_type};
  spec.settings = std::move(settings);
  spec.protocol = std::move(*protocol);
  // The codec check of the events (and the state), once, so start() reports it.
  auto probe = persistence::detail::make_blueprint<Entity>("-", opts);
  if (auto m = probe->make_model(detail::codec_of(n)); !m)
    return std::move(m).error();
  spec.spawn = [opts](caf::event_based_actor* owner, const std::string& id,
                      persistence::entity_placement placement) -> expected<caf::actor> {
    auto e = persistence::spawn_owned_entity<Entity>(owner, id, std::move(placement), opts);
    if (!e)
      return std::move(e).error();
    return e->actor();
  };
  return detail::start_region(n, std::move(spec));
}

} // namespace troupe::sharding

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::sharding::region_report)
