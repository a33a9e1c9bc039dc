// entity_protocol: an entity type's commands and replies as bytes, so that a shard
// region can carry commands of any registered entity type over the transport
// (sharding/ uses it for remote asks).
//
//   auto proto = troupe::persistence::make_entity_protocol<account>(codec);
//   // sending node: the command a user gave, as (manifest, version, bytes)
//   // receiving node:
//   auto msg = proto->decode_command(manifest, version, payload);   // caf::message
//   troupe::ask<...>: request(entity, timeout, std::move(*msg)) -> reply message
//   auto bytes = proto->encode_reply(*msg, reply);                  // back over the wire
//   // sending node again:
//   auto answer = proto->decode_reply(manifest, version, payload);  // what the asker gets
//
// The messages are exactly what entity actors handle and answer (entity_ref::tell /
// ask, and the commands handed back by stop_and_hand_back), so a decoded command
// can be enqueued at an entity and a decoded reply delivered to an asker as if
// both were local. Errors the entity replies with are not encoded here: they
// travel as troupe errors (code + message).
//
// Thread-safety: immutable; every member may be called concurrently.
#pragma once

#include "troupe/persistence/detail/message_codec.hpp"

#include <caf/message.hpp>

#include <memory>
#include <string>
#include <string_view>

namespace troupe::persistence {

class entity_protocol {
public:
  explicit entity_protocol(std::shared_ptr<const detail::message_codec> codec);

  /// The entity type ("account").
  const std::string& entity_type() const;

  /// A command from the wire as the message the entity actor handles. Errors:
  /// unknown_manifest (not a command of this type), unsupported_version,
  /// decode_failed, naming the manifest.
  expected<caf::message> decode_command(std::string_view manifest, std::uint32_t version,
                                        byte_span payload) const;

  /// A command message (decoded above, or handed back by an entity) for the wire.
  /// invalid_argument if the message is not a command of this entity type.
  expected<encoded_message> encode_command(const caf::message& command) const;

  /// The entity's reply to `command` for the wire. `reply` is the entity's answer
  /// message; an error answer is returned as that error.
  expected<encoded_message> encode_reply(const caf::message& command,
                                         const caf::message& reply) const;

  /// A reply from the wire as the message an asker of the entity receives.
  expected<caf::message> decode_reply(std::string_view manifest, std::uint32_t version,
                                      byte_span payload) const;

private:
  std::shared_ptr<const detail::message_codec> codec_;
};

/// The protocol of Entity for `codec`; fails with unknown_manifest naming the first
/// command or reply type that is not registered.
template <class Entity>
expected<std::shared_ptr<const entity_protocol>>
make_entity_protocol(std::shared_ptr<const codec_registry> codec) {
  auto c = detail::cached_message_codec<Entity>(std::move(codec));
  if (!c)
    return std::move(c).error();
  return std::make_shared<const entity_protocol>(std::move(*c));
}

} // namespace troupe::persistence
