// troupe::membership::management_endpoint: the node's HTTP management endpoint
// (Boost.Beast), for operators, scripts and orchestrators.
//
//   GET  /cluster/members   members as this node sees them (JSON)
//   POST /cluster/leave     {"address": "host:port"} (default: this node)
//   POST /cluster/down      {"address": "host:port"}
//   GET  /health/alive      200 while the process serves requests
//   GET  /health/ready      200 while this node is up in the cluster (or has no
//                           cluster) and healthy (troupe::node_health), else 503
//                           with the reasons
//   GET  /metrics           the node's metrics, Prometheus text format
//
// Upper layers add their routes (sharding adds GET /cluster/shards). Errors are
// JSON ({"error": "...", "code": "..."}) with 4xx for bad requests (unknown path
// 404, wrong method 405, bad body 400) and 5xx when the node cannot answer.
// Requests are small and bounded: a header or body over 64 KiB, or one that takes
// longer than 10 s to arrive, closes its connection; at most 64 connections are
// served at once. It binds to 127.0.0.1 unless management.http.host says
// otherwise, and serves on its own thread.
//
// Thread-safety: add_route before traffic; stop() from any thread.
#pragma once

#include "troupe/actors/expected.hpp"

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace troupe {
class node;
class config_schema;
} // namespace troupe

namespace troupe::membership {

struct http_response {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
};

/// A route's handler: the request body in, the response out. Runs on the
/// endpoint's thread; it may block briefly (it asks actors with a timeout).
using http_handler = std::function<http_response(const std::string& body)>;

/// {"error": what, "code": code} with `status`.
http_response json_error(int status, std::string_view code, std::string_view what);

class management_endpoint {
public:
  /// Binds management.http.host:management.http.port (0 picks a port) and serves
  /// the cluster routes of node `n` (whose cluster must run). The node's shutdown
  /// stops it.
  static expected<std::shared_ptr<management_endpoint>> start(node& n);
  static std::shared_ptr<management_endpoint> of(node& n);

  ~management_endpoint();
  management_endpoint(const management_endpoint&) = delete;
  management_endpoint& operator=(const management_endpoint&) = delete;

  std::uint16_t port() const noexcept;
  /// Adds (or replaces) a route; `method` is "GET" or "POST".
  void add_route(std::string method, std::string path, http_handler handler);
  void stop();

  struct state;

private:
  explicit management_endpoint(std::shared_ptr<state> s) : state_(std::move(s)) {}
  std::shared_ptr<state> state_;
};

/// Declares the management.http.* keys.
void add_management_config_keys(config_schema& schema);

} // namespace troupe::membership
