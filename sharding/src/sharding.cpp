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

#include <future>
#include <limits>
#include <map>

namespace troupe::sharding {

namespace {

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

std::vector<member_report> cluster_report(node& n, std::string_view entity_type,
                                          duration timeout) {
  std::vector<member_report> out;
  auto cluster = membership::cluster::of(n.system());
  auto transport = remote::transport::of(n.system());
  if (!cluster || !transport) {
    auto r = report(n, entity_type, timeout);
    out.push_back({r ? r->region : remote::node_identity{}, std::move(r)});
    return out;
  }
  auto view = cluster->view();
  std::vector<std::pair<remote::node_identity, std::future<expected<region_report>>>> asks;
  for (auto& m : view.state->members) {
    if (m.status != membership::member_status::up)
      continue;
    if (m.node == transport->identity()) {
      asks.emplace_back(m.node, std::async(std::launch::async, [&n, entity_type, timeout] {
                          return report(n, entity_type, timeout);
                        }));
      continue;
    }
    auto dest = transport->actor_for(m.node, detail::region_name(entity_type));
    asks.emplace_back(m.node, std::async(std::launch::async, [&n, dest, entity_type, timeout] {
                        return troupe::ask<region_report>(
                          n.system(), dest, timeout,
                          detail::region_report_request{std::string{entity_type}});
                      }));
  }
  for (auto& [member, f] : asks)
    out.push_back({member, f.get()});
  return out;
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
