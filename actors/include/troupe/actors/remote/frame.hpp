// The frame types of the transport's wire format, and the byte containers frames
// live in: what a fault-injection filter (filter.hpp) sees of a frame. The format
// itself (wire.hpp, docs/transport.md) is internal to the transport.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

namespace troupe::remote::wire {

using bytes = std::vector<std::uint8_t>;
using byte_span = std::span<const std::uint8_t>;

enum class frame_type : std::uint8_t {
  hello = 1,           ///< initiator -> acceptor: identity + nonce
  welcome = 2,         ///< acceptor -> initiator: identity + nonce + proof
  auth = 3,            ///< initiator -> acceptor: proof
  refuse = 4,          ///< either side, then close: error code + reason
  message = 16,        ///< one-way message to a named actor
  request = 17,        ///< request to a named actor, answered by a response
  response = 18,       ///< the answer to a request (values or an error)
  message_to = 19,     ///< message for one incarnation of the receiving node
  request_to = 20,     ///< request for one incarnation of the receiving node
  packet = 21,         ///< bytes for a channel of one incarnation (transport::send_packet)
  heartbeat = 32,      ///< both ways, every heartbeat interval
  goodbye = 34,        ///< orderly close, with a reason
};

/// "hello", "message", ... or "unknown".
std::string_view to_string(frame_type t) noexcept;

} // namespace troupe::remote::wire
