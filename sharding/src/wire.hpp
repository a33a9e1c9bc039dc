// Internal: what the sharding layer sends between nodes, and its names there.
//
//   - entity_request / entity_response: a command for an entity, forwarded from
//     one node's region to another's as a transport request (troupe.sharding.*
//     manifests), and the entity's reply; errors travel as the request's error.
//   - sharding_envelope (protocol.hpp): coordinator <-> region, as transport
//     packets on the channels below.
//   - coordinator events: what the coordinator stores in the journal.
#pragma once

#include "troupe/actors/expected.hpp"
#include "troupe/persistence/journal.hpp"
#include "troupe/sharding/coordinator_core.hpp"
#include "troupe/persistence/detail/message_codec.hpp"

#include <caf/allowed_unsafe_message_type.hpp>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>

namespace troupe {
class node;
} // namespace troupe

namespace troupe::sharding::detail {

struct entity_request {
  std::string entity_type;
  std::string entity_id;
  persistence::encoded_message command;
  std::uint32_t hops = 0;
  std::int64_t timeout_ms = 0;
};

struct entity_response {
  persistence::encoded_message reply;
};

void to_json(nlohmann::json& j, const entity_request& r);
void from_json(const nlohmann::json& j, entity_request& r);
void to_json(nlohmann::json& j, const entity_response& r);
void from_json(const nlohmann::json& j, entity_response& r);

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

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::sharding::detail::entity_request)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::sharding::detail::entity_response)
