#include "troupe/sharding/entity_protocol.hpp"

namespace troupe::sharding::detail {

expected<void> check_registered(const codec_registry& codec, std::type_index type,
                                std::string_view entity_type, std::string_view role) {
  if (codec.find(type) != nullptr)
    return {};
  return error{errc::unknown_manifest,
               fmt::format("entity type '{}': the {} type {} is not registered in the codec "
                           "(codec_registry::add); sharding carries it between nodes",
                           entity_type, role, persistence::detail::type_name(type))};
}

error wrong_manifest(std::string_view entity_type, std::string_view what,
                     std::string_view manifest) {
  return error{errc::unknown_manifest,
               fmt::format("entity type '{}' has no {} type with manifest '{}'", entity_type,
                           what, manifest)};
}

} // namespace troupe::sharding::detail
