// GET /cluster/shards: per entity type, where every allocated shard lives (the
// coordinator's journal: the same on every node) and what this node's region
// hosts (its entities, buffered and refused messages).
//
//   {"types": [{"type": "account", "shards": 30,
//               "allocations": [{"shard": 0, "region": "127.0.0.1:7001",
//                                "incarnation": "…", "epoch": 3}, …],
//               "by_region": {"127.0.0.1:7001": 10, …},
//               "local": {"region": "127.0.0.1:7002", "entities": 12, "buffered": 0,
//                         "refused": 0, "shards": [{"shard": 4, "epoch": 2,
//                                                   "entities": 3}, …]}}]}
#include "shards_route.hpp"

#include "troupe/actors/node.hpp"
#include "troupe/membership/management_endpoint.hpp"
#include "troupe/persistence/journal_service.hpp"
#include "troupe/sharding/sharding.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <mutex>
#include <vector>

namespace troupe::sharding::detail {

namespace {

struct sharded_types {
  std::mutex mtx;
  std::vector<std::string> names;
};

nlohmann::json type_json(node& n, const std::string& type) {
  nlohmann::json t{{"type", type}};
  auto allocations = nlohmann::json::array();
  auto by_region = nlohmann::json::object();
  if (auto j = persistence::find_journal(n)) {
    auto all = current_allocations(j->journal(), type);
    if (!all) {
      t["error"] = all.error().to_string();
    } else {
      for (auto& a : *all) {
        auto region = a.region.address.to_string();
        allocations.push_back({{"shard", a.shard},
                               {"region", region},
                               {"incarnation", fmt::format("{:016x}", a.region.incarnation)},
                               {"epoch", a.epoch}});
        by_region[region] = by_region.value(region, 0) + 1;
      }
    }
  }
  t["allocations"] = std::move(allocations);
  t["by_region"] = std::move(by_region);
  if (auto r = report(n, type, std::chrono::seconds{2})) {
    auto shards = nlohmann::json::array();
    for (auto& s : r->shards)
      shards.push_back({{"shard", s.id}, {"epoch", s.epoch}, {"entities", s.entities}});
    t["local"] = {{"region", r->region.address.to_string()},
                  {"entities", r->entities},
                  {"buffered", r->buffered},
                  {"refused", r->refused},
                  {"shards", std::move(shards)}};
  } else {
    t["local"] = {{"error", r.error().to_string()}};
  }
  return t;
}

} // namespace

void add_to_shards_route(node& n, std::string entity_type) {
  auto endpoint = membership::management_endpoint::of(n);
  if (!endpoint)
    return;
  auto types = n.context().extension<sharded_types>();
  if (!types) {
    types = std::make_shared<sharded_types>();
    n.context().set_extension(types);
    endpoint->add_route("GET", "/cluster/shards", [&n, types](const std::string&) {
      auto doc = nlohmann::json{{"types", nlohmann::json::array()}};
      std::vector<std::string> names;
      {
        std::lock_guard<std::mutex> guard{types->mtx};
        names = types->names;
      }
      for (auto& name : names)
        doc["types"].push_back(type_json(n, name));
      return membership::http_response{200, "application/json", doc.dump()};
    });
  }
  std::lock_guard<std::mutex> guard{types->mtx};
  types->names.push_back(std::move(entity_type));
}

} // namespace troupe::sharding::detail
