// Backpressure: memory between a fast source and a slow sink is bounded by the
// configured buffers (asserted as element counts, never as time).
#include "support/node_fixture.hpp"
#include "support/wait.hpp"

#include "gated_consumer.hpp"

#include "troupe/streams/streams.hpp"

#include <caf/all.hpp>
#include <doctest/doctest.h>

#include <atomic>
#include <deque>

using namespace std::chrono_literals;
namespace ts = troupe::streams;

using troupe::test::gate_record;
using troupe::test::gated_recorder;
using troupe::test::release_msg;

TEST_CASE("backpressure: a fast source into a slow sink never holds more than the buffers") {
  auto node = troupe::test::make_node();
  auto produced = std::make_shared<std::atomic<int>>(0);
  auto gate = std::make_shared<gate_record>();
  auto& acked = gate->acked;
  auto consumer = node->spawn("gated", gated_recorder, gate);
  REQUIRE(consumer);
  constexpr std::size_t buffer = 16;
  // The source is endless and as fast as the CPU; the sink takes one element per
  // release: far more than 100 times slower.
  auto s = ts::repeat(1).via(ts::map([produced](int x) {
                          produced->fetch_add(1);
                          return x;
                        }))
             .async(buffer);
  auto done = s.to(ts::actor_ack_sink<int>(*consumer)).run(*node);
  REQUIRE(done);
  // The buffer fills, then the source stops: produced - acked stays within the
  // boundary's buffer plus the one element the ack sink holds.
  const int bound = static_cast<int>(buffer) + 1;
  CHECK(troupe::test::wait_until([&] { return produced->load() >= static_cast<int>(buffer); }));
  for (int round = 1; round <= 100; ++round) {
    caf::anon_send(*consumer, release_msg{3});
    CHECK(troupe::test::wait_until([&] { return acked.load() >= round * 3; }));
    for (int sample = 0; sample < 20; ++sample) {
      auto gap = produced->load() - acked.load();
      REQUIRE(gap <= bound);
    }
  }
  CHECK(produced->load() <= acked.load() + bound);
  CHECK(produced->load() >= 300);
  node->shutdown();
  CHECK_FALSE(done->wait(10s));
}

TEST_CASE("backpressure: two async boundaries bound the elements by the sum of their buffers") {
  auto node = troupe::test::make_node();
  auto produced = std::make_shared<std::atomic<int>>(0);
  auto gate = std::make_shared<gate_record>();
  auto& acked = gate->acked;
  auto consumer = node->spawn("gated", gated_recorder, gate);
  REQUIRE(consumer);
  auto s = ts::repeat(1)
             .via(ts::map([produced](int x) {
               produced->fetch_add(1);
               return x;
             }))
             .async(8)
             .via(ts::map([](int x) { return x + 1; }))
             .async(32);
  auto done = s.to(ts::actor_ack_sink<int>(*consumer)).run(*node);
  REQUIRE(done);
  const int bound = 8 + 32 + 1;
  for (int round = 1; round <= 50; ++round) {
    caf::anon_send(*consumer, release_msg{7});
    CHECK(troupe::test::wait_until([&] { return acked.load() >= round * 7; }));
    REQUIRE(produced->load() - acked.load() <= bound);
  }
  CHECK(troupe::test::wait_until([&] { return produced->load() - acked.load() >= 8 + 32 / 2; }));
  CHECK(produced->load() - acked.load() <= bound);
}

TEST_CASE("backpressure: buffer with the fail strategy fails the stream when it overflows") {
  auto node = troupe::test::make_node();
  auto gate = std::make_shared<gate_record>();
  auto& acked = gate->acked;
  auto consumer = node->spawn("gated", gated_recorder, gate);
  REQUIRE(consumer);
  auto [src, queue] = ts::queue_source<int>(1000);
  auto done = src.via(ts::buffer(4, ts::overflow_strategy::fail))
                .to(ts::actor_ack_sink<int>(*consumer))
                .run(*node);
  REQUIRE(done);
  // The buffer may overflow (and the stream fail, closing the queue) while the
  // offers go on: from then on offers answer `closed`, never drop silently.
  int enqueued = 0;
  for (int i = 0; i < 100; ++i) {
    auto r = queue.offer(i);
    if (r == ts::offer_result::closed)
      break;
    REQUIRE(r == ts::offer_result::enqueued);
    ++enqueued;
  }
  CHECK(enqueued >= 5);  // more than the buffer holds
  // The failure reaches the sink when it next pulls: after its element is acked.
  CHECK(troupe::test::wait_until([&] { return queue.size() == 0; }));
  caf::anon_send(*consumer, release_msg{1000});
  auto r = done->wait(10s);
  REQUIRE_FALSE(r);
  CHECK(r.error().code() == troupe::errc::overloaded);
  CHECK(r.error().message().find("buffer of 4 elements overflowed") != std::string::npos);
  CHECK(acked.load() <= 5);
}

TEST_CASE("backpressure: buffer with drop_head keeps the newest elements and never slows the source") {
  auto node = troupe::test::make_node();
  auto [src, queue] = ts::queue_source<int>(1000);
  auto gate = std::make_shared<gate_record>();
  auto consumer = node->spawn("gated", gated_recorder, gate);
  REQUIRE(consumer);
  std::vector<int> seen;
  std::mutex mtx;
  auto done = src.via(ts::buffer(4, ts::overflow_strategy::drop_head))
                .via(ts::map([&](int x) {
                  std::lock_guard<std::mutex> lock{mtx};
                  seen.push_back(x);
                  return x;
                }))
                .to(ts::actor_ack_sink<int>(*consumer))
                .run(*node);
  REQUIRE(done);
  for (int i = 0; i < 500; ++i)
    REQUIRE(queue.offer(i) == ts::offer_result::enqueued);
  // Everything offered leaves the queue although the sink has taken nothing: the
  // buffer drops instead of slowing its upstream.
  CHECK(troupe::test::wait_until([&] { return queue.size() == 0; }));
  queue.complete();
  caf::anon_send(*consumer, release_msg{1000});
  REQUIRE(done->wait(10s));
  std::lock_guard<std::mutex> lock{mtx};
  CHECK(seen.size() < 500);
  REQUIRE_FALSE(seen.empty());
  CHECK(seen.back() == 499);
  CHECK(std::is_sorted(seen.begin(), seen.end()));
}
