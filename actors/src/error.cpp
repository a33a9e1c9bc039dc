#include "troupe/actors/error.hpp"
#include "troupe/actors/expected.hpp"

#include <cstdio>
#include <cstdlib>

namespace troupe {

std::string_view to_string(errc code) noexcept {
  switch (code) {
    case errc::ok: return "ok";
    case errc::timeout: return "timeout";
    case errc::actor_down: return "actor_down";
    case errc::unexpected_message: return "unexpected_message";
    case errc::actor_failed: return "actor_failed";
    case errc::overloaded: return "overloaded";
    case errc::node_unreachable: return "node_unreachable";
    case errc::invalid_config: return "invalid_config";
    case errc::decode_failed: return "decode_failed";
    case errc::encode_failed: return "encode_failed";
    case errc::unknown_manifest: return "unknown_manifest";
    case errc::unsupported_version: return "unsupported_version";
    case errc::journal_failure: return "journal_failure";
    case errc::journal_rejected: return "journal_rejected";
    case errc::sequence_conflict: return "sequence_conflict";
    case errc::io_error: return "io_error";
    case errc::shutting_down: return "shutting_down";
    case errc::not_found: return "not_found";
    case errc::invalid_argument: return "invalid_argument";
    case errc::stopped: return "stopped";
    case errc::restart_limit: return "restart_limit";
    case errc::protocol_error: return "protocol_error";
    case errc::unauthorized: return "unauthorized";
    case errc::oversize: return "oversize";
    case errc::internal: return "internal";
    case errc::fenced: return "fenced";
  }
  return "unknown_error_code";
}

std::string error::to_string() const {
  std::string result{troupe::to_string(code_)};
  if (!message_.empty()) {
    result += ": ";
    result += message_;
  }
  return result;
}

namespace detail {

void expected_bad_access(const error* held) {
  if (held)
    std::fprintf(stderr, "troupe: value() called on an expected holding an error: %s\n",
                 held->to_string().c_str());
  else
    std::fprintf(stderr, "troupe: error() called on an expected holding a value\n");
  std::abort();
}

} // namespace detail
} // namespace troupe
