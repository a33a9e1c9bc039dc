// Node addresses and identities of the transport.
//
// A node listens on one TCP endpoint, its *address* ("host:port"). Each start of a
// node picks a fresh random *incarnation* id, so a node restarted at the same
// address is a different incarnation: peers learn that a process was replaced, not
// merely reconnected (docs/transport.md, "Failure signals").
//
// Thread-safety: value types.
#pragma once

#include "troupe/actors/expected.hpp"

#include <nlohmann/json.hpp>

#include <compare>
#include <cstdint>
#include <string>
#include <string_view>

namespace troupe::remote {

struct node_address {
  std::string host;
  std::uint16_t port = 0;

  /// "host:port" (IPv6 hosts are bracketed: "[::1]:7355").
  std::string to_string() const;

  /// Parses "host:port" or "[v6]:port"; the port must be 1..65535.
  static expected<node_address> parse(std::string_view text);

  friend auto operator<=>(const node_address&, const node_address&) = default;
  friend bool operator==(const node_address&, const node_address&) = default;
};

/// One run of a node: its address plus the incarnation id chosen at start.
struct node_identity {
  node_address address;
  std::uint64_t incarnation = 0;

  std::string to_string() const;  ///< "host:port#incarnation-in-hex"

  friend auto operator<=>(const node_identity&, const node_identity&) = default;
  friend bool operator==(const node_identity&, const node_identity&) = default;
};

/// A reference to a named actor on some node, as data: put it into messages so the
/// receiver can answer with `transport::actor_for(ref)`. With an incarnation it
/// reaches that incarnation only (JSON: "incarnation" present only when set).
struct actor_ref {
  node_address node;
  std::string name;
  std::uint64_t incarnation = 0;  ///< 0: whichever incarnation runs at `node`

  friend bool operator==(const actor_ref&, const actor_ref&) = default;
};

void to_json(nlohmann::json& j, const node_address& x);
void from_json(const nlohmann::json& j, node_address& x);
void to_json(nlohmann::json& j, const actor_ref& x);
void from_json(const nlohmann::json& j, actor_ref& x);

} // namespace troupe::remote
