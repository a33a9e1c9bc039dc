#include "cluster_command.hpp"

#include "troupe/actors/remote/address.hpp"
#include "troupe/membership/management_client.hpp"

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cstdio>

namespace troupe::tools {

namespace {

using membership::http_response;
using membership::management_call;
using nlohmann::json;

std::string member_flags(const json& doc, const json& m) {
  std::string flags;
  auto addr = m.value("address", "");
  if (doc.value("self", "") == addr && doc.value("self_incarnation", "") == m.value("incarnation", ""))
    flags += " self";
  if (doc["leader"].is_string() && doc["leader"] == addr && m.value("status", "") != "down")
    flags += " leader";
  if (doc["oldest"].is_string() && doc["oldest"] == addr && m.value("status", "") != "down")
    flags += " oldest";
  return flags;
}

int print_members(const http_response& r) {
  auto doc = json::parse(r.body, nullptr, false);
  if (doc.is_discarded() || !doc.contains("members")) {
    std::fprintf(stderr, "troupe cluster: unexpected answer: %s\n", r.body.c_str());
    return 1;
  }
  std::printf("%-22s %-16s %-9s %-9s %-4s %-16s %s\n", "ADDRESS", "INCARNATION", "STATUS",
              "REACHABLE", "UP#", "ROLES", "");
  for (auto& m : doc["members"]) {
    std::string roles;
    for (auto& role : m["roles"])
      roles += (roles.empty() ? "" : ",") + role.get<std::string>();
    std::printf("%-22s %-16s %-9s %-9s %-4u %-16s%s\n", m.value("address", "").c_str(),
                m.value("incarnation", "").c_str(), m.value("status", "").c_str(),
                m.value("reachable", false) ? "yes" : "NO", m.value("up_number", 0u),
                roles.empty() ? "-" : roles.c_str(), member_flags(doc, m).c_str());
  }
  std::printf("converged: %s\n", doc.value("converged", false) ? "yes" : "no");
  return 0;
}

/// Per entity type: shards per region (cluster-wide), then what this node hosts.
int print_shards(const http_response& r) {
  auto doc = json::parse(r.body, nullptr, false);
  if (doc.is_discarded() || !doc.contains("types")) {
    std::fprintf(stderr, "troupe cluster: unexpected answer: %s\n", r.body.c_str());
    return 1;
  }
  if (doc["types"].empty())
    std::printf("no sharded entity types on this node\n");
  for (auto& t : doc["types"]) {
    std::printf("%s: %zu shards allocated\n", t.value("type", "").c_str(),
                t["allocations"].size());
    std::printf("  %-22s %s\n", "REGION", "SHARDS");
    for (auto& [region, count] : t["by_region"].items())
      std::printf("  %-22s %d\n", region.c_str(), count.get<int>());
    auto& local = t["local"];
    if (local.contains("region"))
      std::printf("  this node (%s): %zu shards, %zu entities, %zu buffered, %zu refused\n",
                  local.value("region", "").c_str(), local["shards"].size(),
                  local.value("entities", std::size_t{0}), local.value("buffered", std::size_t{0}),
                  local.value("refused", std::size_t{0}));
  }
  return 0;
}

} // namespace

int cluster_command(const std::vector<std::string>& args) {
  CLI::App app{"Inspect and steer a running cluster through a node's management endpoint.",
               "troupe cluster"};
  app.require_subcommand(1);
  std::string http_address;
  std::string address;
  auto add_common = [&](CLI::App* sub) {
    sub->add_option("--http", http_address, "The node's management endpoint, HOST:PORT")
      ->required();
  };
  auto members = app.add_subcommand("members", "Print the members as that node sees them");
  add_common(members);
  auto shards = app.add_subcommand("shards", "Print where the shards of each entity type live");
  add_common(shards);
  auto leave = app.add_subcommand("leave", "Ask a member to leave gracefully (default: that node)");
  add_common(leave);
  leave->add_option("--address", address, "The member to leave, HOST:PORT");
  auto down = app.add_subcommand("down", "Mark a member down (it stops; the cluster removes it)");
  add_common(down);
  down->add_option("--address", address, "The member to down, HOST:PORT")->required();
  std::vector<std::string> reversed{args.rbegin(), args.rend()};
  try {
    app.parse(reversed);
  } catch (const CLI::Success& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "troupe cluster: %s (see troupe cluster --help)\n", e.what());
    return 2;
  }
  auto at = remote::node_address::parse(http_address);
  if (!at) {
    std::fprintf(stderr, "troupe cluster: --http: %s\n", at.error().message().c_str());
    return 2;
  }
  if (!address.empty())
    if (auto a = remote::node_address::parse(address); !a) {
      std::fprintf(stderr, "troupe cluster: --address: %s\n", a.error().message().c_str());
      return 2;
    }
  auto r = members->parsed()  ? management_call(*at, "GET", "/cluster/members")
           : shards->parsed() ? management_call(*at, "GET", "/cluster/shards")
             : management_call(*at, "POST", leave->parsed() ? "/cluster/leave" : "/cluster/down",
                               address.empty() ? std::string{} : json{{"address", address}}.dump());
  if (!r) {
    std::fprintf(stderr, "troupe cluster: %s\n", r.error().message().c_str());
    return 1;
  }
  if (r->status >= 300) {
    std::fprintf(stderr, "troupe cluster: the node answered %d: %s\n", r->status, r->body.c_str());
    return 1;
  }
  if (members->parsed())
    return print_members(*r);
  if (shards->parsed())
    return print_shards(*r);
  std::printf("%s\n", r->body.c_str());
  return 0;
}

} // namespace troupe::tools
