#include "management_routes.hpp"

#include "troupe/actors/node.hpp"
#include "troupe/membership/cluster.hpp"

#include <fmt/format.h>

namespace troupe::membership {

namespace {

using nlohmann::json;

std::string incarnation_hex(std::uint64_t x) {
  return fmt::format("{:016x}", x);
}

json address_or_null(const std::optional<node_identity>& n) {
  return n ? json(n->address.to_string()) : json(nullptr);
}

http_response ok_json(json j, int status = 200) {
  return http_response{status, "application/json", j.dump()};
}

int status_for(const error& e) {
  switch (e.code()) {
    case errc::not_found: return 404;
    case errc::invalid_argument: return 409;
    case errc::timeout: return 504;
    default: return 500;
  }
}

/// The "address" of a request body; empty body or no field: `fallback`.
expected<node_address> address_of(const std::string& body,
                                  const std::optional<node_address>& fallback) {
  json doc;
  if (!body.empty()) {
    doc = json::parse(body, nullptr, false);
    if (doc.is_discarded() || !doc.is_object())
      return error{errc::invalid_argument, "the body is not a JSON object"};
  }
  if (!doc.contains("address")) {
    if (fallback)
      return *fallback;
    return error{errc::invalid_argument, "the body needs \"address\": \"host:port\""};
  }
  if (!doc["address"].is_string())
    return error{errc::invalid_argument, "\"address\" must be a string \"host:port\""};
  return node_address::parse(doc["address"].get<std::string>());
}

http_response command(const std::shared_ptr<cluster>& c, const std::string& body,
                      bool defaults_to_self, bool leave) {
  auto addr = address_of(body, defaults_to_self ? std::optional{c->self().address} : std::nullopt);
  if (!addr)
    return json_error(400, "bad_request", addr.error().message());
  auto r = leave ? c->leave(*addr) : c->down(*addr);
  if (!r)
    return json_error(status_for(r.error()), to_string(r.error().code()), r.error().message());
  return ok_json({{"ok", true}, {"address", addr->to_string()}}, 202);
}

/// `GET /health/ready`: ready while the node is healthy (node_health: no layer
/// reported a condition it cannot recover from, such as a lost journal) and, in a
/// cluster, this node is Up. 503 otherwise, with the reasons.
http_response readiness(node& n, const std::shared_ptr<cluster>& c) {
  auto body = json::object();
  bool ready = true;
  if (c) {
    auto v = c->view();
    auto me = v.self_member();
    body["status"] = me ? std::string{to_string(me->status)} : std::string{to_string(v.phase)};
    if (auto ended = c->terminated()) {
      ready = false;
      body["reason"] = ended->reason;
    } else if (!v.self_up()) {
      ready = false;
    }
  }
  auto problems = json::array();
  for (auto& p : n.health().problems())
    problems.push_back({{"component", p.component}, {"reason", p.reason}});
  if (!problems.empty()) {
    ready = false;
    body["problems"] = problems;
  }
  body["ready"] = ready;
  return ok_json(body, ready ? 200 : 503);
}

} // namespace

json members_json(const cluster_view& v) {
  auto& g = *v.state;
  auto members = json::array();
  for (auto& m : g.members)
    members.push_back({{"address", m.node.address.to_string()},
                       {"incarnation", incarnation_hex(m.node.incarnation)},
                       {"status", to_string(m.status)},
                       {"roles", m.roles},
                       {"app_version", m.app_version},
                       {"up_number", m.up_number},
                       {"reachable", g.reachable_from(v.self, m.node)}});
  auto unreachable = json::array();
  for (auto& n : g.unreachable_as_seen_by(v.self))
    unreachable.push_back(n.address.to_string());
  auto oldest = g.oldest();
  return {{"self", v.self.address.to_string()},
          {"self_incarnation", incarnation_hex(v.self.incarnation)},
          {"phase", to_string(v.phase)},
          {"leader", address_or_null(v.leader)},
          {"oldest", oldest ? json(oldest->node.address.to_string()) : json(nullptr)},
          {"converged", v.converged},
          {"members", members},
          {"unreachable", unreachable}};
}

void add_cluster_routes(node& n, management_endpoint& ep) {
  auto c = cluster::of(n);
  ep.add_route("GET", "/health/alive", [](const std::string&) {
    return ok_json({{"alive", true}});
  });
  ep.add_route("GET", "/metrics", [&n](const std::string&) {
    return http_response{200, "text/plain; version=0.0.4", n.metrics().prometheus_text()};
  });
  ep.add_route("GET", "/health/ready", [&n, c](const std::string&) {
    return readiness(n, c);
  });
  if (!c)
    return;
  ep.add_route("GET", "/cluster/members", [c](const std::string&) {
    return ok_json(members_json(c->view()));
  });
  ep.add_route("POST", "/cluster/leave", [c](const std::string& body) {
    return command(c, body, true, true);
  });
  ep.add_route("POST", "/cluster/down", [c](const std::string& body) {
    return command(c, body, false, false);
  });
}

} // namespace troupe::membership
