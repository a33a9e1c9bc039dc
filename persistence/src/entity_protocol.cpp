// entity_protocol (entity_protocol.hpp): the CAF side of an entity type's message
// codec: the envelopes entity actors handle and answer.
#include "troupe/persistence/entity_protocol.hpp"

#include "entity_messages.hpp"

#include "troupe/actors/caf_error.hpp"

#include <caf/error.hpp>
#include <caf/make_message.hpp>

#include <fmt/core.h>

namespace troupe::persistence {

namespace {

/// The command inside a command message, or nullptr.
const detail::command_box* command_of(const caf::message& m) {
  if (m.size() != 1 || !m.match_element<detail::command_envelope>(0))
    return nullptr;
  return m.get_as<detail::command_envelope>(0).cmd.get();
}

} // namespace

entity_protocol::entity_protocol(std::shared_ptr<const detail::message_codec> codec)
  : codec_(std::move(codec)) {
}

const std::string& entity_protocol::entity_type() const {
  return codec_->entity_type();
}

expected<caf::message> entity_protocol::decode_command(std::string_view manifest,
                                                       std::uint32_t version,
                                                       byte_span payload) const {
  auto cmd = codec_->decode_command(manifest, version, payload);
  if (!cmd)
    return std::move(cmd).error();
  return caf::make_message(detail::command_envelope{std::move(*cmd)});
}

expected<encoded_message> entity_protocol::encode_command(const caf::message& command) const {
  auto* cmd = command_of(command);
  if (cmd == nullptr)
    return error{errc::invalid_argument,
                 fmt::format("entity type '{}': the message is not an entity command",
                             entity_type())};
  return codec_->encode_command(*cmd);
}

expected<encoded_message> entity_protocol::encode_reply(const caf::message& command,
                                                        const caf::message& reply) const {
  auto* cmd = command_of(command);
  if (cmd == nullptr)
    return error{errc::invalid_argument,
                 fmt::format("entity type '{}': the message is not an entity command",
                             entity_type())};
  if (reply.size() == 1 && reply.match_element<caf::error>(0))
    return from_caf_error(reply.get_as<caf::error>(0));
  if (reply.size() != 1 || !reply.match_element<detail::reply_envelope>(0))
    return error{errc::invalid_argument,
                 fmt::format("entity type '{}': the message is not an entity reply",
                             entity_type())};
  return codec_->encode_reply(*cmd, reply.get_as<detail::reply_envelope>(0).value);
}

expected<caf::message> entity_protocol::decode_reply(std::string_view manifest,
                                                     std::uint32_t version,
                                                     byte_span payload) const {
  auto r = codec_->decode_reply(manifest, version, payload);
  if (!r)
    return std::move(r).error();
  return caf::make_message(detail::reply_envelope{std::move(*r)});
}

} // namespace troupe::persistence
