// troupe::error: the error value every troupe API returns instead of throwing.
//
// Contract: an error is a code from `errc` plus a human-readable message that names
// what failed (the manifest, the persistence id, the config key, the peer, ...).
// Codes are stable numbers: they cross process boundaries (as CAF errors of the
// "troupe" category and in transport frames), so never renumber them.
// Thread-safety: a value type; distinct objects may be used from any thread.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace troupe {

enum class errc : std::uint8_t {
  ok = 0,
  timeout = 1,             ///< an ask or operation ran out of time
  actor_down = 2,          ///< the receiver is not running (any more)
  unexpected_message = 3,  ///< the receiver has no handler for the message
  actor_failed = 4,        ///< the handler threw; the actor was stopped/restarted
  overloaded = 5,          ///< a bounded buffer or queue is full
  node_unreachable = 6,    ///< the connection to the peer node was lost
  invalid_config = 7,      ///< unknown key, wrong type or bad value
  decode_failed = 8,       ///< bytes did not decode into the registered type
  encode_failed = 9,       ///< a value could not be encoded
  unknown_manifest = 10,   ///< no type is registered under the manifest
  unsupported_version = 11,  ///< a newer version, or an older one without upcaster
  journal_failure = 12,    ///< the journal failed; the outcome of a write is unknown
  journal_rejected = 13,   ///< the journal refused a write; nothing was stored
  sequence_conflict = 14,  ///< (persistence id, sequence nr) already written
  io_error = 15,           ///< an operating-system level I/O failure
  shutting_down = 16,      ///< the node is stopping and refuses new work
  not_found = 17,          ///< a named actor, child, key or file does not exist
  invalid_argument = 18,   ///< the caller passed a value outside the contract
  stopped = 19,            ///< the target stopped for good (no more restarts)
  restart_limit = 20,      ///< a supervisor exceeded its restart intensity
  protocol_error = 21,     ///< a peer violated the wire protocol
  unauthorized = 22,       ///< the handshake failed authentication
  oversize = 23,           ///< a message or frame exceeds the configured maximum
  internal = 24,           ///< a bug in troupe: please report it
  fenced = 25,             ///< a write under an epoch older than the journal's fence: a newer owner took over; nothing was stored
};

/// The highest code this build knows; a peer's code above it reads as `internal`.
inline constexpr errc last_errc = errc::fenced;

/// The stable lowercase name of a code, e.g. "node_unreachable".
std::string_view to_string(errc code) noexcept;

class error {
public:
  /// The "no error" value; `operator bool` is false for it.
  error() = default;
  error(errc code, std::string message) : code_(code), message_(std::move(message)) {}

  errc code() const noexcept { return code_; }
  const std::string& message() const noexcept { return message_; }

  /// True if this holds an error (code != ok).
  explicit operator bool() const noexcept { return code_ != errc::ok; }

  /// "<code>: <message>", the form used in logs and in replies to people.
  std::string to_string() const;

  friend bool operator==(const error& a, const error& b) noexcept {
    return a.code_ == b.code_ && a.message_ == b.message_;
  }

private:
  errc code_ = errc::ok;
  std::string message_;
};

/// Returns `error{code, message}`; reads well at return statements.
inline error make_error(errc code, std::string message) {
  return error{code, std::move(message)};
}

} // namespace troupe
