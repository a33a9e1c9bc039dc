// Operator semantics an audit found unpinned: map_async's order against answers
// that arrive out of order, map_async_partitioned's one call per key, the
// dropping strategies of buffer, tick's dropped ticks, throttle's burst, and the
// supervision directives of map_async and for_each. Every wait is on a condition
// with a deadline; nothing asserts a duration. Where "a while" must pass, a
// witness tick stream counts intervals, and the assertions compare counts.
#include "support/int_range.hpp"
#include "support/node_fixture.hpp"
#include "support/wait.hpp"

#include "gated_consumer.hpp"

#include "troupe/streams/streams.hpp"

#include <caf/all.hpp>
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

using namespace std::chrono_literals;
namespace ts = troupe::streams;

using troupe::test::gate_record;
using troupe::test::gated_recorder;
using troupe::test::int_range;
using troupe::test::release_msg;
using troupe::test::wait_until;

namespace {

/// Gives a map_async call its answer. Not inlined: where GCC 12 inlines the
/// answer's moves (std::variant<int, error>) into the stage, as in a unity build of
/// the suite, it loses track of which alternative is active and reports the
/// error's string as maybe used uninitialized (-Wmaybe-uninitialized).
[[gnu::noinline]] void answer(const ts::async_reply<int>& reply, troupe::expected<int> r) {
  reply(std::move(r));
}

/// The calls of a map_async callee that answers nothing itself: the test answers
/// them, in the order it chooses, from its own thread. Counts the calls in flight,
/// in all and per key (x % keys).
struct held_calls {
  explicit held_calls(int keys = 1) : keys(keys) {}

  void hold(int x, ts::async_reply<int> reply) {
    std::lock_guard<std::mutex> lock{mtx};
    held.emplace_back(x, std::move(reply));
    max_in_flight = std::max(max_in_flight, static_cast<int>(held.size()));
    max_per_key = std::max(max_per_key, ++per_key[x % keys]);
  }

  int in_flight() {
    std::lock_guard<std::mutex> lock{mtx};
    return static_cast<int>(held.size());
  }

  /// Removes the call started last (LIFO: answers come out newest first).
  std::pair<int, ts::async_reply<int>> take_newest() {
    std::lock_guard<std::mutex> lock{mtx};
    auto call = std::move(held.back());
    held.pop_back();
    --per_key[call.first % keys];
    return call;
  }

  int keys;
  std::mutex mtx;
  std::vector<std::pair<int, ts::async_reply<int>>> held;
  std::map<int, int> per_key;
  int max_in_flight = 0;
  int max_per_key = 0;
};

/// Elements a stage saw, in order, from the island's thread.
struct seen_log {
  std::mutex mtx;
  std::vector<int> values;
  void add(int x) {
    std::lock_guard<std::mutex> lock{mtx};
    values.push_back(x);
  }
  std::vector<int> get() {
    std::lock_guard<std::mutex> lock{mtx};
    return values;
  }
};

/// A gated consumer actor (gated_consumer.hpp) on `node`, acknowledging nothing
/// until released.
caf::actor spawn_gate(troupe::node& node, const std::shared_ptr<gate_record>& gate) {
  auto consumer = node.spawn("gated", gated_recorder, gate);
  REQUIRE(consumer);
  return *consumer;
}

/// A stream of ticks every `interval`, counted: the test's clock in intervals.
/// Waiting until it counted n more ticks waits at least n - 1 intervals.
struct witness {
  witness(troupe::node& node, troupe::duration interval)
    : ticks(std::make_shared<std::atomic<int>>(0)) {
    auto t = ticks;
    auto r = ts::tick(0ms, interval, 1).to(ts::for_each<int>([t](int) { t->fetch_add(1); })).run(node);
    REQUIRE(r);
  }
  int now() const { return ticks->load(); }
  bool wait_ticks(int n) const {
    auto until = now() + n;
    return wait_until([&] { return now() >= until; });
  }
  std::shared_ptr<std::atomic<int>> ticks;
};

/// 0..n-1 through map_async (ordered) or map_async_unordered, every call held
/// until all n are in flight, then answered last first.
std::vector<int> answered_in_reverse(troupe::node& node, bool ordered, int n) {
  auto calls = std::make_shared<held_calls>();
  auto f = [calls](int x, ts::async_reply<int> reply) { calls->hold(x, std::move(reply)); };
  auto src = ts::from_range(0, n);
  auto s = ordered ? src.via(ts::map_async<int>(static_cast<std::size_t>(n), f))
                   : src.via(ts::map_async_unordered<int>(static_cast<std::size_t>(n), f));
  auto r = s.to(ts::collect_all<int>()).run(node);
  REQUIRE(r);
  REQUIRE(wait_until([&] { return calls->in_flight() == n; }));
  CHECK_FALSE(r->ready());  // nothing answered, nothing out
  while (calls->in_flight() > 0) {
    auto [x, reply] = calls->take_newest();
    answer(reply, x);
  }
  auto v = r->wait(20s);
  REQUIRE(v);
  return *v;
}

/// 0..100 through buffer(4, strategy) into a gated sink: 0 is taken first and
/// held at the gate, then 1..100 arrive while the sink takes nothing; returns the
/// elements that reached the sink.
std::vector<int> survivors(troupe::node& node, ts::overflow_strategy strategy) {
  auto gate = std::make_shared<gate_record>();
  auto consumer = spawn_gate(node, gate);
  auto seen = std::make_shared<seen_log>();
  auto [src, queue] = ts::queue_source<int>(1000);
  auto before = node.system().registry().running();
  auto done = src.via(ts::buffer(4, strategy))
                .via(ts::map([seen](int x) {
                  seen->add(x);
                  return x;
                }))
                .to(ts::actor_ack_sink<int>(consumer))
                .run(node);
  REQUIRE(done);
  REQUIRE(queue.offer(0) == ts::offer_result::enqueued);
  REQUIRE(wait_until([&] { return seen->get() == std::vector<int>{0}; }));
  for (int i = 1; i <= 100; ++i)
    REQUIRE(queue.offer(i) == ts::offer_result::enqueued);
  queue.complete();
  // The island before the buffer ends after it sent its last batch and the
  // completion: from then on every element is in the buffer (or dropped), and the
  // release below reaches the sink after all of them.
  CHECK(wait_until([&] { return node.system().registry().running() <= before + 1; }));
  caf::anon_send(consumer, release_msg{1000});
  auto r = done->wait(20s);
  INFO((r ? std::string{} : r.error().to_string()));
  REQUIRE(r);
  return seen->get();
}

} // namespace

TEST_CASE("stream operators: map_async keeps input order when answers arrive in reverse and map_async_unordered does not") {
  auto node = troupe::test::make_node();
  constexpr int n = 16;
  auto expected = int_range(0, n);
  auto reversed = expected;
  std::reverse(reversed.begin(), reversed.end());
  CHECK(answered_in_reverse(*node, true, n) == expected);
  // The same workload, unordered: the answers come out as they arrived.
  auto unordered = answered_in_reverse(*node, false, n);
  CHECK(unordered != expected);
  CHECK(unordered == reversed);
}

TEST_CASE("stream operators: map_async_partitioned keeps order per key with one call per key and keys in parallel") {
  auto node = troupe::test::make_node();
  constexpr int keys = 3;
  constexpr int n = 12;
  auto calls = std::make_shared<held_calls>(keys);
  auto r = ts::from_range(0, n)
             .via(ts::map_async_partitioned<int>(
               n, [](int x) { return x % keys; },
               [calls](int x, ts::async_reply<int> reply) { calls->hold(x, std::move(reply)); }))
             .to(ts::collect_all<int>())
             .run(*node);
  REQUIRE(r);
  // Every key has a call in flight at once, and no more than one each.
  REQUIRE(wait_until([&] { return calls->in_flight() == keys; }));
  // Answer the newest call first, always: answers arrive out of order across keys.
  for (int answered = 0; answered < n; ++answered) {
    REQUIRE(wait_until([&] { return calls->in_flight() > 0; }));
    auto [x, reply] = calls->take_newest();
    answer(reply, x);
  }
  auto v = r->wait(20s);
  REQUIRE(v);
  {
    std::lock_guard<std::mutex> lock{calls->mtx};
    CHECK(calls->max_per_key == 1);
    CHECK(calls->max_in_flight == keys);
  }
  CHECK(v->front() == 2);  // the last key's first call, answered first
  CHECK_FALSE(std::is_sorted(v->begin(), v->end()));
  for (int k = 0; k < keys; ++k) {
    std::vector<int> of_key;
    std::copy_if(v->begin(), v->end(), std::back_inserter(of_key), [k](int x) { return x % keys == k; });
    INFO("key " << k);
    CHECK(of_key.size() == n / keys);
    CHECK(std::is_sorted(of_key.begin(), of_key.end()));
  }
  auto all = *v;
  std::sort(all.begin(), all.end());
  CHECK(all == int_range(0, n));
}

TEST_CASE("stream operators: buffer with drop_tail replaces the newest held element") {
  auto node = troupe::test::make_node();
  // 1..4 fill the buffer; each later arrival replaces the newest: 100 is last.
  CHECK(survivors(*node, ts::overflow_strategy::drop_tail) == std::vector<int>{0, 1, 2, 3, 100});
}

TEST_CASE("stream operators: buffer with drop_buffer empties the buffer on overflow") {
  auto node = troupe::test::make_node();
  // 1..4 fill it; 5, 9, ..., 97 each arrive at a full buffer and clear it.
  CHECK(survivors(*node, ts::overflow_strategy::drop_buffer) == std::vector<int>{0, 97, 98, 99, 100});
}

TEST_CASE("stream operators: buffer with drop_new keeps the held elements and drops arrivals") {
  auto node = troupe::test::make_node();
  CHECK(survivors(*node, ts::overflow_strategy::drop_new) == std::vector<int>{0, 1, 2, 3, 4});
}

TEST_CASE("stream operators: tick drops the ticks nobody asked for instead of queueing them") {
  auto node = troupe::test::make_node();
  constexpr auto interval = 2ms;
  witness clock{*node, interval};
  auto gate = std::make_shared<gate_record>();
  auto consumer = spawn_gate(*node, gate);
  auto produced = std::make_shared<std::atomic<int>>(0);
  auto done = ts::tick(0ms, interval, 1)
                .via(ts::map([produced](int x) {
                  produced->fetch_add(1);
                  return x;
                }))
                .to(ts::actor_ack_sink<int>(consumer))
                .run(*node);
  REQUIRE(done);
  // The first tick waits at the gate; demand is 0 for 100 intervals.
  REQUIRE(wait_until([&] { return produced->load() == 1; }));
  REQUIRE(clock.wait_ticks(100));
  CHECK(produced->load() == 1);
  // Release k: a queued backlog (~100 ticks) would be acked as fast as the gate
  // answers; dropped ticks come one per interval, so the k acks take about k
  // intervals of the witness. Counts only: a quarter of them is the bar.
  constexpr int k = 40;
  auto at_release = clock.now();
  caf::anon_send(consumer, release_msg{k});
  REQUIRE(wait_until([&] { return gate->acked.load() == k; }));
  CHECK(clock.now() - at_release >= k / 4);
  // k received and acked, one more pending at the gate; nothing else is produced.
  REQUIRE(wait_until([&] { return produced->load() == k + 1; }));
  REQUIRE(clock.wait_ticks(20));
  CHECK(gate->acked.load() == k);
  CHECK(produced->load() == k + 1);
  node->shutdown();
  CHECK_FALSE(done->wait(10s));
}

TEST_CASE("stream operators: throttle lets at most the burst through before the bucket refills and then all in order") {
  auto node = troupe::test::make_node();
  witness clock{*node, 2ms};
  {
    // One token an hour: after the burst nothing refills during the test. The
    // async boundary pulls up to its credit (16) at once; the throttle yields 5.
    constexpr int burst = 5;
    auto gate = std::make_shared<gate_record>();
    auto consumer = spawn_gate(*node, gate);
    caf::anon_send(consumer, release_msg{1000});
    auto produced = std::make_shared<std::atomic<int>>(0);
    auto done = ts::from_range(0, 100)
                  .via(ts::throttle(1, 1h, burst))
                  .via(ts::map([produced](int x) {
                    produced->fetch_add(1);
                    return x;
                  }))
                  .async(16)
                  .to(ts::actor_ack_sink<int>(consumer))
                  .run(*node);
    REQUIRE(done);
    REQUIRE(wait_until([&] { return gate->acked.load() == burst; }));
    REQUIRE(clock.wait_ticks(20));
    CHECK(produced->load() == burst);
    CHECK(gate->acked.load() == burst);
    CHECK_FALSE(done->ready());
  }
  {
    // A bucket that refills: every element arrives, in order, through a gate
    // released a few at a time.
    auto gate = std::make_shared<gate_record>();
    gate->keep = true;
    auto consumer = spawn_gate(*node, gate);
    auto done = ts::from_range(0, 30)
                  .via(ts::throttle(200, 1s, 3))
                  .async(8)
                  .to(ts::actor_ack_sink<int>(consumer))
                  .run(*node);
    REQUIRE(done);
    for (int round = 1; round <= 6; ++round) {
      caf::anon_send(consumer, release_msg{5});
      REQUIRE(wait_until([&] { return gate->acked.load() == round * 5; }));
    }
    REQUIRE(done->wait(20s));
    std::lock_guard<std::mutex> lock{gate->mtx};
    CHECK(gate->values == int_range(0, 30));
  }
  node->shutdown();
}

TEST_CASE("stream operators: map_async with resume drops an element answered with an error and goes on") {
  auto node = troupe::test::make_node();
  auto s = ts::from_range(0, 10)
             .via(ts::map_async<int>(4, [](int x, ts::async_reply<int> reply) {
               if (x == 3)
                 answer(reply, troupe::error{troupe::errc::io_error, "three refused"});
               else
                 answer(reply, x * 10);
             }))
             .with_decider([](const troupe::error&) { return ts::directive::resume; });
  auto r = s.to(ts::collect_all<int>()).run(*node);
  REQUIRE(r);
  auto v = r->wait(20s);
  INFO((v ? std::string{} : v.error().to_string()));
  REQUIRE(v);
  CHECK(*v == std::vector<int>{0, 10, 20, 40, 50, 60, 70, 80, 90});
}

TEST_CASE("stream operators: for_each with stop fails the stream with an error naming the sink") {
  auto node = troupe::test::make_node();
  auto seen = std::make_shared<seen_log>();
  auto r = ts::from_range(0, 100)
             .to(ts::for_each<int>([seen](int x) {
               if (x == 42)
                 throw std::runtime_error("sink refused 42");
               seen->add(x);
             }))
             .run(*node, {.name = "sink-stops"});
  REQUIRE(r);
  auto done = r->wait(20s);
  REQUIRE_FALSE(done);
  CHECK(done.error().code() == troupe::errc::actor_failed);
  CHECK(done.error().message().find("stream 'sink-stops': stage 'for_each#") != std::string::npos);
  CHECK(done.error().message().find("sink refused 42") != std::string::npos);
  CHECK(seen->get() == int_range(0, 42));  // nothing after the failing element
}

TEST_CASE("stream operators: a sink's own decider reaches it - fold_sink with restart starts its fold again") {
  auto node = troupe::test::make_node();
  auto r = ts::from_range(1, 8)
             .to(ts::fold_sink<int>(0,
                                    [](int acc, int x) {
                                      if (x == 4)
                                        throw std::runtime_error("four");
                                      return acc + x;
                                    })
                   .with_decider([](const troupe::error&) { return ts::directive::restart; }))
             .run(*node);
  REQUIRE(r);
  auto sum = r->wait(20s);
  REQUIRE(sum);
  CHECK(*sum == 5 + 6 + 7);  // the fold after the failing element, from zero
}

TEST_CASE("stream operators: for_each with resume skips the element it failed on - upstream keeps stop") {
  auto node = troupe::test::make_node();
  auto seen = std::make_shared<seen_log>();
  auto resume = [](const troupe::error&) { return ts::directive::resume; };
  auto r = ts::from_range(0, 50)
             .to(ts::for_each<int>([seen](int x) {
                   if (x == 7)
                     throw std::runtime_error("sink refused 7");
                   seen->add(x);
                 }).with_decider(resume))
             .run(*node);
  REQUIRE(r);
  REQUIRE(r->wait(20s));
  auto expected = int_range(0, 50);
  expected.erase(expected.begin() + 7);
  CHECK(seen->get() == expected);
  // The sink's decider is its own: a failing stage before it still stops the stream.
  auto failed = ts::from_range(0, 50)
                  .via(ts::map([](int x) {
                    if (x == 3)
                      throw std::runtime_error("map refused 3");
                    return x;
                  }))
                  .to(ts::for_each<int>([](int) {}).with_decider(resume))
                  .run(*node, {.name = "upstream-stops"});
  REQUIRE(failed);
  auto done = failed->wait(20s);
  REQUIRE_FALSE(done);
  CHECK(done.error().message().find("stage 'map#") != std::string::npos);
}
