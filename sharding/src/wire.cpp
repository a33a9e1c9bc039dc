#include "wire.hpp"

#include "troupe/actors/remote/message_types.hpp"

namespace troupe::sharding::detail {

using nlohmann::json;

void to_json(json& j, const region_report_request& r) {
  j = json{{"t", r.entity_type}};
}

void from_json(const json& j, region_report_request& r) {
  r.entity_type = j.at("t").get<std::string>();
}

} // namespace troupe::sharding::detail

namespace troupe::sharding {

void to_json(nlohmann::json& j, const region_report& r) {
  auto shards = nlohmann::json::array();
  for (auto& s : r.shards)
    shards.push_back(nlohmann::json::array({s.id, s.epoch, s.entities}));
  j = nlohmann::json{{"t", r.entity_type},
                     {"r", r.region.address},
                     {"i", r.region.incarnation},
                     {"s", std::move(shards)},
                     {"e", r.entities},
                     {"b", r.buffered},
                     {"x", r.refused}};
}

void from_json(const nlohmann::json& j, region_report& r) {
  r.entity_type = j.at("t").get<std::string>();
  r.region.address = j.at("r").get<remote::node_address>();
  r.region.incarnation = j.at("i").get<std::uint64_t>();
  r.shards.clear();
  for (auto& s : j.at("s"))
    r.shards.push_back({s.at(0).get<shard_id>(), s.at(1).get<std::uint64_t>(),
                        s.at(2).get<std::size_t>()});
  r.entities = j.at("e").get<std::size_t>();
  r.buffered = j.at("b").get<std::size_t>();
  r.refused = j.at("x").get<std::uint64_t>();
}

} // namespace troupe::sharding

namespace troupe::sharding::detail {

expected<void> add_wire_types(node& n) {
  if (auto r = remote::add_troupe_message_type<region_report_request>(
        n, "troupe.sharding.region-report-request");
      !r)
    return r;
  return remote::add_troupe_message_type<region_report>(n, "troupe.sharding.region-report");
}

std::string region_name(std::string_view entity_type) {
  return fmt::format("troupe.sharding.region.{}", entity_type);
}

std::string coordinator_channel(std::string_view entity_type) {
  return fmt::format("troupe.sharding.coordinator.{}", entity_type);
}

std::string region_channel(std::string_view entity_type) {
  return fmt::format("troupe.sharding.region.{}", entity_type);
}

std::string coordinator_singleton(std::string_view entity_type) {
  return fmt::format("sharding-coordinator.{}", entity_type);
}

std::string coordinator_persistence_id(std::string_view entity_type) {
  return fmt::format("troupe.sharding-coordinator|{}", entity_type);
}

std::string shard_fence_key(std::string_view entity_type, shard_id shard) {
  return fmt::format("{}/shard-{}", entity_type, shard);
}

persistence::event_record to_record(const coordinator_event& e, std::string persistence_id,
                                    persistence::sequence_nr seq) {
  persistence::event_record r;
  r.persistence_id = std::move(persistence_id);
  r.seq = seq;
  r.manifest = std::string{event_manifest};
  r.payload = encode(e);
  r.timestamp_ms = persistence::now_ms();
  return r;
}

expected<coordinator_event> from_record(const persistence::event_record& r) {
  if (r.manifest != event_manifest)
    return error{errc::decode_failed,
                 fmt::format("{} seq {}: manifest '{}' is not a coordinator event",
                             r.persistence_id, r.seq, r.manifest)};
  return decode_coordinator_event(r.payload.data(), r.payload.size());
}

} // namespace troupe::sharding::detail
