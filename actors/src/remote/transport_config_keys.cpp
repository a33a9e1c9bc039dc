#include "troupe/actors/config.hpp"

namespace troupe::remote::detail {

// Keys of the node-to-node transport (transport.*). node.host / node.port /
// node.cluster-name are declared with the node's keys. docs/transport.md explains
// each; docs/configuration.md lists them.
void add_transport_config_keys(config_schema& s) {
  using namespace std::chrono_literals;
  s.add("transport.advertised-host", config_type::string, std::string{},
        "Host that peers are told to connect to; empty means node.host.");
  s.add("transport.secret", config_type::string, std::string{},
        "Shared secret for the handshake's challenge-response authentication (HMAC-SHA256); "
        "empty disables authentication. Set it through TROUPE_TRANSPORT_SECRET or a config "
        "file, not a flag.");
  s.add("transport.max-frame-size", config_type::integer, std::int64_t{4} << 20,
        "Largest frame in bytes (one encoded message plus its header). Larger messages fail at "
        "the sender with errc::oversize; a larger incoming frame closes the connection.");
  s.add("transport.max-queue-bytes", config_type::integer, std::int64_t{8} << 20,
        "Bound of each connection's outbound queue (bytes not yet handed to the kernel). A send "
        "that does not fit fails with errc::overloaded.");
  s.add("transport.heartbeat-interval", config_type::duration, duration{1s},
        "How often both ends of every connection send a heartbeat; 0 disables heartbeats.");
  s.add("transport.failure-timeout", config_type::duration, duration{5s},
        "A connection that received nothing (not even a heartbeat) for this long is closed and "
        "its peer reported lost; 0 disables the check. Must exceed "
        "transport.heartbeat-interval; use the same values on every node.");
  s.add("transport.handshake-timeout", config_type::duration, duration{3s},
        "Deadline for connecting plus the handshake, on both sides.");
  s.add("transport.reconnect-backoff-min", config_type::duration, duration{100ms},
        "First delay before reconnecting to a wanted peer; doubles per failed attempt.");
  s.add("transport.reconnect-backoff-max", config_type::duration, duration{5s},
        "Upper bound of the reconnect delay.");
  s.add("transport.request-retention", config_type::duration, duration{10min},
        "How long the transport remembers a request whose response has not arrived while its "
        "connection stays up (the requester's own timeout is usually much shorter).");
  s.add("transport.stop-timeout", config_type::duration, duration{1s},
        "How long stopping the transport waits for queued frames and goodbyes to be written.");
  s.add("transport.max-connections", config_type::integer, std::int64_t{2048},
        "Most inbound connections established at once; a handshake beyond it is "
        "refused (too_many_connections).");
  s.add("transport.max-connections-per-address", config_type::integer, std::int64_t{512},
        "Most established inbound connections from one source IP address.");
  s.add("transport.max-pending-handshakes", config_type::integer, std::int64_t{128},
        "Most inbound connections still in their handshake; a new connection "
        "beyond it closes the oldest pending one (silent ones first).");
  s.add("transport.max-pending-handshakes-per-address", config_type::integer, std::int64_t{64},
        "Most pending handshakes from one source IP address; beyond it that "
        "address's oldest pending one is closed.");
  s.add("transport.tls.enabled", config_type::boolean, false,
        "Encrypt and authenticate every connection with TLS 1.3, both ends presenting a "
        "certificate signed by transport.tls.ca (docs/transport.md, \"TLS\").");
  s.add("transport.tls.certificate", config_type::string, std::string{},
        "PEM file with this node's certificate (and its chain); needed with TLS.");
  s.add("transport.tls.private-key", config_type::string, std::string{},
        "PEM file with the private key of transport.tls.certificate; needed with TLS.");
  s.add("transport.tls.ca", config_type::string, std::string{},
        "PEM file with the CA certificate(s) that peers' certificates must chain to; needed "
        "with TLS.");
  s.add("transport.fault-injection.rules-file", config_type::string, std::string{},
        "For tests only: a file of fault rules (drop/delay traffic of chosen peers) that the "
        "transport re-reads when it changes; empty (the default) turns fault injection off.");

  // Ranges (docs/configuration.md shows them); a value outside is invalid_config.
  s.set_range("transport.max-frame-size", config_range::of(1024, std::int64_t{1} << 30));
  s.set_range("transport.max-queue-bytes", config_range::of(1024, std::int64_t{1} << 34));
  s.set_range("transport.heartbeat-interval", config_range::zero_or(10ms, 1h));
  s.set_range("transport.failure-timeout", config_range::zero_or(10ms, 1h));
  s.set_range("transport.handshake-timeout", config_range::of(10ms, 10min));
  s.set_range("transport.reconnect-backoff-min", config_range::of(1ms, 1min));
  s.set_range("transport.reconnect-backoff-max", config_range::of(1ms, 1h));
  s.set_range("transport.request-retention", config_range::of(1ms, 24h));
  s.set_range("transport.stop-timeout", config_range::of(0ms, 10min));
  s.set_range("transport.max-connections", config_range::of(1, 1000000));
  s.set_range("transport.max-connections-per-address", config_range::of(1, 1000000));
  s.set_range("transport.max-pending-handshakes", config_range::of(1, 1000000));
  s.set_range("transport.max-pending-handshakes-per-address", config_range::of(1, 1000000));
}

} // namespace troupe::remote::detail
