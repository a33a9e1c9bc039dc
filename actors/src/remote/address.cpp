#include "troupe/actors/remote/address.hpp"

#include <fmt/core.h>

#include <charconv>

namespace troupe::remote {

std::string node_address::to_string() const {
  if (host.find(':') != std::string::npos)
    return fmt::format("[{}]:{}", host, port);
  return fmt::format("{}:{}", host, port);
}

expected<node_address> node_address::parse(std::string_view text) {
  auto bad = [&](std::string_view why) {
    return error{errc::invalid_argument,
                 fmt::format("'{}' is not a node address (host:port): {}", text, why)};
  };
  auto colon = text.rfind(':');
  if (colon == std::string_view::npos || colon == 0)
    return bad("missing host or port");
  auto host = text.substr(0, colon);
  if (host.front() == '[') {
    if (host.size() < 3 || host.back() != ']')
      return bad("unbalanced brackets");
    host = host.substr(1, host.size() - 2);
  }
  auto port_text = text.substr(colon + 1);
  unsigned port = 0;
  auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (ec != std::errc{} || end != port_text.data() + port_text.size() || port == 0 || port > 65535)
    return bad("the port must be a number within 1..65535");
  return node_address{std::string{host}, static_cast<std::uint16_t>(port)};
}

std::string node_identity::to_string() const {
  return fmt::format("{}#{:016x}", address.to_string(), incarnation);
}

void to_json(nlohmann::json& j, const node_address& x) {
  j = nlohmann::json{{"host", x.host}, {"port", x.port}};
}

void from_json(const nlohmann::json& j, node_address& x) {
  j.at("host").get_to(x.host);
  j.at("port").get_to(x.port);
}

void to_json(nlohmann::json& j, const actor_ref& x) {
  j = nlohmann::json{{"node", x.node}, {"name", x.name}};
  if (x.incarnation != 0)
    j["incarnation"] = x.incarnation;
}

void from_json(const nlohmann::json& j, actor_ref& x) {
  j.at("node").get_to(x.node);
  j.at("name").get_to(x.name);
  x.incarnation = j.value("incarnation", std::uint64_t{0});
}

} // namespace troupe::remote
