#include "singleton_protocol.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace troupe::membership::detail {

namespace {

using nlohmann::json;

json identity_json(const node_identity& n) {
  return json::array({n.address.host, n.address.port, n.incarnation});
}

node_identity identity_from(const json& j) {
  return node_identity{node_address{j.at(0).get<std::string>(), j.at(1).get<std::uint16_t>()},
                       j.at(2).get<std::uint64_t>()};
}

} // namespace

std::string channel_of(const std::string& singleton) {
  return "troupe.singleton-handover." + singleton;
}

std::string manager_name(const std::string& singleton) {
  return "troupe.singleton-manager." + singleton;
}

std::string instance_name(const std::string& singleton) {
  return "troupe.singleton." + singleton;
}

std::vector<std::uint8_t> encode(const singleton_envelope& e) {
  return json::to_cbor(json{{"f", identity_json(e.from)},
                            {"t", identity_json(e.to)},
                            {"s", e.singleton},
                            {"k", e.message.index()}});
}

expected<singleton_envelope> decode(const std::vector<std::uint8_t>& bytes) {
  try {
    auto j = json::from_cbor(bytes);
    singleton_envelope e;
    e.from = identity_from(j.at("f"));
    e.to = identity_from(j.at("t"));
    e.singleton = j.at("s").get<std::string>();
    switch (j.at("k").get<int>()) {
      case 0: e.message = hand_over_to_me{}; break;
      case 1: e.message = hand_over_done{}; break;
      case 2: e.message = take_over_from_me{}; break;
      default: return error{errc::decode_failed, "singleton message: unknown kind"};
    }
    return e;
  } catch (const std::exception& ex) {
    return error{errc::decode_failed, fmt::format("singleton message: {}", ex.what())};
  }
}

} // namespace troupe::membership::detail
