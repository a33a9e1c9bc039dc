#include "troupe/sharding/protocol.hpp"
#include "troupe/actors/overloaded.hpp"

#include "troupe/sharding/coordinator_core.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <array>

namespace troupe::sharding {

namespace {

using nlohmann::json;

constexpr std::array<std::string_view, 11> names{
  "register_region",   "get_shard_home",    "begin_hand_off_ack", "shard_stopped",
  "graceful_shutdown", "region_registered", "coordinator_hello",  "shard_home",
  "begin_hand_off",    "hand_off",          "hand_off_cancelled"};

json identity_json(const node_identity& n) {
  return json::array({n.address.host, n.address.port, n.incarnation});
}

node_identity identity_from(const json& j) {
  return node_identity{node_address{j.at(0).get<std::string>(), j.at(1).get<std::uint16_t>()},
                       j.at(2).get<std::uint64_t>()};
}

json body_json(const sharding_message& m) {
  return std::visit(overloaded{
                      [](const register_region& x) {
                        auto hosted = json::array();
                        for (auto& [shard, epoch] : x.hosted)
                          hosted.push_back(json::array({shard, epoch}));
                        return json{{"proxy", x.proxy_only}, {"hosted", hosted}};
                      },
                      [](const get_shard_home& x) { return json{{"s", x.shard}}; },
                      [](const begin_hand_off_ack& x) { return json{{"s", x.shard}}; },
                      [](const shard_stopped& x) { return json{{"s", x.shard}, {"e", x.epoch}}; },
                      [](const graceful_shutdown&) { return json::object(); },
                      [](const region_registered&) { return json::object(); },
                      [](const coordinator_hello&) { return json::object(); },
                      [](const shard_home& x) {
                        return json{{"s", x.shard}, {"r", identity_json(x.region)}, {"e", x.epoch}};
                      },
                      [](const begin_hand_off& x) { return json{{"s", x.shard}}; },
                      [](const hand_off& x) { return json{{"s", x.shard}, {"e", x.epoch}}; },
                      [](const hand_off_cancelled& x) { return json{{"s", x.shard}}; },
                    },
                    m);
}

sharding_message body_from(std::string_view kind, const json& b) {
  auto shard = [&] { return b.at("s").get<shard_id>(); };
  if (kind == "register_region") {
    register_region r{b.at("proxy").get<bool>(), {}};
    for (auto& h : b.at("hosted"))
      r.hosted.emplace_back(h.at(0).get<shard_id>(), h.at(1).get<std::uint64_t>());
    return r;
  }
  if (kind == "get_shard_home")
    return get_shard_home{shard()};
  if (kind == "begin_hand_off_ack")
    return begin_hand_off_ack{shard()};
  if (kind == "shard_stopped")
    return shard_stopped{shard(), b.at("e").get<std::uint64_t>()};
  if (kind == "graceful_shutdown")
    return graceful_shutdown{};
  if (kind == "region_registered")
    return region_registered{};
  if (kind == "coordinator_hello")
    return coordinator_hello{};
  if (kind == "shard_home")
    return shard_home{shard(), identity_from(b.at("r")), b.at("e").get<std::uint64_t>()};
  if (kind == "begin_hand_off")
    return begin_hand_off{shard()};
  if (kind == "hand_off")
    return hand_off{shard(), b.at("e").get<std::uint64_t>()};
  if (kind == "hand_off_cancelled")
    return hand_off_cancelled{shard()};
  throw std::invalid_argument(fmt::format("unknown sharding message '{}'", kind));
}

} // namespace

std::string_view message_name(const sharding_message& m) noexcept {
  return names[m.index()];
}

std::vector<std::uint8_t> encode(const sharding_envelope& e) {
  return json::to_cbor(json{{"f", identity_json(e.from)},
                            {"t", identity_json(e.to)},
                            {"k", message_name(e.message)},
                            {"b", body_json(e.message)}});
}

expected<sharding_envelope> decode_sharding_envelope(const std::uint8_t* data, std::size_t size) {
  try {
    auto j = json::from_cbor(data, data + size);
    sharding_envelope e;
    e.from = identity_from(j.at("f"));
    e.to = identity_from(j.at("t"));
    e.message = body_from(j.at("k").get<std::string>(), j.at("b"));
    return e;
  } catch (const std::exception& ex) {
    return error{errc::decode_failed, fmt::format("sharding message: {}", ex.what())};
  }
}

std::vector<std::uint8_t> encode(const coordinator_event& e) {
  if (auto* a = std::get_if<shard_allocated>(&e))
    return json::to_cbor(
      json{{"k", "allocated"}, {"s", a->shard}, {"r", identity_json(a->region)}, {"e", a->epoch}});
  return json::to_cbor(json{{"k", "released"}, {"s", std::get<shard_released>(e).shard}});
}

expected<coordinator_event> decode_coordinator_event(const std::uint8_t* data, std::size_t size) {
  try {
    auto j = json::from_cbor(data, data + size);
    auto kind = j.at("k").get<std::string>();
    auto shard = j.at("s").get<shard_id>();
    if (kind == "allocated")
      return coordinator_event{
        shard_allocated{shard, identity_from(j.at("r")), j.at("e").get<std::uint64_t>()}};
    if (kind == "released")
      return coordinator_event{shard_released{shard}};
    return error{errc::decode_failed, fmt::format("coordinator event: unknown kind '{}'", kind)};
  } catch (const std::exception& ex) {
    return error{errc::decode_failed, fmt::format("coordinator event: {}", ex.what())};
  }
}

} // namespace troupe::sharding
