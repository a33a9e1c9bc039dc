// Packets: bytes with a manifest for a channel of a peer incarnation, outside CAF
// (the membership protocol's messages), with the sender's identity.
#include "remote/remote_fixture.hpp"


using namespace std::chrono_literals;
using namespace troupe;
using namespace troupe::test;

namespace {

std::vector<std::uint8_t> payload_of(std::uint32_t i) {
  return {static_cast<std::uint8_t>(i >> 8), static_cast<std::uint8_t>(i), 0xee};
}

} // namespace

TRANSPORT_TEST_CASE("packets reach the subscribers of their channel, in order, with the sender's identity") {
  remote_node a{{"node.name=a"}};
  remote_node b{{"node.name=b"}};
  packet_log gossip{*b.t, "membership"};
  auto b_id = b.t->identity();
  for (std::uint32_t i = 0; i < 500; ++i)
    REQUIRE(a.t->send_packet(b_id, "membership", "cluster.gossip", 3, payload_of(i)));
  REQUIRE(gossip.wait_for_count(500));
  auto got = gossip.items();
  for (std::uint32_t i = 0; i < got.size(); ++i) {
    CHECK(got[i].from == a.t->identity());
    CHECK(got[i].channel == "membership");
    CHECK(got[i].manifest == "cluster.gossip");
    CHECK(got[i].version == 3);
    CHECK(got[i].payload == payload_of(i));
  }
  // An actor subscriber gets them as messages.
  auto counted = std::make_shared<event_counter>();
  auto listener = b.n->spawn("listener", [counted](caf::event_based_actor*) -> caf::behavior {
    return {[counted](const remote::packet& p) {
      if (p.manifest == "cluster.heartbeat")
        counted->add();
    }};
  });
  REQUIRE(listener);
  b.t->subscribe_packets("failure-detector", *listener);
  REQUIRE(a.t->send_packet(b_id, "failure-detector", "cluster.heartbeat", 1, {}));
  CHECK(counted->wait_for(1));
  // "Any incarnation" reaches the current one; a channel without subscribers
  // drops it and counts.
  REQUIRE(a.t->send_packet({b.address(), 0}, "membership", "cluster.gossip", 3, payload_of(500)));
  CHECK(gossip.wait_for_count(501));
  REQUIRE(a.t->send_packet(b_id, "nobody-listens", "x", 1, {}));
  CHECK(wait_until([&] {
    return counter(*b.n, "troupe_transport_dropped_messages_total", {{"reason", "unknown_target"}})
           == 1;
  }));
}

TRANSPORT_TEST_CASE("packets for another incarnation, to this node, and bad arguments") {
  remote_node a{{"node.name=a"}};
  remote_node b{{"node.name=b"}};
  packet_log on_b{*b.t, "membership"};
  packet_log on_a{*a.t, "membership"};
  // Pinned to an incarnation b is not: refused by b (or at a, once a knows b).
  remote::node_identity stale{b.address(), b.t->identity().incarnation + 1};
  auto sent = a.t->send_packet(stale, "membership", "m", 1, {});
  if (sent)
    CHECK(wait_until([&] {
      return counter(*b.n, "troupe_transport_dropped_messages_total",
                     {{"reason", "wrong_incarnation"}})
             == 1;
    }));
  else
    CHECK(sent.error().code() == errc::node_unreachable);
  REQUIRE(a.t->send_packet(b.t->identity(), "membership", "m", 1, {}));
  REQUIRE(on_b.wait_for_count(1));
  CHECK(on_b.items().size() == 1);  // not the stale one
  auto after = a.t->send_packet(stale, "membership", "m", 1, {});
  REQUIRE_FALSE(after);
  CHECK(after.error().code() == errc::node_unreachable);
  // To this node itself: delivered at once, from itself.
  REQUIRE(a.t->send_packet(a.t->identity(), "membership", "self", 1, std::vector<std::uint8_t>{1}));
  REQUIRE(on_a.wait_for_count(1));
  CHECK(on_a.items()[0].from == a.t->identity());
  auto gone = a.t->send_packet({a.address(), 0x77}, "membership", "self", 1, {});
  REQUIRE_FALSE(gone);
  CHECK(gone.error().code() == errc::node_unreachable);
  // Quarantined incarnations get none.
  a.t->quarantine(b.t->identity(), "test");
  auto shut = a.t->send_packet(b.t->identity(), "membership", "m", 1, {});
  REQUIRE_FALSE(shut);
  CHECK(shut.error().message().find("quarantined") != std::string::npos);
  for (auto [channel, manifest, version] :
       {std::tuple{"", "m", 1u}, std::tuple{"c", "", 1u}, std::tuple{"c", "m", 0u}}) {
    auto bad = a.t->send_packet(a.t->identity(), channel, manifest, version, {});
    REQUIRE_FALSE(bad);
    CHECK(bad.error().code() == errc::invalid_argument);
  }
}
