// Internal: how singleton managers and proxies talk over the transport.
#pragma once

#include "troupe/actors/expected.hpp"
#include "troupe/membership/singleton_core.hpp"

#include <caf/atom.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace troupe::membership::detail {

using identify_atom = caf::atom_constant<caf::atom("s_ident")>;
using tick_singleton_atom = caf::atom_constant<caf::atom("s_tick")>;

inline constexpr std::string_view manifest = "troupe.singleton.envelope";

/// Packet channel of one singleton's managers.
std::string channel_of(const std::string& singleton);
/// Transport names of a singleton's manager and instance.
std::string manager_name(const std::string& singleton);
std::string instance_name(const std::string& singleton);

std::vector<std::uint8_t> encode(const singleton_envelope& e);
expected<singleton_envelope> decode(const std::vector<std::uint8_t>& bytes);

} // namespace troupe::membership::detail
