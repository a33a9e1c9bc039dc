// What a sensor node reports on its management endpoint, and the calls that read
// it (the demo's and the tests'):
//
//   GET  /sensors/ingest       the TCP ingest's counters (ingest_status, JSON)
//   POST /sensors/aggregates   body: a JSON array of sensor ids; answer: a JSON
//                              object id -> aggregate, asked of the sensors
//                              wherever they live
#pragma once

#include "sensor.hpp"

#include "troupe/membership/management_client.hpp"
#include "troupe/streams/line_sources.hpp"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace sensors {

/// The TCP ingest of one node, read at one instant. Element counts are
/// readings; `tcp` is the TCP source's own counters (lines, bytes, connections).
struct ingest_status {
  std::string listen;               ///< "host:port", "" on a node without ingest
  std::string stream = "none";      ///< "running", "completed" or "failed: <error>"
  std::uint64_t malformed = 0;      ///< lines skipped as malformed
  std::uint64_t readings = 0;       ///< readings handed to the entity sink
  std::uint64_t acknowledged = 0;   ///< readings the sensors acknowledged
  std::uint64_t rejected = 0;       ///< readings a sensor refused (logged, dropped)
  std::uint64_t in_flight = 0;      ///< readings held by the sink now
  std::uint64_t max_in_flight = 0;  ///< the most it ever held
  std::uint64_t parallelism = 0;    ///< the bound of in_flight (sensor.parallelism)
  std::uint64_t buffered_bytes_limit = 0;     ///< sensor.buffered-bytes
  std::uint64_t connection_buffer_limit = 0;  ///< sensor.connection-buffer
  troupe::streams::tcp_line_stats tcp;
};

} // namespace sensors

template <>
struct nlohmann::adl_serializer<troupe::streams::tcp_line_stats> {
  using stats = troupe::streams::tcp_line_stats;
  static void to_json(json& j, const stats& s) {
    j = json{{"accepted", s.accepted}, {"open", s.open}, {"received_bytes", s.received_bytes},
             {"lines", s.lines}, {"buffered_bytes", s.buffered_bytes},
             {"max_buffered_bytes", s.max_buffered_bytes},
             {"max_connection_buffered", s.max_connection_buffered},
             {"paused_reads", s.paused_reads}, {"closed_oversize", s.closed_oversize}};
  }
  static void from_json(const json& j, stats& s) {
    j.at("accepted").get_to(s.accepted);
    j.at("open").get_to(s.open);
    j.at("received_bytes").get_to(s.received_bytes);
    j.at("lines").get_to(s.lines);
    j.at("buffered_bytes").get_to(s.buffered_bytes);
    j.at("max_buffered_bytes").get_to(s.max_buffered_bytes);
    j.at("max_connection_buffered").get_to(s.max_connection_buffered);
    j.at("paused_reads").get_to(s.paused_reads);
    j.at("closed_oversize").get_to(s.closed_oversize);
  }
};

namespace sensors {

NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(ingest_status, listen, stream, malformed, readings, acknowledged,
                                   rejected, in_flight, max_in_flight, parallelism,
                                   buffered_bytes_limit, connection_buffer_limit, tcp)

namespace detail {

/// Calls a route of the node whose management endpoint is 127.0.0.1:http_port
/// and decodes its JSON answer into T.
template <class T>
troupe::expected<T> call(std::uint16_t http_port, const std::string& method, const std::string& path,
                         const std::string& body = {}) {
  auto r = troupe::membership::management_call({"127.0.0.1", http_port}, method, path, body,
                                                std::chrono::seconds{10});
  if (!r)
    return std::move(r).error();
  auto what = [&] { return method + " " + path + " on 127.0.0.1:" + std::to_string(http_port); };
  if (r->status != 200)
    return troupe::error{troupe::errc::io_error,
                         what() + ": HTTP " + std::to_string(r->status) + " " + r->body};
  auto j = nlohmann::json::parse(r->body, nullptr, false);
  if (j.is_discarded())
    return troupe::error{troupe::errc::io_error, what() + ": not JSON: " + r->body};
  try {
    return j.get<T>();
  } catch (const nlohmann::json::exception& e) {
    return troupe::error{troupe::errc::io_error, what() + ": " + e.what()};
  }
}

} // namespace detail

inline troupe::expected<ingest_status> fetch_status(std::uint16_t http_port) {
  return detail::call<ingest_status>(http_port, "GET", "/sensors/ingest");
}

/// The aggregates of `ids`, asked through the node at `http_port`.
inline troupe::expected<std::map<std::string, aggregate>>
fetch_aggregates(std::uint16_t http_port, const std::vector<std::string>& ids) {
  return detail::call<std::map<std::string, aggregate>>(http_port, "POST", "/sensors/aggregates",
                                                        nlohmann::json(ids).dump());
}

} // namespace sensors
