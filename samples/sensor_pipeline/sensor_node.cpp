// troupe-sensor-node: a cluster node of the sensor pipeline (docs/streams.md,
// "Samples"). It hosts the sharded `sensor` entities (role "sensor") on a shared
// SQLite journal and, given --sensor.listen HOST:PORT, runs the TCP ingest:
//
//   tcp_lines(HOST, PORT) -> parse "<sensor> <value> <timestamp>" (malformed lines
//   are counted, logged and skipped) -> to_entities<sensor>: one `record` command
//   per reading, routed to the sensor wherever it lives in the cluster
//
//   troupe-sensor-node --port 7001 --seeds 127.0.0.1:7001 --roles sensor
//     --journal sensors.db --http-port 8001 --sensor.listen 127.0.0.1:7100
//
// Backpressure runs the whole way: a journal that persists slowly holds replies,
// the sink holds at most sensor.parallelism readings and stops pulling, the TCP
// source stops reading once its buffers (sensor.connection-buffer,
// sensor.buffered-bytes) are full, and TCP slows the clients. A shard without a
// home (no member with the role yet, a hand-off) holds commands in the region;
// a full region buffer answers `overloaded`, retried after a backoff.
//
// The flags are troupe-node's plus the sensor.* keys (--help-config lists them);
// GET /sensors/ingest and POST /sensors/aggregates on the management endpoint
// (status.hpp) report the ingest and the aggregates.
#include "sensor.hpp"
#include "status.hpp"

#include "troupe/actors/config.hpp"
#include "troupe/actors/remote/address.hpp"
#include "troupe/membership/cluster.hpp"
#include "troupe/membership/management_endpoint.hpp"
#include "troupe/membership/settings.hpp"
#include "troupe/node_main.hpp"
#include "troupe/sharding/sharding.hpp"
#include "troupe/streams/streams.hpp"

#include <atomic>
#include <limits>
#include <memory>
#include <mutex>

namespace ts = troupe::streams;
using namespace std::chrono_literals;

namespace {

/// Members with this role host sensors; others (an ingest-only node) route.
constexpr std::string_view host_role = "sensor";
constexpr std::uint32_t number_of_shards = 30;

troupe::sharding::sharding_settings sharding_settings() {
  troupe::sharding::sharding_settings s;
  s.number_of_shards = number_of_shards;
  s.role = std::string{host_role};
  return s;
}

void add_config_keys(troupe::config_schema& s) {
  using troupe::config_range;
  using troupe::config_type;
  constexpr std::int64_t line = sensors::max_line_length + 2;  // with "\r\n"
  s.add("sensor.listen", config_type::string, std::string{},
        "HOST:PORT (numeric) where readings arrive over TCP; empty: this node ingests nothing");
  s.add("sensor.parallelism", config_type::integer, std::int64_t{256},
        "Readings the entity sink holds at most (in flight, or waiting behind their sensor's)",
        config_range::of(1, 100'000));
  s.add("sensor.max-connections", config_type::integer, std::int64_t{64},
        "TCP clients served at once; more wait in the listen backlog", config_range::of(1, 10'000));
  s.add("sensor.connection-buffer", config_type::integer, std::int64_t{32 * 1024},
        "Bytes received from one client and not yet parsed, at most",
        config_range::of(line, std::int64_t{1} << 30));
  s.add("sensor.buffered-bytes", config_type::integer, std::int64_t{1024 * 1024},
        "Bytes received from all clients and not yet parsed, at most; at least "
        "sensor.max-connections x 162",
        config_range::of(line, std::int64_t{1} << 34));
}

/// sensor.listen, parsed; checked before the node starts (a usage error).
troupe::expected<troupe::remote::node_address> listen_address(const troupe::config& cfg) {
  auto text = cfg.get_string("sensor.listen");
  auto a = troupe::remote::node_address::parse(text);
  if (!a)
    return troupe::error{troupe::errc::invalid_config,
                         fmt::format("sensor.listen: '{}' is not HOST:PORT ({})", text,
                                     a.error().message())};
  return a;
}

troupe::expected<void> configure_cluster(const troupe::config& cfg,
                                         troupe::membership::membership_settings& s) {
  troupe::sharding::require_same_shards(s, sensors::sensor::entity_type, sharding_settings());
  if (cfg.get_string("sensor.listen").empty())
    return {};
  if (auto a = listen_address(cfg); !a)
    return std::move(a).error();
  return {};
}

/// The ingest's counters: written by the stream's island (one actor: the parse
/// stage, the entity flow's decider and the acknowledging sink run in it), read
/// by the endpoint's thread.
struct ingest_counters {
  std::atomic<std::uint64_t> malformed{0}, readings{0}, acknowledged{0}, rejected{0};
  /// Readings the sink holds: one counter, so that a reader sees a value the
  /// island had (readings - acknowledged - rejected read one by one need not).
  std::atomic<std::uint64_t> held{0}, max_held{0};
  std::mutex mtx;
  std::string outcome = "running";

  /// A reading enters the sink.
  void admitted() {
    ++readings;
    auto now = ++held;
    if (now > max_held.load())
      max_held = now;
  }
  /// A reading leaves it: acknowledged, or refused by its sensor.
  void left(std::atomic<std::uint64_t>& how) {
    --held;
    ++how;
  }
};

/// The ingest, when this node has one: what GET /sensors/ingest reports.
struct ingest {
  std::string listen;
  std::size_t parallelism = 0;
  ts::tcp_lines_options tcp;
  std::optional<ts::tcp_line_server> server;
  std::shared_ptr<ingest_counters> counters = std::make_shared<ingest_counters>();

  sensors::ingest_status status() const {
    sensors::ingest_status st;
    st.listen = listen;
    if (!server)
      return st;
    auto& c = *counters;
    {
      std::lock_guard<std::mutex> guard{c.mtx};
      st.stream = c.outcome;
    }
    st.malformed = c.malformed;
    st.acknowledged = c.acknowledged;
    st.rejected = c.rejected;
    st.readings = c.readings;
    st.in_flight = c.held;
    st.max_in_flight = c.max_held;
    st.parallelism = parallelism;
    st.buffered_bytes_limit = tcp.max_buffered_bytes;
    st.connection_buffer_limit = tcp.connection_buffer;
    st.tcp = server->stats();
    return st;
  }
};

/// A line as a log shows it: at most 80 bytes of it.
std::string shown(std::string_view line) {
  return line.size() <= 80 ? std::string{line} : fmt::format("{}... ({} bytes)", line.substr(0, 80), line.size());
}

/// Starts the pipeline on `in.listen`: TCP lines -> readings -> sensors.
troupe::expected<void> start_ingest(troupe::node& n, ingest& in) {
  auto at = listen_address(n.config());
  if (!at)
    return std::move(at).error();
  auto tcp = ts::tcp_lines(at->host, at->port, in.tcp);
  if (!tcp)
    return std::move(tcp).error();
  auto& [lines, server] = *tcp;
  in.server = server;
  auto c = in.counters;
  // A malformed line is the client's mistake, not the pipeline's: it is counted,
  // logged (the first ten, then every thousandth, so a broken client cannot flood
  // the log) and skipped; the connection and the stream go on.
  auto parse = ts::collect([c, &n](ts::tcp_line l) -> std::optional<sensors::reading> {
    auto r = sensors::parse_line(l.line);
    if (!r) {
      auto k = ++c->malformed;
      if (k <= 10 || k % 1000 == 0)
        n.log().warn("sensor-ingest", "skipped malformed line {} of connection {} ({} so far): {}: '{}'",
                     l.number, l.connection, k, r.error().message(), shown(l.line));
      return std::nullopt;
    }
    c->admitted();  // pulled by the sink: it holds the reading from here
    return std::move(*r);
  });
  // Transient failures are retried until they succeed (the sharding layer pushes
  // back with them), and so are journal failures (the sensor's timestamp check
  // makes a retry of an applied reading a no-op). A reading the sensor refuses is
  // dropped by the decider, counted and logged: it would be refused again.
  ts::entity_sink_options o;
  o.ask.parallelism = in.parallelism;
  o.ask.max_retries = std::numeric_limits<int>::max();
  o.ask.retryable = [](const troupe::error& e) {
    return ts::retryable_by_default(e) || e.code() == troupe::errc::journal_failure;
  };
  auto to_sensors =
    ts::flow<sensors::reading, sensors::done>{
      ts::entities_flow<sensors::sensor, sensors::reading>(
        n, [](const sensors::reading& r) { return std::string_view{r.sensor}; },
        [](const sensors::reading& r) { return sensors::record{r.value, r.timestamp}; }, o)}
      .with_decider([c, &n](const troupe::error& e) {
        c->left(c->rejected);
        n.log().warn("sensor-ingest", "a sensor refused a reading (dropped): {}", e.to_string());
        return ts::directive::resume;
      });
  auto done = lines.via(parse)
                .via(to_sensors)
                .to(ts::for_each<sensors::done>([c](sensors::done) { c->left(c->acknowledged); }))
                .run(n, {.name = "sensor-ingest"});
  if (!done)
    return std::move(done).error();
  done->on_complete([c](const troupe::expected<void>& r) {
    std::lock_guard<std::mutex> guard{c->mtx};
    c->outcome = r ? "completed" : "failed: " + r.error().to_string();
  });
  n.log().info("sensor-ingest", "reading sensor lines on {}", server.endpoint());
  return {};
}

/// GET /sensors/ingest and POST /sensors/aggregates (status.hpp).
void add_routes(troupe::node& n, std::shared_ptr<const ingest> in) {
  namespace tm = troupe::membership;
  auto endpoint = tm::management_endpoint::of(n);
  if (!endpoint)
    return;
  endpoint->add_route("GET", "/sensors/ingest", [in](const std::string&) {
    return tm::http_response{200, "application/json", nlohmann::json(in->status()).dump()};
  });
  endpoint->add_route("POST", "/sensors/aggregates", [&n](const std::string& body) {
    auto ids = nlohmann::json::parse(body, nullptr, false);
    if (!ids.is_array() || !std::all_of(ids.begin(), ids.end(), [](auto& x) { return x.is_string(); }))
      return tm::json_error(400, "invalid_argument", "the body must be a JSON array of sensor ids");
    auto out = nlohmann::json::object();
    for (auto& id : ids) {
      auto a = troupe::sharding::entity_for<sensors::sensor>(n, id.get<std::string>())
                 .ask(sensors::get_aggregate{}, 3s);
      if (!a)
        return tm::json_error(503, to_string(a.error().code()),
                              fmt::format("sensor '{}': {}", id.get<std::string>(), a.error().to_string()));
      out[id.get<std::string>()] = *a;
    }
    return tm::http_response{200, "application/json", out.dump()};
  });
}

troupe::expected<void> setup(troupe::node& n, troupe::membership::cluster&) {
  sensors::register_types(n.codec());
  if (auto r = troupe::sharding::start<sensors::sensor>(n, sharding_settings()); !r)
    return r;
  auto in = std::make_shared<ingest>();
  auto& cfg = n.config();
  in->listen = cfg.get_string("sensor.listen");
  in->parallelism = static_cast<std::size_t>(cfg.get_int("sensor.parallelism"));
  in->tcp.max_line_length = sensors::max_line_length;
  // A line longer than any reading closes that client's connection (it sends
  // something else); the other clients and the stream go on.
  in->tcp.on_oversize = ts::oversize_line::close_connection;
  in->tcp.max_connections = static_cast<std::size_t>(cfg.get_int("sensor.max-connections"));
  in->tcp.connection_buffer = static_cast<std::size_t>(cfg.get_int("sensor.connection-buffer"));
  in->tcp.max_buffered_bytes = static_cast<std::size_t>(cfg.get_int("sensor.buffered-bytes"));
  if (!in->listen.empty())
    if (auto r = start_ingest(n, *in); !r)
      return r;
  add_routes(n, in);
  return {};
}

} // namespace

int main(int argc, char** argv) {
  troupe::node_program p;
  p.name = "troupe-sensor-node";
  p.description = "A node of the sensor pipeline (samples/sensor_pipeline): hosts sensors and, "
                  "with --sensor.listen, reads their readings over TCP into them.";
  p.add_config_keys = add_config_keys;
  p.configure_cluster = configure_cluster;
  p.setup = setup;
  return troupe::node_main(argc, argv, std::move(p));
}
