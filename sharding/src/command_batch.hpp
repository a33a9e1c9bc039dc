// Internal: the wire format of commands a region forwards to another node's
// region, many per transport packet, and of their answers.
//
// A region that routes commands to the entities of another node collects them
// per destination while it works through its mailbox and sends them as one
// packet ("troupe.sharding.commands" on the type's region channel); the
// destination answers each command as its entity does, and its answers to one
// origin leave together the same way ("troupe.sharding.answers"). So a stream or
// many refs sending to a remote node cost one frame per burst, not one
// per command (issue 12: "many commands per transport frame").
//
// Layout (little-endian; str and bytes are a u32 length and the bytes):
//   commands: u8 version (1), u32 count, count x
//             { u64 request, u32 hops, i64 timeout_ms, str entity_id,
//               str manifest, u32 version, bytes payload }
//   answers:  u8 version (1), u32 count, count x
//             { u64 request, u8 ok, ok ? { str manifest, u32 version, bytes payload }
//                                      : { u8 errc, str message } }
// Decoding checks every length against what remains and fails with
// decode_failed naming what was wrong; it never reads past the packet.
//
// Thread-safety: pure functions.
#pragma once

#include "troupe/actors/error.hpp"
#include "troupe/actors/expected.hpp"
#include "troupe/persistence/detail/message_codec.hpp"

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace troupe::sharding::detail {

inline constexpr std::string_view commands_manifest = "troupe.sharding.commands";
inline constexpr std::string_view answers_manifest = "troupe.sharding.answers";

/// One command for an entity of the destination region.
struct forwarded_command {
  std::uint64_t request = 0;  ///< the origin's number, echoed in the answer
  std::uint32_t hops = 0;
  std::int64_t timeout_ms = 0;
  std::string entity_id;
  persistence::encoded_message command;
};

/// The answer to one forwarded command: the encoded reply or the error.
struct command_answer {
  std::uint64_t request = 0;
  error failure;  ///< none: `reply` holds the answer
  persistence::encoded_message reply;
};

/// Appends one command to a batch being built (`out` empty: starts it).
void append_command(std::vector<std::uint8_t>& out, const forwarded_command& c);
/// Appends one answer to a batch being built (`out` empty: starts it).
void append_answer(std::vector<std::uint8_t>& out, const command_answer& a);

expected<std::vector<forwarded_command>> decode_commands(std::span<const std::uint8_t> bytes);
expected<std::vector<command_answer>> decode_answers(std::span<const std::uint8_t> bytes);

} // namespace troupe::sharding::detail
