// TLS between nodes: mutual authentication with certificates of the cluster's CA,
// encryption and integrity of every byte (the senders' direct writes included),
// and settings that are checked at start. Certificates are made in the test with
// the openssl command line (tls_pki.hpp), as docs/transport.md's how-to does.
#include "remote/remote_fixture.hpp"
#include "remote/tcp_relay.hpp"

#include "troupe/actors/ask.hpp"

#include <openssl/ssl.h>

using namespace std::chrono_literals;
using namespace troupe;
using namespace troupe::test;
using remote::peer_event;

namespace {

/// Connects to `node` as a TLS 1.3 client that trusts `ca` but presents no
/// certificate; true if the node ends the session (it must: certificates are
/// mutual).
bool tls_client_is_refused(const remote::node_address& node, const std::string& ca) {
  auto s = raw_socket::connect_to(node);
  timeval limit{10, 0};
  ::setsockopt(s.fd(), SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof(limit));
  auto* ctx = SSL_CTX_new(TLS_client_method());
  SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
  SSL_CTX_load_verify_locations(ctx, ca.c_str(), nullptr);
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  auto* ssl = SSL_new(ctx);
  SSL_set_fd(ssl, s.fd());
  bool refused = false;
  if (SSL_connect(ssl) == 1) {
    // TLS 1.3: the client is done before the server checked it; the server's
    // verdict arrives as an alert (or a close) on the next read.
    char buf[64];
    auto r = SSL_read(ssl, buf, sizeof(buf));
    refused = r <= 0 && SSL_get_error(ssl, r) != SSL_ERROR_WANT_READ;
  } else {
    refused = true;
  }
  SSL_free(ssl);
  SSL_CTX_free(ctx);
  return refused;
}

} // namespace

TEST_CASE("TLS: nodes with certificates of the cluster's CA connect, and others are refused") {
  test_pki cluster;
  test_pki stranger{"another CA"};
  auto a_files = cluster.issue("node-a");
  auto b_files = cluster.issue("node-b");
  remote_node a{with({"node.name=a"}, cluster.overrides(a_files))};
  remote_node b{with({"node.name=b"}, cluster.overrides(b_files))};
  a.serve("echo", echo_actor);
  b.serve("echo", echo_actor);
  log_capture a_log{a.n->log()};
  REQUIRE(ask<pong>(b.sys(), b.t->actor_for(a.address(), "echo"), 10s, ping{1, "b to a"}));
  REQUIRE(ask<pong>(a.sys(), a.t->actor_for(b.address(), "echo"), 10s, ping{2, "a to b"}));

  // A certificate of another CA: refused both ways, the reason logged.
  auto c_files = stranger.issue("node-c");
  remote_node c{with({"node.name=c"}, stranger.overrides(c_files))};
  c.serve("echo", echo_actor);
  auto from_c = ask<pong>(c.sys(), c.t->actor_for(a.address(), "echo"), 10s, ping{3, ""});
  REQUIRE_FALSE(from_c);
  CHECK(from_c.error().code() == errc::node_unreachable);
  auto to_c = ask<pong>(a.sys(), a.t->actor_for(c.address(), "echo"), 10s, ping{4, ""});
  REQUIRE_FALSE(to_c);
  CHECK(to_c.error().code() == errc::node_unreachable);
  CHECK(wait_until([&] { return connection_errors(*a.n, "tls_handshake_failed") >= 2; }));
  CHECK(a_log.wait_for("certificate verify failed"));

  // A node without TLS: refused both ways, saying why.
  remote_node plain{{"node.name=plain", "transport.tls.enabled=false"}};
  plain.serve("echo", echo_actor);
  log_capture plain_log{plain.n->log()};
  CHECK_FALSE(ask<pong>(plain.sys(), plain.t->actor_for(a.address(), "echo"), 10s, ping{5, ""}));
  CHECK_FALSE(ask<pong>(a.sys(), a.t->actor_for(plain.address(), "echo"), 10s, ping{6, ""}));
  CHECK(plain_log.wait_for("transport.tls.enabled is false on this node"));
  CHECK(connection_errors(*plain.n, "tls_mismatch") >= 1);

  // A client that presents no certificate: refused (both ends must present one).
  CHECK(tls_client_is_refused(a.address(), cluster.ca()));
  CHECK(a_log.wait_for("peer did not return a certificate"));
  // a and b still talk.
  CHECK(ask<pong>(a.sys(), a.t->actor_for(b.address(), "echo"), 10s, ping{7, ""}));
}

TEST_CASE("TLS: the wire carries only ciphertext, and a flipped bit ends the connection") {
  test_pki cluster;
  auto files = cluster.issue("node");
  remote_node b{with({"node.name=b"}, cluster.overrides(files))};
  b.serve("echo", echo_actor);
  remote_node a{with({"node.name=a"}, cluster.overrides(files))};
  event_log events{*a.t};
  tcp_relay relay{b.address()};
  auto echo = a.t->actor_for(relay.address(), "echo");
  const std::string marker = "a-marker-only-the-two-nodes-may-read";
  // Lone requests: the sender writes them to the socket itself (the direct
  // path), and that goes through TLS too.
  auto direct_before = counter(*a.n, "troupe_transport_direct_writes_total");
  for (int i = 0; i < 5; ++i) {
    auto r = ask<pong>(a.sys(), echo, 10s, ping{i, marker});
    REQUIRE(r);
    CHECK(r->text == marker);
  }
  CHECK(counter(*a.n, "troupe_transport_direct_writes_total") > direct_before);
  CHECK(relay.bytes_relayed() > 5 * marker.size());
  CHECK(relay.seen().find(marker) == std::string::npos);
  CHECK(relay.seen().find("echo") == std::string::npos);
  // Tampering: the receiver's TLS layer rejects the record; the connection ends.
  relay.corrupt_next();
  auto tampered = ask<pong>(a.sys(), echo, 10s, ping{9, marker});
  REQUIRE_FALSE(tampered);
  CHECK(tampered.error().code() == errc::node_unreachable);
  CHECK(wait_until([&] { return counter(*b.n, "troupe_transport_connection_errors_total",
                                        {{"reason", "tls"}})
                                == 1; }));
  CHECK(events.wait_for(peer_event::kind::lost));
}

TEST_CASE("without TLS the same relay reads every message") {
  // The check above can fail: in plaintext the marker is on the wire.
  remote_node b{{"node.name=b"}};
  b.serve("echo", echo_actor);
  remote_node a{{"node.name=a"}};
  tcp_relay relay{b.address()};
  const std::string marker = "a-marker-anyone-on-the-path-may-read";
  REQUIRE(ask<pong>(a.sys(), a.t->actor_for(relay.address(), "echo"), 10s, ping{1, marker}));
  CHECK(relay.seen().find(marker) != std::string::npos);
}

TEST_CASE("TLS settings are checked at start, naming the key and the file") {
  test_pki cluster;
  auto files = cluster.issue("node");
  auto start = [](std::vector<std::string> overrides) {
    auto n = make_node(std::move(overrides));
    return remote::transport::start(*n);
  };
  auto none = start({"transport.tls.enabled=true"});
  REQUIRE_FALSE(none);
  CHECK(none.error().code() == errc::invalid_config);
  CHECK(none.error().message().find("transport.tls.certificate") != std::string::npos);
  auto missing = start({"transport.tls.enabled=true", "transport.tls.certificate=/nonexistent.pem",
                        "transport.tls.private-key=" + files.private_key,
                        "transport.tls.ca=" + cluster.ca()});
  REQUIRE_FALSE(missing);
  CHECK(missing.error().message().find("/nonexistent.pem") != std::string::npos);
  // The CA's key does not belong to the node's certificate.
  auto wrong_key = start({"transport.tls.enabled=true",
                          "transport.tls.certificate=" + files.certificate,
                          "transport.tls.private-key=" + cluster.ca_key(),
                          "transport.tls.ca=" + cluster.ca()});
  REQUIRE_FALSE(wrong_key);
  INFO(wrong_key.error().message());
  CHECK(wrong_key.error().message().find("transport.tls.private-key") != std::string::npos);
  CHECK(wrong_key.error().message().find("mismatch") != std::string::npos);
  // Not PEM at all.
  auto garbage = start({"transport.tls.enabled=true", "transport.tls.certificate=" + files.certificate,
                        "transport.tls.private-key=" + files.private_key,
                        "transport.tls.ca=" + cluster.file("node.ext")});
  REQUIRE_FALSE(garbage);
  CHECK(garbage.error().message().find("transport.tls.ca") != std::string::npos);
}
