// Shared by the remote tests and their helper programs: message types, and a node
// with a started transport.
#pragma once

#include "troupe/actors/node.hpp"
#include "troupe/actors/remote/message_types.hpp"
#include "troupe/actors/remote/transport.hpp"

#include <caf/allowed_unsafe_message_type.hpp>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace troupe::test {

struct ping {
  std::int64_t n = 0;
  std::string text;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(ping, n, text)

struct pong {
  std::int64_t n = 0;
  std::string text;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(pong, n, text)

/// One message of a sequence; the sink checks that `seq` grows by one per sender.
struct numbered {
  std::string sender;
  std::uint64_t seq = 0;
  std::string payload;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(numbered, sender, seq, payload)

/// Asks a sink what it saw.
struct sink_stats_request {
  bool unused = false;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(sink_stats_request, unused)

struct sink_stats {
  std::uint64_t received = 0;
  std::uint64_t out_of_order = 0;  ///< messages whose seq was not the sender's last + 1
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(sink_stats, received, out_of_order)

/// Asks a relay to send `what` to `target` (exercises the reverse direction).
struct relay_request {
  remote::actor_ref target;
  numbered what;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(relay_request, target, what)

/// Registers the types above for remote messaging on `n`.
inline expected<void> add_test_message_types(node& n) {
  for (auto r : {remote::add_message_type<ping>(n, "test.ping"),
                 remote::add_message_type<pong>(n, "test.pong"),
                 remote::add_message_type<numbered>(n, "test.numbered"),
                 remote::add_message_type<sink_stats_request>(n, "test.sink-stats-request"),
                 remote::add_message_type<sink_stats>(n, "test.sink-stats"),
                 remote::add_message_type<relay_request>(n, "test.relay")})
    if (!r)
      return r;
  return {};
}

} // namespace troupe::test

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::test::ping)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::test::pong)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::test::numbered)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::test::sink_stats_request)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::test::sink_stats)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::test::relay_request)
