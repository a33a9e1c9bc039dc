// restart_source: restarts a failing source with backoff, and a restart limit
// stops a crash-looping one.
#include "support/node_fixture.hpp"

#include "troupe/streams/streams.hpp"

#include <doctest/doctest.h>

#include <atomic>

using namespace std::chrono_literals;
namespace ts = troupe::streams;

TEST_CASE("restart: restart_source runs a fresh source after each failure and keeps the elements") {
  auto node = troupe::test::make_node();
  auto runs = std::make_shared<std::atomic<int>>(0);
  // Each run emits 3 elements and fails, until the third run, which completes.
  auto make = [runs] {
    auto n = ++*runs;
    auto three = ts::from_range(n * 10, n * 10 + 3);
    if (n < 3)
      return three.via(ts::concat(ts::failed<int>(troupe::error{troupe::errc::io_error, "lost"})));
    return three;
  };
  ts::restart_settings s{.backoff = {.min = 1ms, .max = 2ms}, .max_restarts = 5, .within = 1min};
  auto r = ts::restart_source(s, make).to(ts::collect_all<int>()).run(*node);
  REQUIRE(r);
  auto v = r->wait(20s);
  REQUIRE(v);
  CHECK(*v == std::vector<int>{10, 11, 12, 20, 21, 22, 30, 31, 32});
  CHECK(runs->load() == 3);
}

TEST_CASE("restart: a restart limit stops a crash-looping source with restart_limit") {
  auto node = troupe::test::make_node();
  auto runs = std::make_shared<std::atomic<int>>(0);
  auto make = [runs] {
    ++*runs;
    return ts::failed<int>(troupe::error{troupe::errc::io_error, "always broken"});
  };
  ts::restart_settings s{.backoff = {.min = 1ms, .max = 2ms}, .max_restarts = 3, .within = 1min};
  auto r = ts::restart_source(s, make).to(ts::ignore<int>()).run(*node, {.name = "looping"});
  REQUIRE(r);
  auto done = r->wait(20s);
  REQUIRE_FALSE(done);
  CHECK(done.error().code() == troupe::errc::restart_limit);
  CHECK(done.error().message().find("stage 'restart_source#") != std::string::npos);
  CHECK(done.error().message().find("always broken") != std::string::npos);
  CHECK(runs->load() == 4);  // the first run and 3 restarts
}
