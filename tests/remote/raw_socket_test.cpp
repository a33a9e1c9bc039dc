// Hostile and broken peers on raw sockets: garbage, truncated and oversize frames,
// another cluster or protocol version, failed authentication, silence, and a peer
// that stops reading. Each is refused or closed with a logged reason and a metric,
// and the node keeps serving a good peer.
#include "remote/raw_peer.hpp"
#include "remote/remote_fixture.hpp"

#include "troupe/actors/ask.hpp"

#include <thread>

using namespace std::chrono_literals;
using namespace troupe;
using namespace troupe::test;
using remote::wire::frame_type;
namespace wire = troupe::remote::wire;

namespace {

wire::bytes hello_frame(std::uint16_t version, std::string cluster) {
  wire::hello_msg h{.version = version, .incarnation = 0x5151, .max_frame = 65536, .port = 9,
                    .host = "127.0.0.1", .cluster = std::move(cluster)};
  wire::bytes out;
  wire::put_hello(out, frame_type::hello, h);
  return out;
}

/// A raw connection that completed a real handshake with `target`.
raw_socket handshaken(remote_node& target, std::string secret = "") {
  auto s = raw_socket::connect_to(target.address());
  remote::handshake hs{remote::handshake::role::initiator, raw_settings(9, "troupe", secret), {7}};
  REQUIRE(raw_handshake(s, hs));
  return s;
}

} // namespace

TEST_CASE("garbage bytes close the connection and the node keeps serving") {
  remote_node a{{"node.name=a"}};
  a.serve("echo", echo_actor);
  log_capture log{a.n->log()};
  auto http = raw_socket::connect_to(a.address());
  std::string get = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
  http.write({reinterpret_cast<const std::uint8_t*>(get.data()), get.size()});
  CHECK(http.closed_by_peer());
  CHECK(connection_errors(*a.n, "oversize") == 1);  // "GET " read as a length
  auto junk = raw_socket::connect_to(a.address());
  junk.write(wire::bytes{0, 0, 0, 3, 99, 1, 2});  // small frame of an unknown type
  CHECK(junk.closed_by_peer());
  CHECK(connection_errors(*a.n, "unexpected_frame") == 1);
  CHECK(log.contains("unexpected unknown frame (type 99)"));
  serves_a_good_peer(a);
}

TEST_CASE("truncated frames end the connection without harm") {
  remote_node a{{"node.name=a"}};
  a.serve("echo", echo_actor);
  event_log events{*a.t};
  {
    auto s = raw_socket::connect_to(a.address());
    auto hello = hello_frame(wire::protocol_version, "troupe");
    s.write(remote::wire::byte_span{hello}.first(hello.size() / 2));
  }  // closed mid-frame, before the handshake completed
  auto s = handshaken(a);
  wire::bytes msg;
  auto at = wire::begin_message(msg, 0, "echo", 0);
  wire::end_frame(msg, at);
  s.write(remote::wire::byte_span{msg}.first(msg.size() - 2));
  s.close();  // closed mid-frame on an established connection
  auto lost = events.wait_for(remote::peer_event::kind::lost);
  REQUIRE(lost);
  CHECK(lost->peer.incarnation == 0xabcdef);
  CHECK(lost->reason.find("closed the connection") != std::string::npos);
  serves_a_good_peer(a);
}

TEST_CASE("an oversize length closes the connection, before and after the handshake") {
  remote_node a{{"node.name=a", "transport.max-frame-size=65536"}};
  a.serve("echo", echo_actor);
  log_capture log{a.n->log()};
  auto early = raw_socket::connect_to(a.address());
  early.write(wire::bytes{0xff, 0xff, 0xff, 0xff, 16});
  CHECK(early.closed_by_peer());
  CHECK(connection_errors(*a.n, "oversize") == 1);
  auto late = handshaken(a);
  late.write(wire::bytes{0x00, 0x01, 0x00, 0x01, 16});  // 65537 > the maximum
  CHECK(late.closed_by_peer());
  CHECK(connection_errors(*a.n, "oversize") == 2);
  CHECK(log.contains("frame of 65537 bytes exceeds the maximum of 65536 bytes"));
  serves_a_good_peer(a);
}

TEST_CASE("a malformed frame after the handshake closes the connection") {
  remote_node a{{"node.name=a"}};
  a.serve("echo", echo_actor);
  auto s = handshaken(a);
  wire::bytes bad;
  auto at = wire::begin_frame(bad, frame_type::message);
  wire::put_string(bad, "echo");
  wire::put_u8(bad, 200);  // more values than allowed
  wire::end_frame(bad, at);
  s.write(bad);
  CHECK(s.closed_by_peer());
  CHECK(connection_errors(*a.n, "malformed") == 1);
  serves_a_good_peer(a);
}

TEST_CASE("another cluster name or protocol version is refused with the reason") {
  remote_node a{{"node.name=a", "node.cluster-name=prod"}};
  a.serve("echo", echo_actor);
  log_capture log{a.n->log()};
  auto other = raw_socket::connect_to(a.address());
  other.write(hello_frame(wire::protocol_version, "staging"));
  wire::bytes frame;
  REQUIRE(other.read_frame(frame));
  auto refused = wire::decode_refuse({static_cast<frame_type>(frame[4]),
                                      wire::byte_span{frame}.subspan(wire::header_size)});
  REQUIRE(refused);
  CHECK(refused->reason.find("'staging'") != std::string::npos);
  CHECK(other.closed_by_peer());
  CHECK(connection_errors(*a.n, "cluster_mismatch") == 1);
  CHECK(log.contains("belongs to cluster 'staging', this node to 'prod'"));

  auto future = raw_socket::connect_to(a.address());
  future.write(hello_frame(wire::protocol_version + 1, "prod"));
  REQUIRE(future.read_frame(frame));
  CHECK(frame[4] == static_cast<std::uint8_t>(frame_type::refuse));
  CHECK(future.closed_by_peer());
  CHECK(connection_errors(*a.n, "version_mismatch") == 1);
  CHECK(log.contains("protocol version 2"));

  // Nodes of another cluster are refused the same way.
  remote_node stranger{{"node.name=stranger", "node.cluster-name=staging"}};
  auto r = ask<pong>(stranger.sys(), stranger.t->actor_for(a.address(), "echo"), 10s, ping{1, ""});
  REQUIRE_FALSE(r);
  CHECK(r.error().code() == errc::node_unreachable);
  remote_node good{{"node.name=good", "node.cluster-name=prod"}};
  CHECK(ask<pong>(good.sys(), good.t->actor_for(a.address(), "echo"), 10s, ping{1, ""}));
}

TEST_CASE("without the shared secret a process cannot join, even if it carries on") {
  remote_node a{{"node.name=a", "transport.secret=s3cret"}};
  auto sink = a.serve("sink", sink_actor);
  a.serve("echo", echo_actor);
  auto s = raw_socket::connect_to(a.address());
  remote::handshake hs{remote::handshake::role::initiator, raw_settings(9), {7}};
  wire::bytes out;
  hs.start(out);
  s.write(out);
  wire::bytes welcome;
  REQUIRE(s.read_frame(welcome));
  CHECK(welcome[4] == static_cast<std::uint8_t>(frame_type::welcome));
  // Answer with a made-up proof and send a message right behind it.
  wire::bytes forged;
  wire::put_auth(forged, std::vector<std::uint8_t>(32, 0x42));
  auto at = wire::begin_message(forged, 0, "sink", 0);
  wire::end_frame(forged, at);
  s.write(forged);
  wire::bytes frame;
  REQUIRE(s.read_frame(frame));
  CHECK(frame[4] == static_cast<std::uint8_t>(frame_type::refuse));
  CHECK(s.closed_by_peer());
  CHECK(connection_errors(*a.n, "unauthorized") == 1);
  auto stats = ask<sink_stats>(a.sys(), sink, 10s, sink_stats_request{});
  REQUIRE(stats);
  CHECK(stats->received == 0);
  CHECK(counter(*a.n, "troupe_transport_dropped_messages_total", {{"reason", "unknown_target"}})
        == 0);
  remote_node friendly{{"node.name=friendly", "transport.secret=s3cret"}};
  CHECK(ask<pong>(friendly.sys(), friendly.t->actor_for(a.address(), "echo"), 10s, ping{1, ""}));
}

TEST_CASE("a connection that never completes its handshake is closed at the deadline") {
  remote_node a{{"node.name=a", "transport.handshake-timeout=200ms"}};
  a.serve("echo", echo_actor);
  auto silent = raw_socket::connect_to(a.address());
  CHECK(silent.closed_by_peer(30s));
  CHECK(connection_errors(*a.n, "handshake_timeout") == 1);
  serves_a_good_peer(a);
}

namespace {

/// A fake peer that completes the handshake as acceptor and then reads nothing
/// until drain(). Its receive buffer stays the kernel's default: a small fixed one
/// (SO_RCVBUF) turns off window scaling, and Linux then offers windows rounded down
/// to the segment size it last saw, which can stay below the sender's segment size
/// after the peer reads again; the sender then moves one segment per persist-timer
/// tick (~10 KB/s), and freeing room in a send buffer of megabytes takes minutes.
class stuck_peer {
public:
  stuck_peer() {
    thread_ = std::thread{[this] { run(); }};
  }
  ~stuck_peer() {
    {
      std::lock_guard<std::mutex> guard{mtx_};
      drain_ = true;
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }

  remote::node_address address() const { return fake_.address(); }
  bool established() const { return established_; }

  void drain() {
    {
      std::lock_guard<std::mutex> guard{mtx_};
      drain_ = true;
    }
    cv_.notify_all();
  }

private:
  void run() {
    auto s = fake_.accept();
    remote::handshake hs{remote::handshake::role::acceptor, raw_settings(fake_.address().port),
                         {9}};
    if (s.fd() < 0 || !raw_handshake(s, hs))
      return;
    established_ = true;
    {
      std::unique_lock<std::mutex> lock{mtx_};
      cv_.wait(lock, [&] { return drain_; });
    }
    while (!stop_ && s.read_some(100ms))
      ;  // reads everything until the node closes or the test ends
  }

  raw_listener fake_;
  std::atomic<bool> established_{false};
  std::atomic<bool> stop_{false};
  std::mutex mtx_;
  std::condition_variable cv_;
  bool drain_ = false;
  std::thread thread_;
};

} // namespace

TEST_CASE("a peer that stops reading fills the bounded queue: senders are told, then told writable") {
  // Heartbeats would declare the stuck peer dead; this test is about the queue.
  remote_node a{{"node.name=a", "transport.max-queue-bytes=65536",
                 "transport.max-frame-size=16384", "transport.failure-timeout=0"}};
  event_log events{*a.t};
  stuck_peer fake;
  auto sink = a.t->remote(fake.address(), "sink");
  REQUIRE(sink.send(numbered{"t", 0, "first"}));
  REQUIRE(wait_until([&] {
    auto p = a.t->peer(fake.address());
    return fake.established() && p && p->outbound == remote::peer_info::state::connected;
  }));
  // Fill until sends are refused for good: the kernel takes bytes for a little
  // while (its buffers), so one refusal is not yet a full pipe; many in a row are.
  std::optional<error> refusal;
  std::uint64_t accepted = 1;
  int refused_in_a_row = 0;
  for (std::uint64_t i = 1; i < 10'000'000 && refused_in_a_row < 1000; ++i) {
    auto r = sink.send(numbered{"t", accepted, std::string(100, 'x')});
    if (r) {
      ++accepted;
      refused_in_a_row = 0;
    } else {
      refusal = r.error();
      ++refused_in_a_row;
    }
  }
  REQUIRE(refusal);
  CHECK(refusal->code() == errc::overloaded);
  // The kernel still takes a byte now and then (zero-window probes), so a write
  // may complete and free room at any moment. Each check below first tops the
  // queue up with the smallest frames (a bool, ~30 bytes), so that nothing larger
  // fits, and is retried if a write completed in between.
  auto top_up = [&] {
    while (sink.send(true))
      ;
  };
  top_up();
  auto info = a.t->peer(fake.address());
  REQUIRE(info);
  CHECK(info->queue_capacity == 65536);
  CHECK(info->queued_bytes <= info->queue_capacity);
  CHECK(info->queued_bytes > info->queue_capacity / 2);
  CHECK(counter(*a.n, "troupe_transport_send_rejected_total", {{"reason", "overloaded"}}) >= 1);
  // Through the CAF handle: one-way messages are dropped and counted...
  auto handle = a.t->actor_for(fake.address(), "sink");
  auto drops = [&] {
    return counter(*a.n, "troupe_transport_dropped_messages_total", {{"reason", "overloaded"}});
  };
  for (int i = 0; i < 100 && drops() == 0; ++i) {
    top_up();
    caf::anon_send(handle, numbered{"t", 0, std::string(100, 'x')});
  }
  CHECK(drops() >= 1);
  // ...and requests fail at once with overloaded (one that slips in is never
  // answered by the fake: hence the short timeout).
  std::size_t writable_before = 0;
  std::optional<error> request_error;
  for (int i = 0; i < 100 && !(request_error && request_error->code() == errc::overloaded); ++i) {
    top_up();
    // Whoever was refused hears "writable" after the refusal, once the queue drains.
    writable_before = events.count(remote::peer_event::kind::writable);
    auto asked = ask<sink_stats>(a.sys(), handle, 100ms, sink_stats_request{});
    REQUIRE_FALSE(asked);
    request_error = asked.error();
  }
  REQUIRE(request_error);
  CHECK(request_error->code() == errc::overloaded);
  fake.drain();
  REQUIRE(wait_until(
    [&] { return events.count(remote::peer_event::kind::writable) > writable_before; }));
  REQUIRE(wait_until([&] { return a.t->peer(fake.address())->queued_bytes == 0; }));
  CHECK(sink.send(numbered{"t", accepted, "again"}));
}
