#include "troupe/membership/protocol.hpp"
#include "troupe/actors/overloaded.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <array>

namespace troupe::membership {

namespace {

using nlohmann::json;

constexpr std::array<std::string_view, 10> names{
  "init_join", "init_join_ack", "init_join_nack", "join_request", "welcome",
  "join_refused", "gossip_state", "gossip_status", "heartbeat", "heartbeat_response"};

json identity_json(const node_identity& n) {
  return json::array({n.address.host, n.address.port, n.incarnation});
}

node_identity identity_from(const json& j) {
  node_identity n;
  n.address.host = j.at(0).get<std::string>();
  n.address.port = j.at(1).get<std::uint16_t>();
  n.incarnation = j.at(2).get<std::uint64_t>();
  return n;
}

json identities_json(const std::vector<node_identity>& xs) {
  auto j = json::array();
  for (auto& x : xs)
    j.push_back(identity_json(x));
  return j;
}

std::vector<node_identity> identities_from(const json& j) {
  std::vector<node_identity> result;
  for (auto& x : j)
    result.push_back(identity_from(x));
  return result;
}

json clock_json(const vector_clock& v) {
  auto j = json::array();
  for (auto& [node, counter] : v.entries())
    j.push_back(json::array({identity_json(node), counter}));
  return j;
}

vector_clock clock_from(const json& j) {
  std::vector<vector_clock::entry> entries;
  for (auto& e : j)
    entries.emplace_back(identity_from(e.at(0)), e.at(1).get<std::uint64_t>());
  return vector_clock::from_entries(std::move(entries));
}

json gossip_json(const gossip& g) {
  auto members = json::array();
  for (auto& m : g.members)
    members.push_back(json::array({identity_json(m.node), static_cast<int>(m.status), m.up_number,
                                   m.roles, m.app_version}));
  auto rows = json::array();
  for (auto& r : g.overview.rows())
    rows.push_back(json::array({identity_json(r.observer), r.version, identities_json(r.unreachable)}));
  auto tombstones = json::array();
  for (auto& t : g.tombstones)
    tombstones.push_back(json::array({identity_json(t.node), t.removed_at.count()}));
  return json{{"m", members},
              {"r", rows},
              {"s", identities_json(g.seen)},
              {"v", clock_json(g.version)},
              {"x", tombstones}};
}

std::shared_ptr<const gossip> gossip_from(const json& j) {
  gossip g;
  for (auto& m : j.at("m")) {
    auto status = m.at(1).get<int>();
    if (status < 0 || status > static_cast<int>(member_status::down))
      throw std::invalid_argument(fmt::format("member status {} out of range", status));
    g.put(member{identity_from(m.at(0)), static_cast<member_status>(status),
                 m.at(2).get<std::uint32_t>(), m.at(3).get<std::vector<std::string>>(),
                 m.at(4).get<std::string>()});
  }
  std::vector<reachability::row> rows;
  for (auto& r : j.at("r"))
    rows.push_back(reachability::row{identity_from(r.at(0)), r.at(1).get<std::uint64_t>(),
                                     identities_from(r.at(2))});
  g.overview = reachability::from_rows(std::move(rows));
  for (auto& n : identities_from(j.at("s")))
    g.mark_seen(n);
  g.version = clock_from(j.at("v"));
  for (auto& t : j.at("x"))
    g.tombstones.push_back(tombstone{identity_from(t.at(0)), timestamp{t.at(1).get<std::int64_t>()}});
  std::sort(g.tombstones.begin(), g.tombstones.end(),
            [](const tombstone& a, const tombstone& b) { return a.node < b.node; });
  return std::make_shared<const gossip>(std::move(g));
}

json body_json(const protocol_message& m) {
  return std::visit(
    overloaded{
      [](const init_join& x) { return json{{"cluster", x.cluster_name}, {"member", x.from_member}}; },
      [](const init_join_ack& x) { return json{{"rank", x.seed_rank}}; },
      [](const init_join_nack&) { return json::object(); },
      [](const join_request& x) {
        auto compat = json::array();
        for (auto& [k, v] : x.compatibility)
          compat.push_back(json::array({k, v}));
        return json{{"cluster", x.cluster_name},
                    {"roles", x.roles},
                    {"version", x.app_version},
                    {"compat", compat}};
      },
      [](const welcome& x) { return gossip_json(*x.state); },
      [](const join_refused& x) { return json{{"reason", x.reason}}; },
      [](const gossip_state& x) { return gossip_json(*x.state); },
      [](const gossip_status& x) {
        return json{{"v", clock_json(x.version)}, {"s", identities_json(x.seen)}};
      },
      [](const heartbeat& x) { return json{{"n", x.sequence}}; },
      [](const heartbeat_response& x) { return json{{"n", x.sequence}}; },
    },
    m);
}

protocol_message body_from(std::string_view kind, const json& b) {
  if (kind == "init_join")
    return init_join{b.at("cluster").get<std::string>(), b.value("member", false)};
  if (kind == "init_join_ack")
    return init_join_ack{b.at("rank").get<std::uint64_t>()};
  if (kind == "init_join_nack")
    return init_join_nack{};
  if (kind == "join_request") {
    join_request x{b.at("cluster").get<std::string>(), b.at("roles").get<std::vector<std::string>>(),
                   b.at("version").get<std::string>(), {}};
    for (auto& kv : b.at("compat"))
      x.compatibility.emplace_back(kv.at(0).get<std::string>(), kv.at(1).get<std::string>());
    std::sort(x.compatibility.begin(), x.compatibility.end());
    return x;
  }
  if (kind == "welcome")
    return welcome{gossip_from(b)};
  if (kind == "join_refused")
    return join_refused{b.at("reason").get<std::string>()};
  if (kind == "gossip_state")
    return gossip_state{gossip_from(b)};
  if (kind == "gossip_status") {
    auto seen = identities_from(b.at("s"));
    std::sort(seen.begin(), seen.end());
    seen.erase(std::unique(seen.begin(), seen.end()), seen.end());
    return gossip_status{clock_from(b.at("v")), std::move(seen)};
  }
  if (kind == "heartbeat")
    return heartbeat{b.at("n").get<std::uint64_t>()};
  if (kind == "heartbeat_response")
    return heartbeat_response{b.at("n").get<std::uint64_t>()};
  throw std::invalid_argument(fmt::format("unknown membership message '{}'", kind));
}

} // namespace

std::string_view message_name(const protocol_message& m) noexcept {
  return names[m.index()];
}

std::vector<std::uint8_t> encode(const envelope& e) {
  json j{{"f", identity_json(e.from)},
         {"t", identity_json(e.to)},
         {"k", message_name(e.message)},
         {"b", body_json(e.message)}};
  return json::to_cbor(j);
}

expected<envelope> decode_envelope(const std::uint8_t* data, std::size_t size) {
  try {
    auto j = json::from_cbor(data, data + size);
    envelope e;
    e.from = identity_from(j.at("f"));
    e.to = identity_from(j.at("t"));
    e.message = body_from(j.at("k").get<std::string>(), j.at("b"));
    return e;
  } catch (const std::exception& ex) {
    return error{errc::decode_failed, fmt::format("membership message: {}", ex.what())};
  }
}

} // namespace troupe::membership
