// Helpers for the membership tests: identities and states written briefly.
#pragma once

#include "troupe/membership/gossip.hpp"

#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

namespace troupe::membership::test {

/// 127.0.0.1:(7000+i), incarnation `inc` (1 unless given).
inline node_identity node_id(int i, std::uint64_t inc = 1) {
  return node_identity{node_address{"127.0.0.1", static_cast<std::uint16_t>(7000 + i)}, inc};
}

inline member up(int i, std::uint32_t up_number = 0) {
  return member{node_id(i), member_status::up,
                up_number == 0 ? static_cast<std::uint32_t>(i + 1) : up_number,
                {}, "1.0"};
}

inline member with_status(int i, member_status s) {
  auto m = up(i);
  m.status = s;
  if (s == member_status::joining || s == member_status::weakly_up)
    m.up_number = 0;
  return m;
}

/// A state holding `members`, seen by all of them.
inline gossip state_of(std::initializer_list<member> members) {
  gossip g;
  for (auto& m : members) {
    g.put(m);
    g.version.increment(m.node);
  }
  for (auto& m : g.members)
    g.mark_seen(m.node);
  return g;
}

} // namespace troupe::membership::test
