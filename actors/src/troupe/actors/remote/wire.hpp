// The transport's wire format: frames, their bodies, and the handshake messages.
// docs/transport.md describes the byte layout; this is the one implementation of it.
//
// Every frame is
//
//   u32 length (big-endian) | u8 type | body (length - 1 bytes)
//
// `length` counts the type byte and the body, so it is never 0. Integers inside
// bodies are big-endian fixed-width or unsigned LEB128 varints ("varint"); strings
// and byte strings are a varint length followed by the bytes.
//
// Decoding never trusts the input: every length is checked against what is left,
// varints longer than 10 bytes or overflowing 64 bits are errors, and a decoder
// either returns a view into the input or an error naming what was wrong. Views
// point into the caller's buffer and live as long as it does.
//
// Internal (not installed): users see frames only through frame.hpp (the fault
// injection filter). This code uses neither CAF nor Asio, so it compiles fast and the fuzzer
// (tests/remote/fuzz) links it alone.
// Thread-safety: pure functions over caller-owned buffers.
#pragma once

#include "troupe/actors/expected.hpp"
#include "troupe/actors/remote/frame.hpp"

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace troupe::remote::wire {


inline constexpr std::uint32_t magic = 0x54525045;  // "TRPE"
inline constexpr std::uint16_t protocol_version = 1;
inline constexpr std::size_t length_size = 4;
inline constexpr std::size_t header_size = 5;  // length + type
inline constexpr std::size_t nonce_size = 32;
inline constexpr std::size_t mac_size = 32;
/// Largest handshake frame a node reads before the peer is authenticated.
inline constexpr std::uint32_t max_handshake_frame = 1024;
/// Most values one message may carry (CAF messages are tuples).
inline constexpr std::size_t max_elements = 16;
/// Smallest configurable maximum frame size.
inline constexpr std::uint32_t min_frame_limit = 1024;


struct frame_view {
  frame_type type;
  byte_span body;
};

/// Result of looking for a frame at the start of a byte stream.
enum class scan_status { frame, need_more, error };

/// Looks at the start of `data`. On `frame`, `out` views the frame and `consumed`
/// is its total size (header included). On `need_more`, `consumed` is the total
/// size of the frame if its header is complete (so the caller can make room), or
/// 0. On `error`, `err` says why (zero length, or a length above `max_frame`,
/// errc::oversize). Unknown frame types are not an error here: the connection's
/// state decides.
scan_status scan_frame(byte_span data, std::uint32_t max_frame, frame_view& out,
                       std::size_t& consumed, error& err);

/// Calls f(frame) for each frame of `frames`: complete frames back to back (the
/// engine's queues and batches), each passed whole, header included.
template <class F>
void for_each_frame(byte_span frames, F f) {
  while (!frames.empty()) {
    auto len = length_size
               + ((std::size_t{frames[0]} << 24) | (std::size_t{frames[1]} << 16)
                  | (std::size_t{frames[2]} << 8) | frames[3]);
    f(frames.first(len));
    frames = frames.subspan(len);
  }
}

/// The type of a complete frame (header included).
inline frame_type type_of(byte_span frame) {
  return static_cast<frame_type>(frame[length_size]);
}

// -- building frames ---------------------------------------------------------------

/// Appends a frame header with a placeholder length; returns its offset for
/// end_frame.
std::size_t begin_frame(bytes& out, frame_type type);
/// Patches the length of the frame started at `offset`; returns the frame's total
/// size.
std::size_t end_frame(bytes& out, std::size_t offset);

void put_u8(bytes& out, std::uint8_t x);
void put_u16(bytes& out, std::uint16_t x);
void put_u32(bytes& out, std::uint32_t x);
void put_u64(bytes& out, std::uint64_t x);
void put_varint(bytes& out, std::uint64_t x);
void put_string(bytes& out, std::string_view x);

/// Reads primitives from a body; every getter fails (returns false and keeps the
/// first error) once the input is exhausted or malformed.
class reader {
public:
  explicit reader(byte_span in) : in_(in) {}

  bool u8(std::uint8_t& x);
  bool u16(std::uint16_t& x);
  bool u32(std::uint32_t& x);
  bool u64(std::uint64_t& x);
  bool varint(std::uint64_t& x);
  bool string(std::string_view& x);
  bool byte_string(byte_span& x);
  bool raw(std::size_t n, byte_span& x);

  std::size_t remaining() const noexcept { return in_.size() - pos_; }
  std::size_t position() const noexcept { return pos_; }
  bool ok() const noexcept { return !failed_; }
  /// Fails unless everything was consumed.
  bool at_end();
  /// What went wrong first ("truncated", "varint too long", ...), or "" if ok.
  const std::string& what() const noexcept { return what_; }

private:
  bool fail(std::string why);

  byte_span in_;
  std::size_t pos_ = 0;
  bool failed_ = false;
  std::string what_;
};

// -- application frames -------------------------------------------------------------

/// One value of a message: its codec manifest and version plus the encoded bytes.
struct element_view {
  std::string_view manifest;
  std::uint32_t version = 0;
  byte_span payload;
};

/// Body of `message` and `request` frames:
///   message: str target | elements
///   request: varint correlation (1..2^60-1) | str target | elements
///   elements: u8 count (<= max_elements) | count x (str manifest | varint version |
///             u32 payload length | payload)
/// `message_to` and `request_to` put `u64 incarnation` (not 0) before the same body:
/// the receiver refuses them unless it is that incarnation.
struct message_view {
  std::uint64_t incarnation = 0;  ///< 0: whichever incarnation receives it
  std::uint64_t correlation = 0;  ///< 0 for one-way messages
  std::string_view target;
  std::array<element_view, max_elements> elements;
  std::size_t count = 0;
};

/// Body of `response` frames:
///   varint correlation | u8 status | status 0: elements | status 1: u8 errc | str text
struct response_view {
  std::uint64_t correlation = 0;
  bool is_error = false;
  std::array<element_view, max_elements> elements;
  std::size_t count = 0;
  std::uint8_t error_code = 0;
  std::string_view error_text;
};

/// Largest correlation id (CAF keeps request ids in 60 bits).
inline constexpr std::uint64_t max_correlation = (std::uint64_t{1} << 60) - 1;

expected<void> decode_message(frame_view f, message_view& out);
expected<void> decode_response(frame_view f, response_view& out);

/// Appends the head of a message/request frame (before its elements); returns the
/// frame offset for end_frame. `correlation` 0 builds a one-way message;
/// `incarnation` other than 0 builds message_to / request_to.
std::size_t begin_message(bytes& out, std::uint64_t correlation, std::string_view target,
                          std::uint8_t count, std::uint64_t incarnation = 0);
/// Appends the head of a response frame carrying `count` values.
std::size_t begin_response(bytes& out, std::uint64_t correlation, std::uint8_t count);
/// Appends a complete error response frame.
void put_error_response(bytes& out, std::uint64_t correlation, std::uint8_t code,
                        std::string_view text);
/// Appends the head of one element whose payload the caller appends next; returns
/// the offset of its u32 payload length, patched by end_element.
std::size_t begin_element(bytes& out, std::string_view manifest, std::uint32_t version);
/// Patches the payload length of the element started at `offset`.
void end_element(bytes& out, std::size_t offset);

/// Body of `packet` frames:
///   u64 incarnation (0: any) | str channel | one element (str manifest | varint
///   version | u32 payload length | payload)
struct packet_view {
  std::uint64_t incarnation = 0;
  std::string_view channel;
  element_view element;
};

expected<void> decode_packet(frame_view f, packet_view& out);
void put_packet(bytes& out, std::uint64_t incarnation, std::string_view channel,
                std::string_view manifest, std::uint32_t version, byte_span payload);

/// message, request, message_to, request_to.
constexpr bool is_message(frame_type t) noexcept {
  return t == frame_type::message || t == frame_type::request || t == frame_type::message_to
         || t == frame_type::request_to;
}

// -- handshake frames ---------------------------------------------------------------

/// Identity part of `hello` and `welcome`:
///   u32 magic | u16 protocol version | u64 incarnation | u32 max frame | u16 port |
///   str host | str cluster | 32-byte nonce
/// `welcome` appends: u8 mac length (0 or 32) | mac.
struct hello_msg {
  std::uint32_t magic = wire::magic;
  std::uint16_t version = protocol_version;
  std::uint64_t incarnation = 0;
  std::uint32_t max_frame = 0;
  std::uint16_t port = 0;
  std::string host;
  std::string cluster;
  std::array<std::uint8_t, nonce_size> nonce{};
  std::vector<std::uint8_t> mac;  ///< welcome only
};

/// Reads only magic and version (the fields every protocol version keeps first), so
/// a peer speaking another version is refused with that reason, not a parse error.
expected<void> peek_version(byte_span body, std::uint32_t& magic, std::uint16_t& version);
expected<hello_msg> decode_hello(frame_view f);
/// Appends a hello or welcome frame; returns the body's byte range within `out` that
/// the MAC covers (for welcome: everything before the mac length byte).
std::pair<std::size_t, std::size_t> put_hello(bytes& out, frame_type type, const hello_msg& m);

/// auth: u8 mac length (0 or 32) | mac
expected<std::vector<std::uint8_t>> decode_auth(frame_view f);
void put_auth(bytes& out, byte_span mac);

/// refuse: u8 errc | str reason
struct refuse_msg {
  std::uint8_t code = 0;
  std::string reason;
};
expected<refuse_msg> decode_refuse(frame_view f);
void put_refuse(bytes& out, std::uint8_t code, std::string_view reason);

/// goodbye: u8 node stopping (0: only this connection closes, 1: the node stops) |
/// str reason
struct goodbye_msg {
  bool node_stopping = false;
  std::string reason;
};
expected<goodbye_msg> decode_goodbye(frame_view f);
void put_goodbye(bytes& out, bool node_stopping, std::string_view reason);
/// heartbeat has an empty body.
void put_empty(bytes& out, frame_type type);

} // namespace troupe::remote::wire
