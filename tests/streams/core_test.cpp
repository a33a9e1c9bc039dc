// The stream model: blueprints, fused islands, completion, errors, cancellation.
#include "support/node_fixture.hpp"
#include "support/wait.hpp"

#include "troupe/streams/streams.hpp"

#include <doctest/doctest.h>

#include <atomic>
#include <stdexcept>
#include <string>

using namespace std::chrono_literals;
namespace ts = troupe::streams;

TEST_CASE("model: source via map and filter into fold runs fused to the right sum") {
  auto node = troupe::test::make_node();
  auto s = ts::from_range(0, 1000)
             .via(ts::map([](int x) { return x * 2; }))
             .via(ts::filter([](int x) { return x % 3 == 0; }));
  auto r = s.to(ts::fold_sink<int>(0L, [](long acc, int x) { return acc + x; })).run(*node);
  REQUIRE(r);
  auto sum = r->wait(10s);
  REQUIRE(sum);
  long expected = 0;
  for (int x = 0; x < 1000; ++x)
    if ((x * 2) % 3 == 0)
      expected += x * 2;
  CHECK(*sum == expected);
}

TEST_CASE("model: a blueprint runs many times and each run starts fresh") {
  auto node = troupe::test::make_node();
  auto s = ts::from_range(1, 5).via(ts::scan(0, [](int a, int x) { return a + x; }));
  for (int i = 0; i < 3; ++i) {
    auto r = s.to(ts::collect_all<int>()).run(*node);
    REQUIRE(r);
    auto v = r->wait(10s);
    REQUIRE(v);
    CHECK(*v == std::vector<int>{0, 1, 3, 6, 10});
  }
}

TEST_CASE("model: a throwing map fails the stream with an error naming the stage") {
  auto node = troupe::test::make_node();
  auto s = ts::from_range(0, 100).via(ts::map([](int x) {
    if (x == 42)
      throw std::runtime_error("bad element 42");
    return x;
  }));
  auto r = s.to(ts::ignore<int>()).run(*node, {.name = "throwing"});
  REQUIRE(r);
  auto done = r->wait(10s);
  REQUIRE_FALSE(done);
  CHECK(done.error().code() == troupe::errc::actor_failed);
  CHECK(done.error().message().find("stream 'throwing'") != std::string::npos);
  CHECK(done.error().message().find("stage 'map#") != std::string::npos);
  CHECK(done.error().message().find("bad element 42") != std::string::npos);
}

TEST_CASE("model: the resume decider drops the failing element and goes on") {
  auto node = troupe::test::make_node();
  auto s = ts::from_range(0, 10)
             .via(ts::map([](int x) {
               if (x % 3 == 0)
                 throw std::runtime_error("multiple of 3");
               return x;
             }))
             .with_decider([](const troupe::error&) { return ts::directive::resume; });
  auto r = s.to(ts::collect_all<int>()).run(*node);
  REQUIRE(r);
  auto v = r->wait(10s);
  REQUIRE(v);
  CHECK(*v == std::vector<int>{1, 2, 4, 5, 7, 8});
}

TEST_CASE("model: the restart decider resets the scan accumulator") {
  auto node = troupe::test::make_node();
  auto s = ts::from_range(1, 7)
             .via(ts::scan(0, [](int acc, int x) {
               if (x == 4)
                 throw std::runtime_error("four");
               return acc + x;
             }))
             .with_decider([](const troupe::error&) { return ts::directive::restart; });
  auto r = s.to(ts::collect_all<int>()).run(*node);
  REQUIRE(r);
  auto v = r->wait(10s);
  REQUIRE(v);
  CHECK(*v == std::vector<int>{0, 1, 3, 6, 5, 11});
}

TEST_CASE("model: elements cross an async boundary in order and complete") {
  auto node = troupe::test::make_node();
  auto s = ts::from_range(0, 100'000).via(ts::map([](int x) { return x + 1; })).async(8);
  auto r = s.to(ts::fold_sink<int>(std::int64_t{0}, [](std::int64_t a, int x) { return a + x; }))
             .run(*node);
  REQUIRE(r);
  auto sum = r->wait(30s);
  REQUIRE(sum);
  CHECK(*sum == std::int64_t{100'000} * 100'001 / 2);
}

TEST_CASE("model: a failure before an async boundary reaches the sink naming the stage") {
  auto node = troupe::test::make_node();
  auto s = ts::from_range(0, 1000)
             .via(ts::filter([](int x) {
               if (x == 500)
                 throw std::runtime_error("filter broke");
               return true;
             }))
             .async()
             .via(ts::map([](int x) { return x; }))
             .async();
  auto r = s.to(ts::ignore<int>()).run(*node);
  REQUIRE(r);
  auto done = r->wait(10s);
  REQUIRE_FALSE(done);
  CHECK(done.error().message().find("stage 'filter#") != std::string::npos);
  CHECK(done.error().message().find("filter broke") != std::string::npos);
}

TEST_CASE("model: head cancels an endless upstream across a boundary and every island stops") {
  auto node = troupe::test::make_node();
  auto before = node->system().registry().running();
  auto r = ts::repeat(7).async().to(ts::head<int>()).run(*node);
  REQUIRE(r);
  auto v = r->wait(10s);
  REQUIRE(v);
  CHECK(*v == 7);
  CHECK(troupe::test::wait_until([&] { return node->system().registry().running() <= before; }));
}

TEST_CASE("model: node shutdown fails a running stream with shutting_down") {
  auto node = troupe::test::make_node();
  auto r = ts::repeat(1).async().to(ts::ignore<int>()).run(*node);
  REQUIRE(r);
  node->shutdown();
  auto done = r->wait(10s);
  REQUIRE_FALSE(done);
  CHECK(done.error().code() == troupe::errc::shutting_down);
}
