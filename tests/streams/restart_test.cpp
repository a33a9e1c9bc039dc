// restart_source and restart_flow: restart a failing source or flow with backoff,
// and a restart limit stops a crash-looping one.
#include "support/node_fixture.hpp"

#include "troupe/streams/streams.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <stdexcept>

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

namespace {

/// A flow that fails (throws) on `bad` and passes everything else; counts its runs.
ts::flow<int, int> failing_on(int bad) {
  return ts::map([bad](int x) {
    if (x == bad)
      throw std::runtime_error("flow broke at " + std::to_string(x));
    return x;
  });
}

ts::restart_settings quick(int max_restarts) {
  return {.backoff = {.min = 1ms, .max = 2ms}, .max_restarts = max_restarts, .within = 1min};
}

} // namespace

TEST_CASE("restart: restart_flow runs a fresh flow after a failure and the stream goes on") {
  auto node = troupe::test::make_node();
  auto runs = std::make_shared<std::atomic<int>>(0);
  // The first flow fails at 5, the second at 12, the third passes the rest.
  auto make = [runs] {
    auto n = ++*runs;
    return failing_on(n == 1 ? 5 : n == 2 ? 12 : -1);
  };
  // Batches of 4: the map takes 4 elements at a time from upstream.
  auto r = ts::from_range(0, 20)
             .via(ts::restart_flow(quick(5), make))
             .to(ts::collect_all<int>())
             .run(*node, {.batch_size = 4});
  REQUIRE(r);
  auto v = r->wait(20s);
  REQUIRE(v);
  // The upstream is not restarted. Elements the flow emitted before failing are
  // kept (4, from the batch 4..7); those it had taken and not emitted are lost
  // with it: the failing element and the rest of its batch (5..7, 12..15).
  CHECK(*v == std::vector<int>{0, 1, 2, 3, 4, 8, 9, 10, 11, 16, 17, 18, 19});
  CHECK(runs->load() == 3);
}

TEST_CASE("restart: a restart limit stops a crash-looping flow with restart_limit naming the stage") {
  auto node = troupe::test::make_node();
  auto runs = std::make_shared<std::atomic<int>>(0);
  auto make = [runs] {
    ++*runs;
    return ts::flow<int, int>{ts::map([](int) -> int { throw std::runtime_error("always broken"); })};
  };
  auto r = ts::repeat(1).via(ts::restart_flow(quick(3), make)).to(ts::ignore<int>()).run(*node, {.name = "looping-flow"});
  REQUIRE(r);
  auto done = r->wait(20s);
  REQUIRE_FALSE(done);
  CHECK(done.error().code() == troupe::errc::restart_limit);
  CHECK(done.error().message().find("stream 'looping-flow': stage 'restart_flow#") != std::string::npos);
  CHECK(done.error().message().find("4 times within the restart window") != std::string::npos);
  CHECK(done.error().message().find("always broken") != std::string::npos);
  CHECK(runs->load() == 4);  // the first run and 3 restarts
}

TEST_CASE("restart: restart_flow passes an upstream failure on without restarting") {
  auto node = troupe::test::make_node();
  auto runs = std::make_shared<std::atomic<int>>(0);
  auto make = [runs] {
    ++*runs;
    return failing_on(-1);
  };
  std::mutex mtx;
  std::vector<int> seen;
  auto r = ts::from_range(0, 3)
             .via(ts::concat(ts::failed<int>(troupe::error{troupe::errc::io_error, "disk"})))
             .via(ts::restart_flow(quick(5), make))
             .to(ts::for_each<int>([&](int x) {
               std::lock_guard<std::mutex> lock{mtx};
               seen.push_back(x);
             }))
             .run(*node);
  REQUIRE(r);
  auto done = r->wait(20s);
  REQUIRE_FALSE(done);
  CHECK(done.error().code() == troupe::errc::io_error);
  CHECK(runs->load() == 1);
  std::lock_guard<std::mutex> lock{mtx};
  CHECK(seen == std::vector<int>{0, 1, 2});
}

TEST_CASE("restart: restart_flow completes when its flow does and cancels the upstream") {
  auto node = troupe::test::make_node();
  // make() may return any operator, here take: the endless upstream is cancelled.
  auto r = ts::repeat(1).via(ts::restart_flow(quick(5), [] { return ts::take(3); })).to(ts::collect_all<int>()).run(*node);
  REQUIRE(r);
  auto v = r->wait(20s);
  REQUIRE(v);
  CHECK(*v == std::vector<int>{1, 1, 1});
}

TEST_CASE("restart: a flow with an async boundary loses at most its buffers on a restart") {
  auto node = troupe::test::make_node();
  auto runs = std::make_shared<std::atomic<int>>(0);
  constexpr int inner_buffer = 4;
  constexpr int feed_buffer = 16;  // the stream's buffer_size: the flow's input crosses with it
  auto make = [runs] {
    auto n = ++*runs;
    return failing_on(n == 1 ? 1'000 : -1).async(inner_buffer);
  };
  auto r = ts::from_range(0, 2'000)
             .via(ts::restart_flow(quick(5), make))
             .to(ts::collect_all<int>())
             .run(*node, {.name = "async-flow", .buffer_size = feed_buffer});
  REQUIRE(r);
  auto v = r->wait(20s);
  INFO((v ? std::string{} : v.error().to_string()));
  REQUIRE(v);
  CHECK(runs->load() == 2);
  CHECK(std::is_sorted(v->begin(), v->end()));
  CHECK(std::adjacent_find(v->begin(), v->end()) == v->end());
  CHECK(std::find(v->begin(), v->end(), 1'000) == v->end());
  REQUIRE(v->size() >= 2);
  CHECK(v->front() == 0);
  CHECK(v->back() == 1'999);
  // Lost: the failing element, the rest of its batch and the flow's input buffer.
  auto lost = 2'000 - static_cast<int>(v->size());
  CHECK(lost >= 1);
  CHECK(lost <= feed_buffer + inner_buffer);
}
