// The transport between separate processes on 127.0.0.1 (the peer is
// troupe-test-transport-peer): messages both ways, order under load, kill -9,
// restart at the same port, SIGSTOP with backpressure and failure detection.
#include "remote/remote_fixture.hpp"
#include "support/child_process.hpp"

#include "troupe/actors/ask.hpp"

#include <csignal>
#include <future>
#include <sstream>
#include <thread>

using namespace std::chrono_literals;
using namespace troupe;
using namespace troupe::test;
using remote::peer_event;

namespace {

/// A peer node in its own process.
struct peer_process {
  std::unique_ptr<child_process> proc;
  remote::node_identity id;

  /// A peer with the running variant's security settings, then `flags`.
  explicit peer_process(std::vector<std::string> flags = {}) {
    std::vector<std::string> args;
    for (auto& kv : security_overrides())
      args.push_back("--" + kv);
    args.insert(args.end(), flags.begin(), flags.end());
    proc = std::make_unique<child_process>(program_path("troupe-test-transport-peer"), args);
    REQUIRE(proc->started());
    auto ready = proc->wait_for_line("READY ", 30s);
    REQUIRE(ready);
    std::istringstream in{ready->substr(6)};
    unsigned port = 0;
    std::string incarnation;
    in >> port >> incarnation;
    id = remote::node_identity{remote::node_address{"127.0.0.1", static_cast<std::uint16_t>(port)},
                               std::stoull(incarnation, nullptr, 16)};
    REQUIRE(port != 0);
  }

  const remote::node_address& address() const { return id.address; }
};

/// Sends `count` numbered messages as `who`, waiting out backpressure: on
/// overloaded, it waits for the transport's writable event and retries.
std::uint64_t send_all(remote::remote_actor& dest, const event_log& events, const std::string& who,
                       std::uint64_t count, const std::string& payload) {
  std::uint64_t refusals = 0;
  for (std::uint64_t i = 0; i < count;) {
    auto writable_seen = events.count(peer_event::kind::writable);
    auto r = dest.send(numbered{who, i, payload});
    if (r) {
      ++i;
      continue;
    }
    REQUIRE(r.error().code() == errc::overloaded);
    ++refusals;
    // Retry after the next writable event (or at once if the queue drained
    // meanwhile: the wait is a poll with a deadline, not a sleep).
    wait_until([&] { return events.count(peer_event::kind::writable) > writable_seen; }, 100ms);
  }
  return refusals;
}

} // namespace

TRANSPORT_TEST_CASE("processes exchange custom messages both ways, requests and one-way") {
  peer_process peer;
  remote_node a{{"node.name=a"}};
  auto a_sink = a.serve("sink", sink_actor);
  auto echo = a.t->actor_for(peer.address(), "echo");
  auto r = ask<pong>(a.sys(), echo, 10s, ping{42, "over tcp"});
  REQUIRE(r);
  CHECK(r->n == 42);
  CHECK(r->text == "over tcp");
  auto err = ask<pong>(a.sys(), echo, 10s, ping{-5, ""});
  REQUIRE_FALSE(err);
  CHECK(err.error().code() == errc::invalid_argument);
  auto sink = a.t->actor_for(peer.address(), "sink");
  for (std::uint64_t i = 0; i < 10; ++i)
    caf::anon_send(sink, numbered{"a", i, "x"});
  CHECK(wait_until([&] {
    auto s = ask<sink_stats>(a.sys(), sink, 10s, sink_stats_request{});
    return s && s->received == 10 && s->out_of_order == 0;
  }));
  // The other way: the peer's relay sends to this node's sink.
  auto relay = a.t->actor_for(peer.address(), "relay");
  for (std::uint64_t i = 0; i < 5; ++i)
    caf::anon_send(relay, relay_request{remote::actor_ref{a.address(), "sink"},
                                        numbered{"peer", i, "y"}});
  CHECK(wait_until([&] {
    auto s = ask<sink_stats>(a.sys(), a_sink, 10s, sink_stats_request{});
    return s && s->received == 5 && s->out_of_order == 0;
  }));
  auto info = a.t->peer(peer.address());
  REQUIRE(info);
  CHECK(info->incarnation == peer.id.incarnation);
  CHECK(info->inbound_connections == 1);  // the peer connected back for the relay
}

TRANSPORT_TEST_CASE("per-sender order holds between processes under load with backpressure") {
  peer_process peer;
  remote_node a{{"node.name=a", "transport.max-queue-bytes=262144",
                 "transport.max-frame-size=65536"}};
  event_log events{*a.t};
  constexpr std::uint64_t per_sender = 100000;
  auto sink = a.t->remote(peer.address(), "sink");
  std::vector<std::future<std::uint64_t>> senders;
  for (auto who : {"t1", "t2"})
    senders.push_back(std::async(std::launch::async, [&, who = std::string{who}] {
      return send_all(sink, events, who, per_sender, std::string(100, 'p'));
    }));
  for (auto& s : senders)
    s.get();
  auto stats_handle = a.t->actor_for(peer.address(), "sink");
  CHECK(wait_until([&] {
    auto s = ask<sink_stats>(a.sys(), stats_handle, 10s, sink_stats_request{});
    return s && s->received == 2 * per_sender;
  }, 60s));
  auto s = ask<sink_stats>(a.sys(), stats_handle, 10s, sink_stats_request{});
  REQUIRE(s);
  CHECK(s->received == 2 * per_sender);
  CHECK(s->out_of_order == 0);
}

TRANSPORT_TEST_CASE("kill -9 of a peer: the failure signal and the pending asks come at once") {
  peer_process peer;
  remote_node a{{"node.name=a"}};
  event_log events{*a.t};
  auto hole = a.t->actor_for(peer.address(), "blackhole");
  std::vector<std::future<expected<pong>>> asks;
  for (int i = 0; i < 3; ++i)
    asks.push_back(std::async(std::launch::async,
                              [&, i] { return ask<pong>(a.sys(), hole, 600s, ping{i, ""}); }));
  REQUIRE(peer.proc->wait_for_line("BLACKHOLE 3", 30s));
  peer.proc->kill();
  REQUIRE(peer.proc->wait());
  for (auto& f : asks) {
    // Far sooner than the 600 s timeout: the ask ends with the connection.
    auto r = f.get();
    REQUIRE_FALSE(r);
    CHECK(r.error().code() == errc::node_unreachable);
  }
  auto lost = events.wait_for(peer_event::kind::lost);
  REQUIRE(lost);
  CHECK(lost->peer == peer.id);
  CHECK(counter(*a.n, "troupe_transport_failed_requests_total") == 3);
}

TRANSPORT_TEST_CASE("a peer process restarted at the same port is seen as a new incarnation") {
  remote_node a{{"node.name=a", "transport.reconnect-backoff-min=20ms",
                 "transport.reconnect-backoff-max=200ms"}};
  event_log events{*a.t};
  auto first = std::make_unique<peer_process>();
  auto addr = first->address();
  auto first_id = first->id;
  a.t->connect(addr);
  REQUIRE(events.wait_for(peer_event::kind::up, [&](auto& e) { return e.peer == first_id; }));
  first->proc->kill();
  REQUIRE(first->proc->wait());
  REQUIRE(events.wait_for(peer_event::kind::lost, [&](auto& e) { return e.peer == first_id; }));
  first.reset();
  peer_process second{{"--node.port=" + std::to_string(addr.port)}};
  CHECK(second.address() == addr);
  CHECK(second.id.incarnation != first_id.incarnation);
  auto fresh = events.wait_for(peer_event::kind::new_incarnation);
  REQUIRE(fresh);
  CHECK(fresh->peer == second.id);
  CHECK(fresh->previous_incarnation == first_id.incarnation);
  REQUIRE(events.wait_for(peer_event::kind::up, [&](auto& e) { return e.peer == second.id; }));
  auto r = ask<pong>(a.sys(), a.t->actor_for(addr, "echo"), 10s, ping{2, "again"});
  REQUIRE(r);
  CHECK(r->text == "again");
}

TRANSPORT_TEST_CASE("SIGSTOP of the receiver: the queue stays bounded, senders see backpressure, "
          "nothing accepted is lost") {
  peer_process peer;
  // A long failure timeout: this test is about backpressure, not failure detection.
  remote_node a{{"node.name=a", "transport.max-queue-bytes=1048576",
                 "transport.max-frame-size=65536", "transport.failure-timeout=120s"}};
  event_log events{*a.t};
  auto sink = a.t->remote(peer.address(), "sink");
  REQUIRE(sink.send(numbered{"a", 0, "first"}));
  REQUIRE(events.wait_for(peer_event::kind::up));
  peer.proc->signal(SIGSTOP);
  auto rss_before = rss_kib();
  std::uint64_t accepted = 1;
  int refused_in_a_row = 0;
  std::size_t max_queued = 0;
  for (std::uint64_t i = 0; i < 100'000'000 && refused_in_a_row < 1000; ++i) {
    auto r = sink.send(numbered{"a", accepted, std::string(100, 'x')});
    if (r) {
      ++accepted;
      refused_in_a_row = 0;
    } else {
      REQUIRE(r.error().code() == errc::overloaded);
      ++refused_in_a_row;
    }
    if (i % 4096 == 0)
      max_queued = std::max(max_queued, a.t->peer(peer.address())->queued_bytes);
  }
  CHECK(refused_in_a_row == 1000);
  auto info = a.t->peer(peer.address());
  REQUIRE(info);
  CHECK(info->queued_bytes <= info->queue_capacity);
  CHECK(max_queued <= info->queue_capacity);
  // The sender's memory does not grow with the backlog: the queue (1 MiB) is all
  // the transport holds; the rest waits in kernel buffers or was refused.
  auto rss_after = rss_kib();
  CHECK(rss_after < rss_before + 64 * 1024);
  // Through the CAF handle: dropped and counted, not queued. (The stopped peer's
  // kernel still takes a byte now and then, so top the queue up with small frames
  // first, and retry if a write completed in between.) Whoever was refused hears
  // "writable" after the refusal, once the queue drains.
  auto handle = a.t->actor_for(peer.address(), "sink");
  auto drops = [&] {
    return counter(*a.n, "troupe_transport_dropped_messages_total", {{"reason", "overloaded"}});
  };
  std::size_t writable_before = 0;
  for (int i = 0; i < 100 && drops() == 0; ++i) {
    while (sink.send(numbered{"a", accepted, ""}))
      ++accepted;
    writable_before = events.count(peer_event::kind::writable);
    caf::anon_send(handle, numbered{"other", 0, std::string(200, 'z')});
  }
  CHECK(drops() == 1);
  // Resume: the backlog drains, senders hear "writable", and every accepted
  // message arrives, in order.
  peer.proc->signal(SIGCONT);
  REQUIRE(wait_until(
    [&] { return events.count(peer_event::kind::writable) > writable_before; }, 60s));
  CHECK(wait_until([&] {
    auto s = ask<sink_stats>(a.sys(), handle, 10s, sink_stats_request{});
    return s && s->received == accepted;
  }, 60s));
  auto s = ask<sink_stats>(a.sys(), handle, 10s, sink_stats_request{});
  REQUIRE(s);
  CHECK(s->received == accepted);
  CHECK(s->out_of_order == 0);
}

TRANSPORT_TEST_CASE("a hung (SIGSTOPped) peer is declared lost after the failure timeout") {
  peer_process peer;
  remote_node a{{"node.name=a", "transport.heartbeat-interval=50ms",
                 "transport.failure-timeout=300ms"}};
  event_log events{*a.t};
  auto hole = a.t->actor_for(peer.address(), "blackhole");
  auto pending = std::async(std::launch::async,
                            [&] { return ask<pong>(a.sys(), hole, 600s, ping{1, ""}); });
  REQUIRE(peer.proc->wait_for_line("BLACKHOLE 1", 30s));
  peer.proc->signal(SIGSTOP);
  auto lost = events.wait_for(peer_event::kind::lost, nullptr, 30s);
  REQUIRE(lost);
  CHECK(lost->peer == peer.id);
  CHECK(lost->reason.find("no traffic") != std::string::npos);
  auto r = pending.get();
  REQUIRE_FALSE(r);
  CHECK(r.error().code() == errc::node_unreachable);
  peer.proc->signal(SIGCONT);
}

TRANSPORT_TEST_CASE("a peer woken after SIGSTOP reads what was sent to it meanwhile before it "
                    "judges the silence") {
  // Both sides give up on silence after 300 ms; the peer stays stopped longer (this
  // side declares it lost first), so when it wakes every one of its heartbeat
  // checks is overdue while the pings sit unread in its socket.
  std::vector<std::string> fast{"--transport.heartbeat-interval=50ms",
                                "--transport.failure-timeout=300ms"};
  peer_process peer{fast};
  remote_node a{{"node.name=a", "transport.heartbeat-interval=50ms",
                 "transport.failure-timeout=300ms"}};
  event_log events{*a.t};
  auto hole = a.t->actor_for(peer.address(), "blackhole");
  caf::anon_send(hole, ping{0, ""});
  REQUIRE(peer.proc->wait_for_line("BLACKHOLE 1", 30s));
  peer.proc->signal(SIGSTOP);
  REQUIRE(wait_until([&] { return peer.proc->stopped(); }, 10s));
  constexpr int sent_while_stopped = 5;
  for (int i = 1; i <= sent_while_stopped; ++i)
    caf::anon_send(hole, ping{i, ""});
  REQUIRE(events.wait_for(peer_event::kind::lost, nullptr, 30s));
  peer.proc->signal(SIGCONT);
  // Read before judged: every ping reaches the blackhole.
  auto last = "BLACKHOLE " + std::to_string(1 + sent_while_stopped);
  CHECK_MESSAGE(peer.proc->wait_for_line(last, 30s),
                "the woken peer dropped the connection before reading what it held");
}
