// Incarnation-pinned addressing and quarantine: what the membership layer needs so
// that a message meant for a dead incarnation never reaches its replacement, and a
// downed or removed incarnation is shut out for good.
#include "remote/remote_fixture.hpp"

#include "troupe/actors/ask.hpp"

#include <future>

using namespace std::chrono_literals;
using namespace troupe;
using namespace troupe::test;
using remote::peer_event;

TRANSPORT_TEST_CASE("a message pinned to an incarnation never reaches its replacement") {
  remote_node a{with({"node.name=a"}, quick_backoff)};
  auto b = std::make_unique<remote_node>(std::vector<std::string>{"node.name=b"});
  b->serve("echo", echo_actor);
  auto first = b->t->identity();
  auto addr = first.address;
  auto pinned = a.t->actor_for(first, "echo");
  CHECK(a.t->actor_for(first, "echo") == pinned);  // one handle per (incarnation, name)
  CHECK(a.t->actor_for(addr, "echo") != pinned);
  CHECK(a.t->actor_for(remote::actor_ref{addr, "echo", first.incarnation}) == pinned);
  auto r = ask<pong>(a.sys(), pinned, 10s, ping{1, "to the first"});
  REQUIRE(r);
  event_log events{*a.t};
  b->n->shutdown();
  b.reset();
  REQUIRE(events.wait_for(peer_event::kind::lost));
  // The backoff after the loss ends; a knows no other incarnation yet.
  REQUIRE(wait_until([&] {
    auto p = a.t->peer(addr);
    return p && p->outbound == remote::peer_info::state::idle;
  }));
  remote_node second{{"node.name=second", "node.port=" + std::to_string(addr.port)}};
  auto sink = second.serve("sink", sink_actor);
  second.serve("echo", echo_actor);
  // The request goes out (a learns of the new incarnation only from the
  // connection it opens for it) and the new process refuses it.
  auto refused = ask<pong>(a.sys(), pinned, 10s, ping{2, "to the first"});
  REQUIRE_FALSE(refused);
  CHECK(refused.error().code() == errc::node_unreachable);
  CHECK(refused.error().message().find("the one it was meant for is gone") != std::string::npos);
  // Now a knows: pinned sends fail at the sender, one-way ones are dropped there.
  auto again = ask<pong>(a.sys(), pinned, 10s, ping{3, ""});
  REQUIRE_FALSE(again);
  CHECK(again.error().message().find("is gone") != std::string::npos);
  auto direct = a.t->remote(first, "sink").send(numbered{"a", 0, "to the first"});
  REQUIRE_FALSE(direct);
  CHECK(direct.error().code() == errc::node_unreachable);
  auto dropped_before = dropped_messages(*a.n, "node_unreachable");
  caf::anon_send(a.t->actor_for(first, "sink"), numbered{"a", 0, "to the first"});
  CHECK(wait_until([&] { return dropped_messages(*a.n, "node_unreachable") == dropped_before + 1; }));
  auto stats = ask<sink_stats>(second.sys(), sink, 10s, sink_stats_request{});
  REQUIRE(stats);
  CHECK(stats->received == 0);
  // The address form, and a handle pinned to the new incarnation, reach it.
  CHECK(ask<pong>(a.sys(), a.t->actor_for(addr, "echo"), 10s, ping{4, ""}));
  CHECK(ask<pong>(a.sys(), a.t->actor_for(second.t->identity(), "echo"), 10s, ping{5, ""}));
  CHECK(a.t->remote(second.t->identity(), "sink").send(numbered{"a", 0, "to the second"}));
}

TRANSPORT_TEST_CASE("a pinned message that reaches another incarnation is refused there") {
  // The receiving side's check, without help from the sender: a request for an
  // incarnation that never existed.
  remote_node a{{"node.name=a"}};
  remote_node b{{"node.name=b"}};
  auto sink = b.serve("sink", sink_actor);
  b.serve("echo", echo_actor);
  remote::node_identity never{b.address(), 0x1234};
  auto r = ask<pong>(a.sys(), a.t->actor_for(never, "echo"), 10s, ping{1, ""});
  REQUIRE_FALSE(r);
  CHECK(r.error().code() == errc::node_unreachable);
  // One-way: either refused at the sender (a learned b's incarnation from the
  // request's connection) or dropped at b; never delivered.
  auto sent = a.t->remote(never, "sink").send(numbered{"a", 0, ""});
  if (sent)
    CHECK(wait_until([&] { return dropped_messages(*b.n, "wrong_incarnation") == 1; }));
  auto stats = ask<sink_stats>(b.sys(), sink, 10s, sink_stats_request{});
  REQUIRE(stats);
  CHECK(stats->received == 0);
  // Pinned to this very node: delivered if it is this incarnation, else refused.
  a.serve("echo", echo_actor);
  CHECK(ask<pong>(a.sys(), a.t->actor_for(a.t->identity(), "echo"), 10s, ping{2, ""}));
  auto stale = ask<pong>(a.sys(), a.t->actor_for(remote::node_identity{a.address(), 0x99}, "echo"),
                         10s, ping{3, ""});
  REQUIRE_FALSE(stale);
  CHECK(stale.error().code() == errc::node_unreachable);
}

TEST_CASE("an actor_ref carries its incarnation through JSON, and only when set") {
  auto node = remote::node_address::parse("10.0.0.1:7000");
  REQUIRE(node);
  remote::actor_ref pinned;
  pinned.node = *node;
  pinned.name = "membership";
  pinned.incarnation = 0xfeed;
  nlohmann::json j = pinned;
  CHECK(j.at("incarnation") == 0xfeed);
  CHECK(j.get<remote::actor_ref>() == pinned);
  auto any = pinned;
  any.incarnation = 0;
  nlohmann::json k = any;
  CHECK_FALSE(k.contains("incarnation"));
  CHECK(k.get<remote::actor_ref>() == any);
}

TRANSPORT_TEST_CASE("a quarantined incarnation is shut out both ways, and told why") {
  remote_node a{with({"node.name=a"}, quick_backoff)};
  remote_node b{with({"node.name=b"}, quick_backoff)};
  a.serve("echo", echo_actor);
  b.serve("echo", echo_actor);
  b.serve("blackhole", [](caf::stateful_actor<blackhole_state>* self) {
    return blackhole_actor(self, nullptr);
  });
  event_log a_events{*a.t};
  log_capture b_log{b.n->log()};
  auto b_id = b.t->identity();
  REQUIRE(ask<pong>(a.sys(), a.t->actor_for(b.address(), "echo"), 10s, ping{1, ""}));
  REQUIRE(ask<pong>(b.sys(), b.t->actor_for(a.address(), "echo"), 10s, ping{2, ""}));
  auto pending = std::async(std::launch::async, [&] {
    return ask<pong>(a.sys(), a.t->actor_for(b.address(), "blackhole"), 600s, ping{3, ""});
  });
  REQUIRE(wait_until([&] {
    return a.n->metrics().gauge_value("troupe_transport_pending_requests").value_or(0) == 1;
  }));
  a.t->quarantine(b_id, "downed by the test");
  auto failed = pending.get();
  REQUIRE_FALSE(failed);
  CHECK(failed.error().code() == errc::node_unreachable);
  CHECK(failed.error().message().find("quarantined") != std::string::npos);
  auto q = a_events.wait_for(peer_event::kind::quarantined);
  REQUIRE(q);
  CHECK(q->peer == b_id);
  CHECK(q->reason == "downed by the test");
  auto events = a_events.events();
  REQUIRE(events.size() >= 2);
  CHECK(events[events.size() - 2].what == peer_event::kind::lost);  // lost, then quarantined
  CHECK(a.t->is_quarantined(b_id));
  CHECK_FALSE(a.t->is_quarantined(remote::node_identity{b_id.address, b_id.incarnation + 1}));
  // a sends nothing to it: pinned sends fail at once, by address the handshake
  // with the quarantined incarnation is refused.
  auto pinned = ask<pong>(a.sys(), a.t->actor_for(b_id, "echo"), 10s, ping{4, ""});
  REQUIRE_FALSE(pinned);
  CHECK(pinned.error().message().find("quarantined") != std::string::npos);
  auto refusals = [&] {
    return counter(*a.n, "troupe_transport_connection_errors_total", {{"reason", "quarantined"}});
  };
  // (Asks right after the loss fail fast while the connection backs off; the
  // next attempt reaches the handshake.)
  CHECK(wait_until([&] {
    CHECK_FALSE(ask<pong>(a.sys(), a.t->actor_for(b.address(), "echo"), 1s, ping{5, ""}));
    return refusals() >= 1;
  }));
  // Nor does it take anything from it, and b learns why.
  auto told = "handshake with " + a.address().to_string()
              + " failed: peer refused the connection: " + b_id.to_string()
              + " is quarantined by " + a.t->identity().to_string();
  CHECK(wait_until([&] {
    auto from_b = ask<pong>(b.sys(), b.t->actor_for(a.address(), "echo"), 1s, ping{6, ""});
    CHECK_FALSE(from_b);
    return b_log.contains(told);
  }));
  CHECK(refusals() >= 2);
  a.t->quarantine(b_id, "again");  // idempotent: no second event
  CHECK(a_events.count(peer_event::kind::quarantined) == 1);
}

TRANSPORT_TEST_CASE("quarantine shuts out one incarnation, not the address") {
  remote_node a{with({"node.name=a"}, quick_backoff)};
  auto b = std::make_unique<remote_node>(std::vector<std::string>{"node.name=b"});
  b->serve("echo", echo_actor);
  auto first = b->t->identity();
  auto port = first.address.port;
  REQUIRE(ask<pong>(a.sys(), a.t->actor_for(first.address, "echo"), 10s, ping{1, ""}));
  a.t->quarantine(first, "removed");
  b->n->shutdown();
  b.reset();
  remote_node second{{"node.name=second", "node.port=" + std::to_string(port)}};
  second.serve("echo", echo_actor);
  // Reconnects are refused until the backoff passes the old incarnation's
  // attempts; the new one is welcome.
  CHECK(wait_until([&] {
    return ask<pong>(a.sys(), a.t->actor_for(first.address, "echo"), 2s, ping{1, ""}).has_value();
  }));
  CHECK_FALSE(a.t->is_quarantined(second.t->identity()));
  CHECK(a.t->is_quarantined(first));
}
