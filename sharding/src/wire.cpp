#include "wire.hpp"

#include "troupe/actors/remote/message_types.hpp"

namespace troupe::sharding::detail {

namespace {

using nlohmann::json;

json payload_json(const persistence::encoded_message& p) {
  return json{{"m", p.manifest}, {"v", p.version}, {"d", json::binary(p.payload)}};
}

persistence::encoded_message payload_from(const json& j) {
  persistence::encoded_message p;
  p.manifest = j.at("m").get<std::string>();
  p.version = j.at("v").get<std::uint32_t>();
  auto& d = j.at("d");
  if (!d.is_binary())
    throw std::invalid_argument("payload bytes must be a byte string");
  p.payload = d.get_binary();
  return p;
}

} // namespace

void to_json(json& j, const entity_request& r) {
  j = json{{"t", r.entity_type}, {"i", r.entity_id}, {"c", payload_json(r.command)},
           {"h", r.hops},        {"o", r.timeout_ms}};
}

void from_json(const json& j, entity_request& r) {
  r.entity_type = j.at("t").get<std::string>();
  r.entity_id = j.at("i").get<std::string>();
  r.command = payload_from(j.at("c"));
  r.hops = j.at("h").get<std::uint32_t>();
  r.timeout_ms = j.at("o").get<std::int64_t>();
}

void to_json(json& j, const entity_response& r) {
  j = json{{"r", payload_json(r.reply)}};
}

void from_json(const json& j, entity_response& r) {
  r.reply = payload_from(j.at("r"));
}

expected<void> add_wire_types(node& n) {
  if (auto r = remote::add_troupe_message_type<entity_request>(n, "troupe.sharding.entity-request"); !r)
    return r;
  return remote::add_troupe_message_type<entity_response>(n, "troupe.sharding.entity-response");
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
