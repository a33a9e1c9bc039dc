#include "troupe/membership/member.hpp"

#include <algorithm>
#include <array>

namespace troupe::membership {

namespace {

constexpr std::array<std::string_view, 7> names{"joining", "weakly-up", "up",     "leaving",
                                                "exiting", "down",      "removed"};

constexpr int bit(member_status s) { return 1 << static_cast<int>(s); }

// Direct successors of each status, as a bit set (member.hpp has the table).
constexpr std::array<int, 7> successors{
  bit(member_status::weakly_up) | bit(member_status::up) | bit(member_status::leaving)
    | bit(member_status::down) | bit(member_status::removed),              // joining
  bit(member_status::up) | bit(member_status::leaving) | bit(member_status::down)
    | bit(member_status::removed),                                         // weakly_up
  bit(member_status::leaving) | bit(member_status::down) | bit(member_status::removed),  // up
  bit(member_status::exiting) | bit(member_status::down) | bit(member_status::removed),  // leaving
  bit(member_status::removed) | bit(member_status::down),                  // exiting
  bit(member_status::removed),                                             // down
  0,                                                                       // removed
};

constexpr std::array<int, 7> closure() {
  std::array<int, 7> reach{};
  for (int s = 0; s < 7; ++s)
    reach[s] = successors[s] | (1 << s);
  for (int round = 0; round < 7; ++round)
    for (int s = 0; s < 7; ++s)
      for (int t = 0; t < 7; ++t)
        if (reach[s] & (1 << t))
          reach[s] |= reach[t];
  return reach;
}

constexpr auto reachable = closure();

} // namespace

std::string_view to_string(member_status s) noexcept {
  return names[static_cast<std::size_t>(s)];
}

std::optional<member_status> member_status_from_string(std::string_view text) noexcept {
  for (std::size_t i = 0; i < names.size(); ++i)
    if (names[i] == text)
      return static_cast<member_status>(i);
  return std::nullopt;
}

bool is_allowed_transition(member_status from, member_status to) noexcept {
  return (successors[static_cast<std::size_t>(from)] & bit(to)) != 0;
}

bool can_move(member_status from, member_status to) noexcept {
  return (reachable[static_cast<std::size_t>(from)] & bit(to)) != 0;
}

int merge_precedence(member_status s) noexcept {
  // Exiting may still be downed (exiting -> down), so down ranks above it.
  switch (s) {
    case member_status::joining: return 0;
    case member_status::weakly_up: return 1;
    case member_status::up: return 2;
    case member_status::leaving: return 3;
    case member_status::exiting: return 4;
    case member_status::down: return 5;
    case member_status::removed: return 6;
  }
  return 0;
}

bool member::has_role(std::string_view role) const noexcept {
  return std::binary_search(roles.begin(), roles.end(), role);
}

bool member::is_older_than(const member& other) const noexcept {
  auto a = up_number == 0 ? UINT32_MAX : up_number;
  auto b = other.up_number == 0 ? UINT32_MAX : other.up_number;
  if (a != b)
    return a < b;
  return node < other.node;
}

} // namespace troupe::membership
