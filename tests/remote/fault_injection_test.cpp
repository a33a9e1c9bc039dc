// Fault injection and the transport's clock: the frame filter every frame passes
// (the senders' direct writes included), partitions, delays that keep the order,
// the test-only rules file, heartbeat samples for a failure detector, and a manual
// clock that decides what the transport measures.
#include "remote/remote_fixture.hpp"
#include "support/temp_dir.hpp"

#include "troupe/actors/ask.hpp"

#include <filesystem>
#include <fstream>

using namespace std::chrono_literals;
using namespace troupe;
using namespace troupe::test;
using remote::frame_direction;
using remote::peer_event;
namespace wire = troupe::remote::wire;

namespace {

/// Counts the frames it sees by direction and type; lets everything pass.
class frame_counter final : public remote::frame_filter {
public:
  remote::filter_verdict check(const remote::frame_info& f) override {
    std::lock_guard<std::mutex> guard{mtx_};
    ++seen_[{f.direction, f.type, f.outbound_connection}];
    return remote::filter_verdict::pass();
  }
  std::size_t count(frame_direction d, wire::frame_type t) const {
    std::lock_guard<std::mutex> guard{mtx_};
    std::size_t n = 0;
    for (auto& [key, c] : seen_)
      if (std::get<0>(key) == d && std::get<1>(key) == t)
        n += c;
    return n;
  }
  std::size_t count(frame_direction d, wire::frame_type t, bool outbound_connection) const {
    std::lock_guard<std::mutex> guard{mtx_};
    auto i = seen_.find({d, t, outbound_connection});
    return i == seen_.end() ? 0 : i->second;
  }

private:
  mutable std::mutex mtx_;
  std::map<std::tuple<frame_direction, wire::frame_type, bool>, std::size_t> seen_;
};

/// Delays every other message frame in `direction` by `d`.
class every_other_delayed final : public remote::frame_filter {
public:
  every_other_delayed(frame_direction direction, duration d) : direction_(direction), d_(d) {}
  remote::filter_verdict check(const remote::frame_info& f) override {
    if (f.direction != direction_ || f.type != wire::frame_type::message)
      return remote::filter_verdict::pass();
    return n_++ % 2 == 0 ? remote::filter_verdict::hold(d_) : remote::filter_verdict::pass();
  }

private:
  frame_direction direction_;
  duration d_;
  std::uint64_t n_ = 0;
};

const auto fast_detection = with({"transport.heartbeat-interval=20ms",
                                  "transport.failure-timeout=300ms"},
                                 quick_backoff);

} // namespace

TRANSPORT_TEST_CASE("every frame passes the filter, both ways, the senders' direct writes included") {
  auto seen = std::make_shared<frame_counter>();
  remote_node a{{"node.name=a"}, {.filter = seen}};
  remote_node b{{"node.name=b"}};
  b.serve("echo", echo_actor);
  auto echo = a.t->actor_for(b.address(), "echo");
  auto direct_before = counter(*a.n, "troupe_transport_direct_writes_total");
  for (int i = 0; i < 10; ++i)
    REQUIRE(ask<pong>(a.sys(), echo, 10s, ping{i, "lone"}));
  // Lone requests on an idle connection would be written by their senders; with a
  // filter they go through the I/O thread, where it sees them.
  CHECK(counter(*a.n, "troupe_transport_direct_writes_total") == direct_before);
  CHECK(seen->count(frame_direction::outgoing, wire::frame_type::request) == 10);
  CHECK(seen->count(frame_direction::incoming, wire::frame_type::response) == 10);
  CHECK(seen->count(frame_direction::outgoing, wire::frame_type::hello) == 1);
  CHECK(seen->count(frame_direction::incoming, wire::frame_type::welcome) == 1);
  CHECK(seen->count(frame_direction::outgoing, wire::frame_type::auth) == 1);
  CHECK(wait_until([&] {
    return seen->count(frame_direction::incoming, wire::frame_type::heartbeat) > 0
           && seen->count(frame_direction::outgoing, wire::frame_type::heartbeat) > 0;
  }));
  // Removed, the direct path is back.
  a.t->set_filter(nullptr);
  CHECK(wait_until([&] {
    REQUIRE(ask<pong>(a.sys(), echo, 10s, ping{0, "lone"}));
    return counter(*a.n, "troupe_transport_direct_writes_total") > direct_before;
  }));
}

TRANSPORT_TEST_CASE("a partition drops traffic both ways until it heals") {
  auto faults = std::make_shared<remote::fault_injector>();
  remote_node a{with({"node.name=a"}, fast_detection), {.filter = faults}};
  remote_node b{with({"node.name=b"}, fast_detection)};
  b.serve("echo", echo_actor);
  event_log a_events{*a.t};
  event_log b_events{*b.t};
  a.t->connect(b.address());
  REQUIRE(a_events.wait_for(peer_event::kind::up));
  REQUIRE(b_events.wait_for(peer_event::kind::up));
  faults->drop(b.address());
  // Heartbeats are dropped too: both sides declare the other lost (the first to
  // time out closes the connection, so the other may see it closed instead).
  auto a_lost = a_events.wait_for(peer_event::kind::lost);
  auto b_lost = b_events.wait_for(peer_event::kind::lost);
  REQUIRE(a_lost);
  REQUIRE(b_lost);
  CHECK((a_lost->reason + b_lost->reason).find("no traffic") != std::string::npos);
  CHECK_FALSE(ask<pong>(a.sys(), a.t->actor_for(b.address(), "echo"), 200ms, ping{1, ""}));
  CHECK(counter(*a.n, "troupe_transport_filtered_frames_total", {{"action", "drop"}}) > 0);
  faults->clear();
  // a wants b: it reconnects by itself once the partition heals (after the
  // handshake deadline of an attempt whose hello was dropped, at the latest).
  CHECK(wait_until([&] { return a_events.count(peer_event::kind::up) == 2; }, 20s));
  CHECK(ask<pong>(a.sys(), a.t->actor_for(b.address(), "echo"), 10s, ping{2, ""}));
}

TRANSPORT_TEST_CASE("a delayed frame holds the frames behind it: order survives delays") {
  for (auto direction : {frame_direction::outgoing, frame_direction::incoming}) {
    auto delays = std::make_shared<every_other_delayed>(direction, 30ms);
    bool on_sender = direction == frame_direction::outgoing;
    remote_node a{{"node.name=a"}, {.filter = on_sender ? delays : nullptr}};
    remote_node b{{"node.name=b"}, {.filter = on_sender ? nullptr : delays}};
    auto sink = b.serve("sink", sink_actor);
    auto to_sink = a.t->actor_for(b.address(), "sink");
    for (std::uint64_t i = 0; i < 200; ++i)
      caf::anon_send(to_sink, numbered{"a", i, "x"});
    REQUIRE(wait_until([&] { return stats_of(b.sys(), sink).received == 200; }));
    CHECK(stats_of(b.sys(), sink).out_of_order == 0);
    auto& delayed = on_sender ? *a.n : *b.n;
    CHECK(counter(delayed, "troupe_transport_filtered_frames_total", {{"action", "delay"}})
          >= 100);
  }
}

TEST_CASE("transport.fault-injection.rules-file partitions a node until the file says otherwise") {
  temp_dir dir;
  auto rules = dir.file("rules");
  remote_node b{with({"node.name=b"}, fast_detection)};
  b.serve("echo", echo_actor);
  remote_node a{with({"node.name=a", "transport.fault-injection.rules-file=" + rules},
                     fast_detection)};
  log_capture a_log{a.n->log()};
  event_log a_events{*a.t};
  auto echo = a.t->actor_for(b.address(), "echo");
  REQUIRE(ask<pong>(a.sys(), echo, 10s, ping{1, ""}));  // no file: no rules
  a.t->connect(b.address());
  // Written aside and renamed, so that the transport never reads half a file.
  auto write = [&](const std::string& text) {
    std::ofstream{rules + ".new"} << text;
    std::filesystem::rename(rules + ".new", rules);
  };
  write("# partition from b\ndrop " + b.address().to_string() + "\n");
  REQUIRE(a_events.wait_for(peer_event::kind::lost));
  CHECK_FALSE(ask<pong>(a.sys(), echo, 200ms, ping{2, ""}));
  // A file that does not parse changes nothing, and says which line is wrong.
  write("drop " + b.address().to_string() + "\ndelay nowhere\n");
  CHECK(a_log.wait_for("line 2 ('delay nowhere')"));
  CHECK_FALSE(ask<pong>(a.sys(), echo, 200ms, ping{3, ""}));
  write("");  // healed
  CHECK(wait_until([&] { return ask<pong>(a.sys(), echo, 1s, ping{4, ""}).has_value(); }, 20s));
}

TEST_CASE("fault rules: what parses, and errors that name the line") {
  remote::fault_injector f;
  CHECK(f.load("# nothing\n\n"));
  CHECK(f.load("drop 127.0.0.1:7001\ndelay 127.0.0.1:7002 250ms out\ndrop [::1]:7003 in\n"));
  remote::node_identity p1{{"127.0.0.1", 7001}, 1};
  remote::node_identity p2{{"127.0.0.1", 7002}, 1};
  remote::node_identity other{{"127.0.0.1", 7009}, 1};
  wire::bytes frame{0, 0, 0, 1, 32};
  auto verdict = [&](const remote::node_identity& p, frame_direction d) {
    return f.check({d, p, true, wire::frame_type::heartbeat, frame});
  };
  using action = remote::filter_verdict::action;
  CHECK(verdict(p1, frame_direction::outgoing).what == action::drop);
  CHECK(verdict(p1, frame_direction::incoming).what == action::drop);
  CHECK(verdict(p2, frame_direction::outgoing).what == action::delay);
  CHECK(verdict(p2, frame_direction::outgoing).delay == 250ms);
  CHECK(verdict(p2, frame_direction::incoming).what == action::pass);
  CHECK(verdict(other, frame_direction::outgoing).what == action::pass);
  for (std::string bad : {"drop", "drop nowhere", "delay 127.0.0.1:1 soon", "drop 127.0.0.1:1 up",
                          "block 127.0.0.1:1"}) {
    auto r = f.load("# fine\n" + bad + "\n");
    REQUIRE_FALSE(r);
    CHECK(r.error().message().find("line 2") != std::string::npos);
  }
  CHECK(verdict(p1, frame_direction::outgoing).what == action::drop);  // unchanged
}

TRANSPORT_TEST_CASE("heartbeat arrivals reach subscribers, one stream per peer, on the transport's clock") {
  auto clock = std::make_shared<remote::manual_clock>();
  auto seen = std::make_shared<frame_counter>();
  remote_node a{{"node.name=a", "transport.heartbeat-interval=20ms"},
                {.clock = clock, .filter = seen}};
  remote_node b{{"node.name=b", "transport.heartbeat-interval=20ms"}};
  a.serve("echo", echo_actor);
  heartbeat_log samples{*a.t};
  auto to_actor = std::make_shared<event_counter>();
  auto listener = a.n->spawn("listener", [to_actor](caf::event_based_actor*) -> caf::behavior {
    return {[to_actor](const remote::heartbeat_sample&) { to_actor->add(); }};
  });
  REQUIRE(listener);
  a.t->subscribe_heartbeats(*listener);
  // Connections both ways: b's heartbeats arrive on two of them.
  a.t->connect(b.address());
  REQUIRE(ask<pong>(b.sys(), b.t->actor_for(a.address(), "echo"), 10s, ping{1, ""}));
  REQUIRE(samples.wait_for_count(20));
  CHECK(to_actor->wait_for(20));
  samples.stop();
  auto taken = samples.size();
  for (auto& s : samples.items()) {
    CHECK(s.peer == b.t->identity());
    CHECK(s.arrival == clock->now());  // the manual clock, which never moved
  }
  // One stream per peer: only the heartbeats of a's outbound connection count,
  // though b's heartbeats arrive on its own (a's inbound) connection as well.
  CHECK(taken <= seen->count(frame_direction::incoming, wire::frame_type::heartbeat, true));
  CHECK(seen->count(frame_direction::incoming, wire::frame_type::heartbeat, false) > 0);
}

TRANSPORT_TEST_CASE("the failure timeout is judged by the transport's clock") {
  auto clock = std::make_shared<remote::manual_clock>();
  auto faults = std::make_shared<remote::fault_injector>();
  // An hour without traffic: in real time this test would never see it.
  remote_node a{{"node.name=a", "transport.heartbeat-interval=20ms",
                 "transport.failure-timeout=1h"},
                {.clock = clock, .filter = faults}};
  remote_node b{{"node.name=b", "transport.heartbeat-interval=20ms"}};
  event_log events{*a.t};
  a.t->connect(b.address());
  REQUIRE(events.wait_for(peer_event::kind::up));
  faults->drop(b.address(), remote::frame_directions::incoming);  // nothing heard from b
  clock->advance(2h);
  auto lost = events.wait_for(peer_event::kind::lost);
  REQUIRE(lost);
  CHECK(lost->reason.find("no traffic from") != std::string::npos);
  CHECK(lost->reason.find("transport.failure-timeout") != std::string::npos);
}
