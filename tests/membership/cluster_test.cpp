// The membership shell in one process: nodes join through the cluster API,
// subscribers get the current state and then changes, leave and down work,
// shutdown leaves gracefully, and singletons with their proxies.
#include "cluster_fixture.hpp"

#include "troupe/actors/ask.hpp"
#include "troupe/actors/spawn.hpp"
#include "troupe/membership/management_client.hpp"
#include "troupe/membership/management_endpoint.hpp"
#include "troupe/membership/singleton.hpp"

#include <boost/asio/ip/tcp.hpp>
#include <caf/all.hpp>

using namespace std::chrono_literals;
using namespace troupe;
using troupe::test::in_process_cluster;
using troupe::test::wait_until;
using membership::cluster_event;

namespace {

/// Collects the events a subscription delivers.
struct event_log {
  std::mutex mtx;
  std::vector<cluster_event> events;
  void add(const cluster_event& e) {
    std::lock_guard<std::mutex> guard{mtx};
    events.push_back(e);
  }
  std::vector<cluster_event> copy() {
    std::lock_guard<std::mutex> guard{mtx};
    return events;
  }
};

} // namespace

TEST_CASE("cluster shell: nodes join and are up, and wait_until_up and the view agree") {
  in_process_cluster c{3};
  c.start_clusters(2);
  for (std::size_t i = 0; i < 3; ++i)
    CHECK(c[i].c->wait_until_up(20s));
  CHECK(wait_until([&] { return c.all_up(); }, 20s));
  auto v = c[2].c->view();
  CHECK(v.self_up());
  CHECK(v.leader == c[0].c->view().leader);
}

TEST_CASE("cluster shell: a subscriber gets the current state first, then changes in order") {
  event_log log;  // outlives the nodes: their shutdown still reports events
  in_process_cluster c{3};
  c.start_clusters(3);
  REQUIRE(wait_until([&] { return c.all_up(); }, 20s));
  c[0].c->subscribe([&](const cluster_event& e) { log.add(e); });
  // The current state: three members up (and the leader).
  REQUIRE(wait_until([&] {
    auto ev = log.copy();
    return std::count_if(ev.begin(), ev.end(), [](auto& e) {
             return e.what == cluster_event::kind::member_up;
           }) == 3;
  }));
  auto leaving = c[2].c->self();
  REQUIRE(c[2].c->leave());
  REQUIRE(wait_until([&] {
    auto ev = log.copy();
    return std::any_of(ev.begin(), ev.end(), [&](auto& e) {
      return e.what == cluster_event::kind::member_removed && e.subject.node == leaving;
    });
  }, 20s));
  std::vector<cluster_event::kind> about_leaver;
  for (auto& e : log.copy())
    if (e.subject.node == leaving && e.what != cluster_event::kind::reachable_member
        && e.what != cluster_event::kind::unreachable_member)
      about_leaver.push_back(e.what);
  using k = cluster_event::kind;
  CHECK(about_leaver == std::vector<k>{k::member_up, k::member_left, k::member_exited,
                                       k::member_removed});
  CHECK(c[2].c->wait_until_gone(5s));
  CHECK(c[2].c->terminated()->what == k::self_removed);
}

TEST_CASE("cluster shell: leave and down of unknown members are errors naming the address") {
  in_process_cluster c{2};
  c.start_clusters(1);
  REQUIRE(wait_until([&] { return c.all_up(); }, 20s));
  auto r = c[0].c->down(remote::node_address{"127.0.0.1", 1});
  REQUIRE_FALSE(r);
  CHECK(r.error().code() == errc::not_found);
  CHECK(r.error().message().find("127.0.0.1:1") != std::string::npos);
}

TEST_CASE("management endpoint: ready only while the node is up and no layer reports a "
          "problem, and the reasons are in the answer") {
  auto schema = node_config_keys();
  membership::add_management_config_keys(schema);
  in_process_cluster c{1, schema};
  c.start_clusters(1);
  REQUIRE(wait_until([&] { return c.all_up(); }, 20s));
  auto http = membership::management_endpoint::start(*c[0].n);
  REQUIRE(http);
  remote::node_address at{"127.0.0.1", (*http)->port()};
  auto ready = [&] { return membership::management_call(at, "GET", "/health/ready"); };
  auto r = ready();
  REQUIRE(r);
  CHECK(r->status == 200);
  c[0].n->health().mark_unhealthy("persistence.journal", "the file was deleted");
  r = ready();
  REQUIRE(r);
  CHECK(r->status == 503);
  CHECK(r->body.find("persistence.journal") != std::string::npos);
  CHECK(r->body.find("the file was deleted") != std::string::npos);
  c[0].n->health().mark_healthy("persistence.journal");
  r = ready();
  REQUIRE(r);
  CHECK(r->status == 200);
  (*http)->stop();
}

TEST_CASE("management client: an endpoint that accepts the connection and never answers (a "
          "stopped or hung node) is an io_error within the call's timeout") {
  // Listening but never accepting: the kernel completes the connection and takes
  // the request, as it does for a SIGSTOPped node; no answer ever comes.
  boost::asio::io_context io;
  boost::asio::ip::tcp::acceptor silent{
    io, {boost::asio::ip::make_address("127.0.0.1"), 0}};
  remote::node_address at{"127.0.0.1", silent.local_endpoint().port()};
  auto r = membership::management_call(at, "GET", "/cluster/members", {}, 300ms);
  REQUIRE_FALSE(r);
  CHECK(r.error().code() == errc::io_error);
  CHECK(r.error().message().find(at.to_string()) != std::string::npos);
  CHECK(r.error().message().find("no answer within 300 ms") != std::string::npos);
}

TEST_CASE("cluster shell: node shutdown leaves the cluster before the actors stop") {
  in_process_cluster c{3};
  c.start_clusters(2);
  REQUIRE(wait_until([&] { return c.all_up(); }, 20s));
  auto gone = c[2].c->self();
  auto report = c[2].n->shutdown();
  CHECK(report.clean);
  // The others saw a graceful removal, not a crash: nobody was downed.
  CHECK(wait_until([&] { return c.up({0, 1}); }, 10s));
  CHECK(c[2].c->terminated()->what == cluster_event::kind::self_removed);
  CHECK(c[0].n->metrics().counter_value("troupe_cluster_downing_decisions_total").value_or(0) == 0);
}

TEST_CASE("cluster shell: a singleton is reached through its proxy and moves when its holder "
          "leaves") {
  in_process_cluster c{3};
  c.start_clusters(3);
  REQUIRE(wait_until([&] { return c.all_up(); }, 20s));
  // Each instance answers with the port of the node it runs on.
  for (std::size_t i = 0; i < 3; ++i) {
    auto port = static_cast<std::int32_t>(c[i].t->address().port);
    membership::singleton_spec spec;
    spec.name = "where";
    spec.start = [port](caf::actor_system& sys) {
      return spawn_actor(sys, "where", [port](caf::event_based_actor*) -> caf::behavior {
        return {[port](std::int32_t) { return port; }};
      });
    };
    REQUIRE(membership::start_singleton(*c[i].n, spec));
  }
  auto proxy = membership::singleton_proxy(*c[2].n, "where");
  REQUIRE(proxy);
  auto oldest = c[2].c->view().state->oldest()->node;
  auto where = [&]() -> std::int32_t {
    auto r = ask<std::int32_t>(c[2].n->system(), *proxy, 5s, std::int32_t{0});
    return r ? *r : -1;
  };
  CHECK(where() == oldest.address.port);
  // The holder leaves: the next oldest takes over, acknowledged.
  std::size_t holder = 0;
  while (c[holder].c->self() != oldest)
    ++holder;
  REQUIRE(c[holder].c->leave());
  REQUIRE(c[holder].c->wait_until_gone(20s));
  CHECK(wait_until([&] {
    auto w = where();
    return w > 0 && w != oldest.address.port;
  }, 20s));
}

TEST_CASE("cluster shell: a singleton proxy with nowhere to send buffers up to its limit, then "
          "answers overloaded") {
  in_process_cluster c{1};
  c.start_clusters(1);
  REQUIRE(wait_until([&] { return c.all_up(); }, 20s));
  membership::singleton_proxy_options o;
  o.role = "nobody-has-it";
  o.buffer_size = 2;
  auto proxy = membership::singleton_proxy(*c[0].n, "absent", o);
  REQUIRE(proxy);
  caf::anon_send(*proxy, std::int32_t{1});
  caf::anon_send(*proxy, std::int32_t{2});
  auto r = ask<std::int32_t>(c[0].n->system(), *proxy, 5s, std::int32_t{3});
  REQUIRE_FALSE(r);
  CHECK(r.error().code() == errc::overloaded);
  CHECK(r.error().message().find("'absent'") != std::string::npos);
  CHECK(c[0].n->metrics().counter_value("troupe_singleton_proxy_dropped_total",
                                        {{"singleton", "absent"}})
        == 1);
}
