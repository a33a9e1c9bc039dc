// Membership messages on the wire, and the cluster.* configuration.
#include "membership_test_support.hpp"

#include "troupe/actors/config.hpp"
#include "troupe/membership/protocol.hpp"
#include "troupe/membership/settings.hpp"

#include <doctest/doctest.h>

#include <memory>

using namespace troupe;
using namespace troupe::membership;
using namespace troupe::membership::test;

namespace {

envelope round_trip(const envelope& e) {
  auto bytes = encode(e);
  auto back = decode_envelope(bytes.data(), bytes.size());
  REQUIRE(back);
  CHECK(back->from == e.from);
  CHECK(back->to == e.to);
  CHECK(back->message.index() == e.message.index());
  return *back;
}

} // namespace

TEST_CASE("membership protocol: every message survives encoding") {
  auto g = state_of({up(0), up(1), with_status(2, member_status::joining)});
  g.overview.mark_unreachable(node_id(0), node_id(1));
  g.remove(node_id(3, 9), std::chrono::seconds{42});
  g.find(node_id(1))->roles = {"a", "b"};
  auto shared = std::make_shared<const gossip>(g);
  auto back = round_trip(envelope{node_id(0), node_id(1), gossip_state{shared}});
  CHECK(*std::get<gossip_state>(back.message).state == g);
  round_trip(envelope{node_id(0), node_id(1), welcome{shared}});
  auto j = std::get<join_request>(round_trip(envelope{node_id(0), node_id(1),
                                                      join_request{"c", {"r"}, "2.0", {{"k", "v"}}}})
                                    .message);
  CHECK(j.compatibility == std::vector<std::pair<std::string, std::string>>{{"k", "v"}});
  auto any_incarnation = node_id(1, 0);
  CHECK(std::get<init_join>(
          round_trip(envelope{node_id(0), any_incarnation, init_join{"c", true}}).message)
          .from_member);
  CHECK(std::get<init_join_ack>(round_trip(envelope{node_id(0), node_id(1), init_join_ack{3}}).message)
          .seed_rank == 3);
  round_trip(envelope{node_id(0), node_id(1), init_join_nack{}});
  round_trip(envelope{node_id(0), node_id(1), join_refused{"why"}});
  round_trip(envelope{node_id(0), node_id(1), gossip_status{g.version, g.seen}});
  CHECK(std::get<heartbeat>(round_trip(envelope{node_id(0), node_id(1), heartbeat{7}}).message).sequence
        == 7);
  round_trip(envelope{node_id(0), node_id(1), heartbeat_response{7}});
}

TEST_CASE("membership protocol: malformed bytes are a decode_failed error, never a crash") {
  std::vector<std::uint8_t> garbage{0xff, 0x00, 0x13, 0x37};
  auto r = decode_envelope(garbage.data(), garbage.size());
  REQUIRE_FALSE(r);
  CHECK(r.error().code() == errc::decode_failed);
  auto bytes = encode(envelope{node_id(0), node_id(1), heartbeat{1}});
  for (std::size_t cut = 0; cut < bytes.size(); ++cut)
    CHECK_FALSE(decode_envelope(bytes.data(), cut));
  auto unknown = nlohmann::json::to_cbor(
    nlohmann::json{{"f", {"h", 1, 1}}, {"t", {"h", 2, 1}}, {"k", "launch_missiles"}, {"b", {}}});
  auto u = decode_envelope(unknown.data(), unknown.size());
  REQUIRE_FALSE(u);
  CHECK(u.error().message().find("launch_missiles") != std::string::npos);
  auto bad_status = nlohmann::json::to_cbor(nlohmann::json{
    {"f", {"h", 1, 1}},
    {"t", {"h", 2, 1}},
    {"k", "gossip_state"},
    {"b", {{"m", {{{"h", 1, 1}, 99, 0, nlohmann::json::array(), ""}}}, {"r", nlohmann::json::array()},
           {"s", nlohmann::json::array()}, {"v", nlohmann::json::array()}, {"x", nlohmann::json::array()}}}});
  CHECK_FALSE(decode_envelope(bad_status.data(), bad_status.size()));
}

TEST_CASE("cluster config: defaults fit the failover budget, bad values name the key") {
  auto schema = node_config_keys();
  add_config_keys(schema);
  config cfg{schema};
  auto s = settings_from(cfg);
  REQUIRE(s);
  CHECK(s->split_brain.strategy == downing_strategy::keep_majority);
  CHECK(s->split_brain.down_all_when_unstable == s->split_brain.stable_after * 3 / 4);
  auto expect_error = [&](std::string_view key, std::string_view value) {
    // A value outside the key's range is refused when it is set; one that is
    // in range but wrong together with the rest is refused by settings_from.
    // Either way the error is invalid_config and names the key.
    config c{schema};
    error err;
    if (auto set = c.set_text(key, value); !set) {
      err = set.error();
    } else {
      auto r = settings_from(c);
      REQUIRE_FALSE(r);
      err = r.error();
    }
    CHECK(err.code() == errc::invalid_config);
    CHECK(err.message().find(key) != std::string::npos);
  };
  expect_error("cluster.split-brain.strategy", "keep-minority");
  expect_error("cluster.seed-nodes", "localhost");
  expect_error("cluster.gossip-interval", "0");
  expect_error("cluster.failure-detector.threshold", "0");
  expect_error("cluster.split-brain.down-all-when-indirectly-connected", "1.5");
  expect_error("cluster.min-nr-of-members", "0");
  {
    config c{schema};
    REQUIRE(c.set_text("cluster.split-brain.strategy", "static-quorum"));
    auto r = settings_from(c);  // static-quorum needs a quorum size
    REQUIRE_FALSE(r);
    CHECK(r.error().message().find("cluster.split-brain.quorum-size") != std::string::npos);
  }
  config c{schema};
  REQUIRE(c.set_text("cluster.seed-nodes", "127.0.0.1:7001,127.0.0.1:7002"));
  REQUIRE(c.set_text("cluster.allow-weakly-up-members", "0"));
  auto t = settings_from(c);
  REQUIRE(t);
  CHECK(t->seed_nodes.size() == 2);
  CHECK_FALSE(t->weakly_up_after);
}
