// The transport between nodes in one process: addressing, messages both ways,
// request/response, errors, order, oversize, failure signals and incarnations.
#include "remote/remote_fixture.hpp"

#include "troupe/actors/ask.hpp"

#include <atomic>
#include <future>

using namespace std::chrono_literals;
using namespace troupe;
using namespace troupe::test;
using remote::peer_event;

namespace {

/// Registered with CAF but not for remote messaging.
struct unregistered_msg {
  int x = 0;
};

/// Registered for remote messaging on one node only.
struct one_sided {
  int x = 0;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(one_sided, x)

/// Sends `count` numbered messages named `who` to `dest` (one-way), then stops.
/// Sends `count` numbered messages to `dest`, 1,000 per turn, then a message to
/// itself for the next turn: one turn with all of them holds a scheduler thread for
/// seconds under ThreadSanitizer, and two such senders starved the guardian that
/// spawns the third past its 10 s request timeout.
caf::behavior numbered_sender(caf::event_based_actor* self, caf::actor dest, std::string who,
                              std::uint64_t count) {
  auto send_from = [=](std::uint64_t from) {
    auto to = std::min(count, from + 1000);
    for (auto i = from; i < to; ++i)
      self->send(dest, numbered{who, i, "payload"});
    if (to == count)
      self->quit();
    else
      self->send(self, to);
  };
  send_from(0);
  return {[=](std::uint64_t from) { send_from(from); }};
}

} // namespace

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(unregistered_msg)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(one_sided)

TEST_CASE("a node listens on a port of its own and reports address and incarnation") {
  remote_node a{{"node.name=a"}};
  remote_node b{{"node.name=b"}};
  CHECK(a.address().port != 0);
  CHECK(a.address().host == "127.0.0.1");
  CHECK(a.address() != b.address());
  CHECK(a.t->identity().incarnation != 0);
  CHECK(a.t->identity().incarnation != b.t->identity().incarnation);
  CHECK(remote::transport::of(*a.n) == a.t);
  CHECK(remote::transport::of(a.sys()) == a.t);
  CHECK_FALSE(remote::transport::start(*a.n));  // one transport per node
}

TRANSPORT_TEST_CASE("requests to a remote actor get their replies, in both directions") {
  remote_node a{{"node.name=a"}};
  remote_node b{{"node.name=b"}};
  a.serve("echo", echo_actor);
  b.serve("echo", echo_actor);
  auto b_echo = a.t->actor_for(b.address(), "echo");
  CHECK(a.t->actor_for(b.address(), "echo") == b_echo);  // one handle per (node, name)
  auto r = ask<pong>(a.sys(), b_echo, 10s, ping{7, "hello"});
  REQUIRE(r);
  CHECK(r->n == 7);
  CHECK(r->text == "hello");
  auto back = ask<pong>(b.sys(), b.t->actor_for(a.address(), "echo"), 10s, ping{8, "back"});
  REQUIRE(back);
  CHECK(back->n == 8);
  // Built-in value types need no registration.
  auto s = ask<std::string>(a.sys(), b_echo, 10s, std::string{"hi"});
  REQUIRE(s);
  CHECK(*s == "hi!");
}

TRANSPORT_TEST_CASE("one-way messages reach registered actors in both directions") {
  remote_node a{{"node.name=a"}};
  remote_node b{{"node.name=b"}};
  auto a_sink = a.serve("sink", sink_actor);
  b.serve("sink", sink_actor);
  b.serve("relay", relay_actor);
  auto b_sink = a.t->actor_for(b.address(), "sink");
  for (std::uint64_t i = 0; i < 3; ++i)
    caf::anon_send(b_sink, numbered{"test", i, "x"});
  CHECK(wait_until([&] { return stats_of(a.sys(), b_sink).received == 3; }));
  // b sends to a: the relay on b forwards to the actor_ref it was given.
  remote::actor_ref back{a.address(), "sink"};
  caf::anon_send(a.t->actor_for(b.address(), "relay"), relay_request{back, numbered{"r", 0, "y"}});
  CHECK(wait_until([&] { return stats_of(a.sys(), a_sink).received == 1; }));
  CHECK(stats_of(a.sys(), a_sink).out_of_order == 0);
}

TRANSPORT_TEST_CASE("errors come back as replies: the actor's own, an unknown name, an unregistered type") {
  remote_node a{{"node.name=a"}};
  remote_node b{{"node.name=b"}};
  b.serve("echo", echo_actor);
  auto echo = a.t->actor_for(b.address(), "echo");
  auto negative = ask<pong>(a.sys(), echo, 10s, ping{-1, ""});
  REQUIRE_FALSE(negative);
  CHECK(negative.error().code() == errc::invalid_argument);
  CHECK(negative.error().message() == "negative ping -1");

  auto nobody = ask<pong>(a.sys(), a.t->actor_for(b.address(), "nobody"), 10s, ping{1, ""});
  REQUIRE_FALSE(nobody);
  CHECK(nobody.error().code() == errc::not_found);
  CHECK(nobody.error().message().find("'nobody'") != std::string::npos);

  auto unknown_type = ask<int>(a.sys(), echo, 10s, unregistered_msg{1});
  REQUIRE_FALSE(unknown_type);
  CHECK(unknown_type.error().code() == errc::encode_failed);
  CHECK(unknown_type.error().message().find("unregistered_msg") != std::string::npos);

  auto direct = a.t->send(b.address(), "echo", unregistered_msg{2});
  REQUIRE_FALSE(direct);
  CHECK(direct.error().code() == errc::encode_failed);
}

TRANSPORT_TEST_CASE("messages of several values cross as tuples, both ways") {
  remote_node a{{"node.name=a"}};
  remote_node b{{"node.name=b"}};
  b.serve("echo", echo_actor);
  caf::scoped_actor self{a.sys()};
  std::optional<std::pair<std::int64_t, std::string>> got;
  self->request(a.t->actor_for(b.address(), "echo"), std::chrono::seconds{10}, caf::get_atom_v,
                std::int64_t{41}, std::string{"why"})
    .receive([&](std::int64_t x, const std::string& s) { got.emplace(x, s); },
             [&](caf::error& e) { FAIL(a.sys().render(e)); });
  release_thread_caf_state();
  REQUIRE(got);
  CHECK(got->first == 42);
  CHECK(got->second == "why?");
}

TRANSPORT_TEST_CASE("values the receiver cannot decode: requests get the error, one-way drops are counted") {
  remote_node a{{"node.name=a"}};
  remote_node b{{"node.name=b"}};
  REQUIRE(remote::add_message_type<one_sided>(*a.n, "test.one-sided"));  // not on b
  b.serve("echo", echo_actor);
  auto echo = a.t->actor_for(b.address(), "echo");
  auto r = ask<int>(a.sys(), echo, 10s, one_sided{1});
  REQUIRE_FALSE(r);
  CHECK(r.error().code() == errc::unknown_manifest);
  CHECK(r.error().message().find("'test.one-sided'") != std::string::npos);
  caf::anon_send(echo, one_sided{2});
  CHECK(wait_until([&] {
    return counter(*b.n, "troupe_transport_dropped_messages_total", {{"reason", "decode_failed"}})
           == 1;
  }));
  CHECK(ask<pong>(a.sys(), echo, 10s, ping{3, "still fine"}));
}

TRANSPORT_TEST_CASE("a node with open connections and pending requests shuts down cleanly") {
  remote_node a{{"node.name=a"}};
  remote_node b{{"node.name=b"}};
  a.serve("echo", echo_actor);
  b.serve("blackhole", [](caf::stateful_actor<blackhole_state>* self) {
    return blackhole_actor(self, nullptr);
  });
  REQUIRE(ask<pong>(b.sys(), b.t->actor_for(a.address(), "echo"), 10s, ping{1, ""}));
  auto pending = std::async(std::launch::async, [&] {
    return ask<pong>(a.sys(), a.t->actor_for(b.address(), "blackhole"), 600s, ping{2, ""});
  });
  REQUIRE(wait_until([&] {
    return a.n->metrics().gauge_value("troupe_transport_pending_requests").value_or(0) == 1;
  }));
  auto report = a.n->shutdown();
  CHECK(report.clean);
  auto r = pending.get();
  REQUIRE_FALSE(r);
  CHECK(r.error().code() == errc::shutting_down);
  CHECK(b.n->shutdown().clean);
}

TRANSPORT_TEST_CASE("monitors of remote handles learn when the transport stops") {
  remote_node a{{"node.name=a"}};
  remote_node b{{"node.name=b"}};
  auto downs = std::make_shared<event_counter>();
  auto handle = a.t->actor_for(b.address(), "anyone");
  auto watcher = a.n->spawn("watcher", [=](caf::event_based_actor* self) -> caf::behavior {
    self->monitor(handle);
    self->set_down_handler([=](caf::down_msg&) { downs->add(); });
    return {[](int) {}};
  });
  REQUIRE(watcher);
  a.t->stop();
  CHECK(downs->wait_for(1));
  auto after = a.t->send(b.address(), "anyone", ping{1, ""});
  REQUIRE_FALSE(after);
  CHECK(after.error().code() == errc::shutting_down);
}

TRANSPORT_TEST_CASE("a registered name goes away with its actor and can be taken again") {
  remote_node a{{"node.name=a"}};
  remote_node b{{"node.name=b"}};
  auto first = b.serve("echo", echo_actor);
  CHECK_FALSE(b.t->register_actor("echo", first));  // taken
  caf::anon_send_exit(first, caf::exit_reason::user_shutdown);
  CHECK(wait_until([&] { return !b.t->registered("echo"); }));
  auto gone = ask<pong>(a.sys(), a.t->actor_for(b.address(), "echo"), 10s, ping{1, ""});
  REQUIRE_FALSE(gone);
  CHECK(gone.error().code() == errc::not_found);
  b.serve("echo", echo_actor);
  CHECK(ask<pong>(a.sys(), a.t->actor_for(b.address(), "echo"), 10s, ping{2, ""}));
}

TRANSPORT_TEST_CASE("a node's own address delivers locally") {
  remote_node a{{"node.name=a"}};
  a.serve("echo", echo_actor);
  auto r = ask<pong>(a.sys(), a.t->actor_for(a.address(), "echo"), 10s, ping{3, "me"});
  REQUIRE(r);
  CHECK(r->n == 3);
  CHECK(a.t->send(a.address(), "echo", ping{4, ""}));
  CHECK(a.t->peers().empty());  // no connection to itself
}

TRANSPORT_TEST_CASE("three nodes in one process all reach each other") {
  std::vector<std::unique_ptr<remote_node>> nodes;
  for (auto name : {"a", "b", "c"}) {
    nodes.push_back(std::make_unique<remote_node>(std::vector<std::string>{
      std::string{"node.name="} + name}));
    nodes.back()->serve("echo", echo_actor);
  }
  std::int64_t n = 0;
  for (auto& from : nodes)
    for (auto& to : nodes) {
      if (from == to)
        continue;
      ++n;
      auto r = ask<pong>(from->sys(), from->t->actor_for(to->address(), "echo"), 10s,
                         ping{n, to->address().to_string()});
      REQUIRE(r);
      CHECK(r->n == n);
      CHECK(r->text == to->address().to_string());
    }
  for (auto& x : nodes) {
    auto peers = x->t->peers();
    CHECK(peers.size() == 2);
    for (auto& p : peers) {
      CHECK(p.up);
      CHECK(p.outbound == remote::peer_info::state::connected);
      CHECK(p.inbound_connections == 1);
    }
  }
}

TRANSPORT_TEST_CASE("an oversize message fails at the sender with errc::oversize") {
  remote_node a{{"node.name=a", "transport.max-frame-size=2048"}};
  remote_node b{{"node.name=b", "transport.max-frame-size=2048"}};
  b.serve("echo", echo_actor);
  auto echo = a.t->actor_for(b.address(), "echo");
  auto big = ask<pong>(a.sys(), echo, 10s, ping{1, std::string(4096, 'x')});
  REQUIRE_FALSE(big);
  CHECK(big.error().code() == errc::oversize);
  auto direct = a.t->send(b.address(), "echo", ping{2, std::string(4096, 'x')});
  REQUIRE_FALSE(direct);
  CHECK(direct.error().code() == errc::oversize);
  CHECK(counter(*a.n, "troupe_transport_send_rejected_total", {{"reason", "oversize"}}) == 2);
  // A peer with a smaller limit: learned in the handshake, enforced at the sender.
  remote_node roomy{{"node.name=roomy", "transport.max-frame-size=65536"}};
  auto to_b = roomy.t->actor_for(b.address(), "echo");
  REQUIRE(ask<pong>(roomy.sys(), to_b, 10s, ping{4, "connect first"}));
  auto too_big_for_b = ask<pong>(roomy.sys(), to_b, 10s, ping{5, std::string(4096, 'x')});
  REQUIRE_FALSE(too_big_for_b);
  CHECK(too_big_for_b.error().code() == errc::oversize);
  // Nothing was sent, so the connection and the peer are fine.
  auto small = ask<pong>(a.sys(), echo, 10s, ping{3, "small"});
  REQUIRE(small);
  CHECK(small->n == 3);
}

TRANSPORT_TEST_CASE("messages from one sender arrive in order, under load, from several senders") {
  remote_node a{{"node.name=a", "transport.max-queue-bytes=268435456"}};
  remote_node b{{"node.name=b"}};
  b.serve("sink", sink_actor);
  auto sink = a.t->actor_for(b.address(), "sink");
  constexpr std::uint64_t per_sender = 30000;
  for (auto who : {"s1", "s2", "s3"})
    REQUIRE(a.n->spawn(who, numbered_sender, sink, std::string{who}, per_sender));
  CHECK(wait_until([&] { return stats_of(a.sys(), sink).received == 3 * per_sender; }, 60s));
  auto s = stats_of(a.sys(), sink);
  CHECK(s.received == 3 * per_sender);
  CHECK(s.out_of_order == 0);
  CHECK(counter(*a.n, "troupe_transport_dropped_messages_total", {{"reason", "overloaded"}}) == 0);
}

TRANSPORT_TEST_CASE("pending asks fail at once with node_unreachable when the peer goes away") {
  remote_node a{{"node.name=a"}};
  auto b = std::make_unique<remote_node>(std::vector<std::string>{"node.name=b"});
  auto seen = std::make_shared<std::atomic<int>>(0);
  b->serve("blackhole", [seen](caf::stateful_actor<blackhole_state>* self) {
    return blackhole_actor(self, [seen] { ++*seen; });
  });
  event_log events{*a.t};
  auto b_id = b->t->identity();
  auto hole = a.t->actor_for(b->address(), "blackhole");
  // A timeout far beyond the test's: only the failure signal can end these asks.
  auto asks = std::vector<std::future<expected<pong>>>{};
  for (int i = 0; i < 3; ++i)
    asks.push_back(std::async(std::launch::async,
                              [&] { return ask<pong>(a.sys(), hole, 600s, ping{1, ""}); }));
  REQUIRE(wait_until([&] { return seen->load() == 3; }));
  b->n->shutdown();
  for (auto& f : asks) {
    auto r = f.get();
    REQUIRE_FALSE(r);
    CHECK(r.error().code() == errc::node_unreachable);
  }
  auto lost = events.wait_for(peer_event::kind::lost);
  REQUIRE(lost);
  CHECK(lost->peer == b_id);
  CHECK(counter(*a.n, "troupe_transport_failed_requests_total") == 3);
  // Later asks fail fast too (the peer is backing off or refused), never time out.
  auto later = ask<pong>(a.sys(), hole, 600s, ping{2, ""});
  REQUIRE_FALSE(later);
  CHECK(later.error().code() == errc::node_unreachable);
}

TRANSPORT_TEST_CASE("an unanswered request is forgotten after transport.request-retention") {
  remote_node a{{"node.name=a", "transport.request-retention=1ms"}};
  remote_node b{{"node.name=b"}};
  b.serve("blackhole", [](caf::stateful_actor<blackhole_state>* self) {
    return blackhole_actor(self, nullptr);
  });
  b.serve("echo", echo_actor);
  auto pending = [&] {
    return a.n->metrics().gauge_value("troupe_transport_pending_requests").value_or(-1);
  };
  // The requester gives up (its own timeout); the connection stays up, so only
  // the retention bound keeps the transport from remembering it forever.
  auto given_up = ask<pong>(a.sys(), a.t->actor_for(b.address(), "blackhole"), 50ms, ping{1, ""});
  REQUIRE_FALSE(given_up);
  CHECK(given_up.error().code() == errc::timeout);
  CHECK(pending() == 1);
  // Old entries are swept every 1024 requests.
  auto echo = a.t->actor_for(b.address(), "echo");
  for (int i = 0; i < 1024; ++i)
    REQUIRE(ask<pong>(a.sys(), echo, 10s, ping{i, ""}));
  CHECK(pending() == 0);
}

TRANSPORT_TEST_CASE("a node restarted at the same address is reported as a new incarnation") {
  remote_node a{{"node.name=a", "transport.reconnect-backoff-min=10ms",
                 "transport.reconnect-backoff-max=100ms"}};
  auto b = std::make_unique<remote_node>(std::vector<std::string>{"node.name=b"});
  b->serve("echo", echo_actor);
  auto addr = b->address();
  auto first = b->t->identity();
  event_log events{*a.t};
  a.t->connect(addr);  // wanted: reconnect after failures
  auto up = events.wait_for(peer_event::kind::up);
  REQUIRE(up);
  CHECK(up->peer == first);
  b->n->shutdown();
  b.reset();
  REQUIRE(events.wait_for(peer_event::kind::lost));
  remote_node b2{{"node.name=b2", "node.port=" + std::to_string(addr.port)}};
  b2.serve("echo", echo_actor);
  auto second = b2.t->identity();
  CHECK(second.address == addr);
  CHECK(second.incarnation != first.incarnation);
  auto fresh = events.wait_for(peer_event::kind::new_incarnation);
  REQUIRE(fresh);
  CHECK(fresh->peer == second);
  CHECK(fresh->previous_incarnation == first.incarnation);
  REQUIRE(events.wait_for(peer_event::kind::up, [&](auto& e) { return e.peer == second; }));
  auto r = ask<pong>(a.sys(), a.t->actor_for(addr, "echo"), 10s, ping{9, ""});
  REQUIRE(r);
  CHECK(r->n == 9);
  auto info = a.t->peer(addr);
  REQUIRE(info);
  CHECK(info->incarnation == second.incarnation);
  CHECK(info->wanted);
}

TRANSPORT_TEST_CASE("disconnect says goodbye, the peer reports it lost, and later sends reconnect") {
  remote_node a{{"node.name=a"}};
  remote_node b{{"node.name=b"}};
  b.serve("echo", echo_actor);
  event_log b_events{*b.t};
  auto echo = a.t->actor_for(b.address(), "echo");
  REQUIRE(ask<pong>(a.sys(), echo, 10s, ping{1, ""}));
  REQUIRE(b_events.wait_for(peer_event::kind::up));
  a.t->disconnect(b.address());
  auto lost = b_events.wait_for(peer_event::kind::lost);
  REQUIRE(lost);
  CHECK(lost->peer == a.t->identity());
  CHECK(lost->reason.find("disconnected") != std::string::npos);
  REQUIRE(wait_until([&] {
    auto p = a.t->peer(b.address());
    return p && p->outbound == remote::peer_info::state::idle;
  }));
  auto again = ask<pong>(a.sys(), echo, 10s, ping{2, ""});
  REQUIRE(again);
  CHECK(again->n == 2);
}

TRANSPORT_TEST_CASE("peer events reach subscribed actors as messages") {
  remote_node a{{"node.name=a"}};
  remote_node b{{"node.name=b"}};
  auto got = std::make_shared<event_counter>();
  auto listener = a.n->spawn("listener", [got](caf::event_based_actor*) -> caf::behavior {
    return {[got](const peer_event& e) {
      if (e.what == peer_event::kind::up)
        got->add();
    }};
  });
  REQUIRE(listener);
  a.t->subscribe(*listener);
  a.t->connect(b.address());
  CHECK(got->wait_for(1));
}

TRANSPORT_TEST_CASE("a message sent from the up callback goes out after the handshake's last frame") {
  // `up` is emitted on the I/O thread before it has written the initiator's auth
  // frame, and the queue is empty then (connect() queued nothing): the message
  // must still follow the auth frame, or b refuses the handshake, every time.
  remote_node a{{"node.name=a"}};
  remote_node b{{"node.name=b"}};
  auto a_sink = a.serve("sink", sink_actor);
  b.serve("relay", relay_actor);
  auto relay = a.t->actor_for(b.address(), "relay");
  remote::actor_ref back{a.address(), "sink"};
  auto ups = std::make_shared<std::atomic<int>>(0);
  a.t->subscribe([relay, back, ups, to = b.address()](const peer_event& e) {
    if (e.what == peer_event::kind::up && e.peer.address == to) {
      ++*ups;
      caf::anon_send(relay, relay_request{back, numbered{"up", 0, "sent from the callback"}});
    }
  });
  a.t->connect(b.address());
  // b relays the message back to a's sink: it was delivered and answered.
  CHECK(wait_until([&] { return stats_of(a.sys(), a_sink).received == 1; }));
  for (auto* n : {&a, &b})
    CHECK(counter(*n->n, "troupe_transport_connection_errors_total",
                  {{"reason", "unexpected_frame"}})
          == 0);
  CHECK(ups->load() == 1);  // one connection: no refused handshake, no reconnect
  auto info = a.t->peer(b.address());
  REQUIRE(info);
  CHECK(info->outbound == remote::peer_info::state::connected);
}

TEST_CASE("with a shared secret, peers that know it connect and others are refused") {
  remote_node a{{"node.name=a", "transport.secret=s3cret"}};
  remote_node b{{"node.name=b", "transport.secret=s3cret"}};
  remote_node wrong{{"node.name=wrong", "transport.secret=guess"}};
  remote_node none{{"node.name=none"}};
  a.serve("echo", echo_actor);
  log_capture a_log{a.n->log()};
  auto ok = ask<pong>(b.sys(), b.t->actor_for(a.address(), "echo"), 10s, ping{1, ""});
  REQUIRE(ok);
  for (auto* intruder : {&wrong, &none}) {
    auto r = ask<pong>(intruder->sys(), intruder->t->actor_for(a.address(), "echo"), 10s,
                       ping{2, ""});
    REQUIRE_FALSE(r);
    CHECK(r.error().code() == errc::node_unreachable);
  }
  // The acceptor proves the secret first, so an intruder that cannot check the
  // proof refuses on its side; `a` logs the refusal it was sent. (An intruder that
  // goes on without the secret is refused by `a`: see raw_socket_test.cpp.)
  for (auto* intruder : {&wrong, &none})
    CHECK(counter(*intruder->n, "troupe_transport_connection_errors_total",
                  {{"reason", "unauthorized"}})
          == 1);
  CHECK(wait_until([&] {
    return counter(*a.n, "troupe_transport_connection_errors_total",
                   {{"reason", "refused_by_peer"}})
           == 2;
  }));
  CHECK(a_log.contains("authentication"));
  // a still serves b.
  CHECK(ask<pong>(b.sys(), b.t->actor_for(a.address(), "echo"), 10s, ping{3, ""}));
}

TEST_CASE("invalid transport settings are refused with the key's name") {
  // Out of its range: the config refuses it (config_test.cpp covers every key).
  config cfg{node_config_keys()};
  auto t = cfg.set_text("transport.max-frame-size", "10");
  REQUIRE_FALSE(t);
  CHECK(t.error().code() == errc::invalid_config);
  CHECK(t.error().message().find("transport.max-frame-size") != std::string::npos);
  // In range, but a queue that cannot hold one frame: the transport refuses it.
  auto m = make_node({"transport.max-frame-size=65536", "transport.max-queue-bytes=2000"});
  auto t2 = remote::transport::start(*m);
  REQUIRE_FALSE(t2);
  CHECK(t2.error().message().find("transport.max-queue-bytes") != std::string::npos);
}

TEST_CASE("a taken port is an io_error naming the address") {
  remote_node a{{"node.name=a"}};
  auto n = make_node({"node.port=" + std::to_string(a.address().port)});
  auto t = remote::transport::start(*n);
  REQUIRE_FALSE(t);
  CHECK(t.error().code() == errc::io_error);
  CHECK(t.error().message().find(std::to_string(a.address().port)) != std::string::npos);
}
