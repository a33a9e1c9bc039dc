// Internal: what the sharding layer sends between nodes, and its names there.
//
//   - commands for entities forwarded from one node's region to another's, and
//     their answers: batches in transport packets on the region channel
//     (command_batch.hpp).
//   - sharding_envelope (protocol.hpp): coordinator <-> region, as transport
//     packets on the channels below.
//   - coordinator events: what the coordinator stores in the journal.
#pragma once

#include "troupe/actors/expected.hpp"
#include "troupe/persistence/journal.hpp"
#include "troupe/sharding/coordinator_core.hpp"
#include "troupe/sharding/sharding.hpp"
#include "troupe/persistence/detail/message_codec.hpp"

#include <caf/allowed_unsafe_message_type.hpp>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>

namespace troupe {
class node;
} // namespace troupe

namespace troupe::sharding {
// region_report on the wire (cluster_report).
void to_json(nlohmann::json& j, const region_report& r);
void from_json(const nlohmann::json& j, region_report& r);
} // namespace troupe::sharding

namespace troupe::sharding::detail {

/// Asks another node's region for its region_report (cluster_report).
struct region_report_request {
  std::string entity_type;
};

void to_json(nlohmann::json& j, const region_report_request& r);
void from_json(const nlohmann::json& j, region_report_request& r);

/// Registers the request and response with the node's transport codec; idempotent.
expected<void> add_wire_types(node& n);

/// The transport name of an entity type's region on every node.
std::string region_name(std::string_view entity_type);
/// The packet channels: the coordinator's, and the regions'.
std::string coordinator_channel(std::string_view entity_type);
std::string region_channel(std::string_view entity_type);
/// The singleton that runs an entity type's coordinator.
std::string coordinator_singleton(std::string_view entity_type);
/// The persistence id of an entity type's coordinator state.
std::string coordinator_persistence_id(std::string_view entity_type);

inline constexpr std::string_view envelope_manifest = "troupe.sharding.envelope";
inline constexpr std::string_view event_manifest = "troupe.sharding.coordinator-event";

/// A coordinator event as a journal event (sequence nr `seq`), and back.
persistence::event_record to_record(const coordinator_event& e, std::string persistence_id,
                                    persistence::sequence_nr seq);
expected<coordinator_event> from_record(const persistence::event_record& r);

} // namespace troupe::sharding::detail

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::sharding::detail::region_report_request)
