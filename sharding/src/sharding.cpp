#include "troupe/sharding/sharding.hpp"

#include "coordinator_actor.hpp"
#include "region_actor.hpp"
#include "region_messages.hpp"
#include "shards_route.hpp"
#include "wire.hpp"

#include "troupe/actors/ask.hpp"
#include "troupe/actors/node.hpp"
#include "troupe/actors/remote/transport.hpp"
#include "troupe/actors/spawn.hpp"
#include "troupe/membership/cluster.hpp"
#include "troupe/membership/singleton.hpp"
#include "troupe/persistence/journal_service.hpp"

#include <caf/all.hpp>

#include <limits>
#include <map>

namespace troupe::sharding {

namespace {

/// Asks are answered by the region at their deadline at the latest; the CAF
/// request waits a little longer so the region's answer, not a race, decides.
constexpr auto grace = std::chrono::milliseconds{500};

duration remaining(std::chrono::steady_clock::time_point until) {
  return std::chrono::duration_cast<duration>(until - std::chrono::steady_clock::now());
}

} // namespace

namespace detail {

std::shared_ptr<const codec_registry> codec_of(node& n) {
  return n.context().shared_codec();
}

caf::actor region_of(node& n, std::string_view entity_type) {
  auto t = remote::transport::of(n);
  return t ? t->registered(region_name(entity_type)) : caf::actor{};
}

expected<void> start_region(node& n, entity_type_spec spec) {
  auto t = remote::transport::of(n);
  auto c = membership::cluster::of(n);
  if (!t || !c || !persistence::find_journal(n))
    return error{errc::invalid_argument,
                 fmt::format("sharding of '{}': start the transport, the cluster and the "
                             "journal first",
                             spec.name)};
  if (spec.settings.number_of_shards == 0)
    return error{errc::invalid_config,
                 fmt::format("sharding of '{}': number_of_shards must be at least 1", spec.name)};
  if (t->registered(region_name(spec.name)))
    return error{errc::invalid_argument,
                 fmt::format("sharding of '{}' already runs on this node", spec.name)};
  if (auto r = add_wire_types(n); !r)
    return r;
  auto shared = std::make_shared<const entity_type_spec>(std::move(spec));
  auto region = spawn_region(n, shared);
  if (!region)
    return std::move(region).error();
  if (auto r = t->register_actor(region_name(shared->name), *region); !r)
    return r;
  membership::singleton_spec singleton;
  singleton.name = coordinator_singleton(shared->name);
  singleton.role = shared->settings.role;
  singleton.start = [shared](caf::actor_system& sys) { return spawn_coordinator(sys, shared); };
  if (auto m = membership::start_singleton(n, std::move(singleton)); !m)
    return std::move(m).error();
  add_to_shards_route(n, shared->name);
  // Before the node leaves the cluster, its shards move elsewhere (their entities
  // stop after persisting what they acknowledged), so nothing waits for a
  // failure detector.
  auto type = shared->name;
  n.add_shutdown_task(shutdown_phase::cluster_sharding_shutdown_region, "sharding: hand off " + type,
                      [&n, type](node::deadline until) {
                        (void) hand_off_all(n, type, remaining(until));
                      });
  return {};
}

expected<reply_box> ask_sharded(const caf::actor& region, std::string id, command_ptr cmd,
                                duration timeout) {
  if (!region)
    return error{errc::actor_down, "ask to an entity type without a shard region on this node"};
  auto deadline = std::chrono::steady_clock::now() + timeout;
  auto r = troupe::ask<sharded_reply>(region->home_system(), region, timeout + grace,
                                      sharded_command{std::move(id), std::move(cmd), deadline});
  if (!r)
    return std::move(r).error();
  return std::move(r->value);
}

void ask_sharded(caf::event_based_actor* self, const caf::actor& region, std::string id,
                 command_ptr cmd, duration timeout, std::function<void(expected<reply_box>)> done) {
  if (!region) {
    done(error{errc::actor_down, "ask to an entity type without a shard region on this node"});
    return;
  }
  auto deadline = std::chrono::steady_clock::now() + timeout;
  troupe::ask<sharded_reply>(self, region, timeout + grace,
                             sharded_command{std::move(id), std::move(cmd), deadline})
    .then([done = std::move(done)](expected<sharded_reply> r) mutable {
      if (!r)
        done(std::move(r).error());
      else
        done(std::move(r->value));
    });
}

void tell_sharded(const caf::actor& region, std::string id, command_ptr cmd) {
  if (!region)
    return;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds{30};
  caf::anon_send(region, sharded_command{std::move(id), std::move(cmd), deadline});
}

} // namespace detail

expected<std::vector<shard_allocation>>
current_allocations(persistence::journal_backend& journal, std::string_view entity_type) {
  auto pid = detail::coordinator_persistence_id(entity_type);
  auto events = journal.read_events(pid, 1, persistence::max_sequence_nr,
                                    std::numeric_limits<std::size_t>::max());
  if (!events)
    return std::move(events).error();
  std::map<shard_id, shard_allocation> homes;
  for (auto& r : *events) {
    auto e = detail::from_record(r);
    if (!e)
      return std::move(e).error();
    if (auto* a = std::get_if<shard_allocated>(&*e))
      homes[a->shard] = shard_allocation{a->shard, a->region, a->epoch};
    else
      homes.erase(std::get<shard_released>(*e).shard);
  }
  std::vector<shard_allocation> out;
  for (auto& [s, a] : homes)
    out.push_back(a);
  return out;
}

expected<region_report> report(node& n, std::string_view entity_type, duration timeout) {
  auto region = detail::region_of(n, entity_type);
  if (!region)
    return error{errc::not_found,
                 fmt::format("no shard region of entity type '{}' on this node", entity_type)};
  return troupe::ask<region_report>(n.system(), region, timeout, detail::report_atom::value);
}

expected<void> hand_off_all(node& n, std::string_view entity_type, duration timeout) {
  auto region = detail::region_of(n, entity_type);
  if (!region)
    return {};
  auto r = troupe::ask<bool>(n.system(), region, timeout, detail::hand_off_all_atom::value);
  if (!r)
    return std::move(r).error();
  return {};
}

void require_same_shards(membership::membership_settings& s, std::string_view entity_type,
                         const sharding_settings& settings) {
  s.require_equal(fmt::format("sharding.{}.number-of-shards", entity_type),
                  std::to_string(settings.number_of_shards));
}

} // namespace troupe::sharding
