// Fan-out: broadcast and balance (elements, completion, failure, cancellation
// under both policies), sink::async, and the memory bound with a slow output
// (asserted as element counts, never as time).
#include "support/int_range.hpp"
#include "support/node_fixture.hpp"
#include "support/wait.hpp"

#include "gated_consumer.hpp"

#include "troupe/streams/streams.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

using namespace std::chrono_literals;
namespace ts = troupe::streams;
using troupe::test::gate_record;
using troupe::test::gated_recorder;
using troupe::test::int_range;
using troupe::test::release_msg;

namespace {

template <class T>
T value_of(const ts::stream_future<T>& f) {
  auto v = f.wait(30s);
  INFO((v ? std::string{} : v.error().to_string()));
  REQUIRE(v);
  return *v;
}

void completes(const ts::completion& f) {
  auto v = f.wait(30s);
  INFO((v ? std::string{} : v.error().to_string()));
  REQUIRE(v);
}

/// 0, 1, 2, ... forever: an endless source whose elements say where they came from.
ts::source<int> counting() {
  return ts::unfold(0, [](int n) { return std::optional<std::pair<int, int>>{{n + 1, n}}; });
}

/// A sink that keeps its elements in `into` (shared with the test, under a mutex).
struct recorded {
  std::mutex mtx;
  std::vector<int> values;
  std::size_t size() {
    std::lock_guard<std::mutex> lock{mtx};
    return values.size();
  }
  std::vector<int> copy() {
    std::lock_guard<std::mutex> lock{mtx};
    return values;
  }
};

ts::sink<int, ts::completion> record_into(std::shared_ptr<recorded> into) {
  return ts::for_each<int>([into](int x) {
    std::lock_guard<std::mutex> lock{into->mtx};
    into->values.push_back(x);
  });
}

ts::flow<int, int> identity() {
  return ts::map([](int x) { return x; });
}

/// Whether the outputs' elements, together, are exactly `all` with none twice,
/// each output's in increasing order.
bool split_exactly(const std::vector<std::vector<int>>& outputs, std::vector<int> all) {
  std::vector<int> seen;
  for (auto& out : outputs) {
    if (!std::is_sorted(out.begin(), out.end()))
      return false;
    seen.insert(seen.end(), out.begin(), out.end());
  }
  std::sort(seen.begin(), seen.end());
  std::sort(all.begin(), all.end());
  return seen == all;
}

} // namespace

TEST_CASE("fan-out: broadcast gives every element to every output in order") {
  auto node = troupe::test::make_node();
  auto r = ts::from_range(0, 10'000)
             .to(ts::broadcast(ts::collect_all<int>(),
                               ts::flow<int, int>{ts::map([](int x) { return x * 2; })}.to(ts::collect_all<int>()),
                               ts::fold_sink<int>(std::int64_t{0}, std::plus<>{})))
             .run(*node);
  REQUIRE(r);
  auto& [plain, doubled, sum] = *r;
  CHECK(value_of(plain) == int_range(0, 10'000));
  auto d = value_of(doubled);
  REQUIRE(d.size() == 10'000);
  CHECK(d[4'999] == 9'998);
  CHECK(value_of(sum) == std::int64_t{9'999} * 10'000 / 2);

  // Outputs apart from the fan-out: an async sink, an async sink whose own flow
  // has a boundary, and a flow whose first stages run in another island.
  auto apart = ts::from_range(0, 20'000)
                 .to(ts::broadcast(ts::collect_all<int>().async(8),
                                   identity().async(4).to(ts::collect_all<int>()).async(),
                                   identity().async(4).to(ts::collect_all<int>()), ts::collect_all<int>()))
                 .run(*node, {.name = "apart", .buffer_size = 16});
  REQUIRE(apart);
  CHECK(value_of(std::get<0>(*apart)) == int_range(0, 20'000));
  CHECK(value_of(std::get<1>(*apart)) == int_range(0, 20'000));
  CHECK(value_of(std::get<2>(*apart)) == int_range(0, 20'000));
  CHECK(value_of(std::get<3>(*apart)) == int_range(0, 20'000));

  auto n = ts::from_range(0, 500).to(ts::broadcast(3, [](std::size_t) { return ts::collect_all<int>(); })).run(*node);
  REQUIRE(n);
  REQUIRE(n->size() == 3);
  for (auto& f : *n)
    CHECK(value_of(f) == int_range(0, 500));
}

TEST_CASE("fan-out: balance gives each element to exactly one output") {
  auto node = troupe::test::make_node();
  auto r = ts::from_range(0, 100'000)
             .to(ts::balance(ts::collect_all<int>(), ts::collect_all<int>(), ts::collect_all<int>()))
             .run(*node);
  REQUIRE(r);
  auto outs = std::apply([](auto&... f) { return std::vector<std::vector<int>>{value_of(f)...}; }, *r);
  CHECK(split_exactly(outs, int_range(0, 100'000)));
  for (auto& out : outs)
    CHECK_FALSE(out.empty());  // fused outputs take turns

  auto workers = ts::from_range(0, 50'000)
                   .to(ts::balance(4, [](std::size_t) { return ts::collect_all<int>().async(8); }))
                   .run(*node);
  REQUIRE(workers);
  std::vector<std::vector<int>> got;
  for (auto& f : *workers)
    got.push_back(value_of(f));
  CHECK(split_exactly(got, int_range(0, 50'000)));
}

TEST_CASE("fan-out: a slow balance output gets fewer elements") {
  auto node = troupe::test::make_node();
  auto gate = std::make_shared<gate_record>();
  gate->keep = true;
  auto slow = node->spawn("gated", gated_recorder, gate);
  REQUIRE(slow);
  auto fast = std::make_shared<recorded>();
  ts::kill_switch ks;
  constexpr std::size_t buffer = 16;
  auto r = counting()
             .via(ks.flow())
             .to(ts::balance(record_into(fast).async(buffer), ts::actor_ack_sink<int>(*slow).async(buffer)))
             .run(*node);
  REQUIRE(r);
  caf::anon_send(*slow, release_msg{5});
  CHECK(troupe::test::wait_until([&] { return gate->acked.load() >= 5; }));
  CHECK(troupe::test::wait_until([&] { return fast->size() >= 20'000; }));
  ks.shutdown();
  completes(std::get<0>(*r));
  caf::anon_send(*slow, release_msg{1'000'000});
  completes(std::get<1>(*r));
  // The slow output got what it acknowledged plus at most its buffer and the
  // element its sink held; the fast one everything else, each element once.
  auto slow_values = [&] {
    std::lock_guard<std::mutex> lock{gate->mtx};
    return gate->values;
  }();
  CHECK(slow_values.size() <= 5 + buffer + 1);
  CHECK(fast->size() >= 20'000);
  auto fast_values = fast->copy();
  auto total = static_cast<int>(fast_values.size() + slow_values.size());
  CHECK(split_exactly({fast_values, slow_values}, int_range(0, total)));
}

TEST_CASE("fan-out: broadcast with a slow output holds at most its buffers") {
  auto node = troupe::test::make_node();
  for (bool async : {false, true}) {
    CAPTURE(async);
    auto produced = std::make_shared<std::atomic<int>>(0);
    auto fast = std::make_shared<std::atomic<int>>(0);
    auto gate = std::make_shared<gate_record>();
    auto& acked = gate->acked;
    auto slow = node->spawn(async ? "gated-apart" : "gated", gated_recorder, gate);
    REQUIRE(slow);
    constexpr int buffer = 16;
    constexpr int slow_buffer = 8;
    auto slow_sink = ts::actor_ack_sink<int>(*slow);
    // The source is endless and as fast as the CPU; the slow output takes one
    // element per release: far more than 100 times slower.
    ts::kill_switch ks;
    auto r = ts::repeat(1)
               .via(ts::map([produced](int x) {
                 produced->fetch_add(1);
                 return x;
               }))
               .via(ks.flow())
               .to(ts::broadcast(ts::fan_out_options{.buffer = buffer},
                                 ts::for_each<int>([fast](int) { fast->fetch_add(1); }),
                                 async ? slow_sink.async(slow_buffer) : slow_sink))
               .run(*node);
    REQUIRE(r);
    // Held: the fan-out's buffer, the slow output's (when async) and the element
    // its ack sink waits with.
    const int bound = buffer + (async ? slow_buffer : 0) + 1;
    CHECK(troupe::test::wait_until([&] { return produced->load() >= buffer; }));
    for (int round = 1; round <= 100; ++round) {
      caf::anon_send(*slow, release_msg{3});
      CHECK(troupe::test::wait_until([&] { return acked.load() >= round * 3; }));
      for (int sample = 0; sample < 20; ++sample) {
        auto gap = produced->load() - acked.load();
        REQUIRE(gap <= bound);
        REQUIRE(fast->load() <= produced->load());
      }
    }
    CHECK(produced->load() >= 300);
    // The fast output is held back too: it ran at most the buffer ahead.
    CHECK(troupe::test::wait_until([&] { return fast->load() >= acked.load() + buffer / 2; }));
    CHECK(fast->load() - acked.load() <= bound);
    ks.shutdown();
    caf::anon_send(*slow, release_msg{1'000'000});
    completes(std::get<0>(*r));
    completes(std::get<1>(*r));
  }
}

TEST_CASE("fan-out: completion and failure of the upstream reach every output") {
  auto node = troupe::test::make_node();
  auto failing = ts::from_range(0, 5).via(ts::concat(ts::failed<int>(troupe::error{troupe::errc::io_error, "disk"})));
  for (bool bcast : {true, false}) {
    CAPTURE(bcast);
    auto a = std::make_shared<recorded>();
    auto b = std::make_shared<recorded>();
    auto r = bcast ? failing.to(ts::broadcast(record_into(a), record_into(b).async())).run(*node)
                   : failing.to(ts::balance(record_into(a), record_into(b).async())).run(*node);
    REQUIRE(r);
    for (auto* f : {&std::get<0>(*r), &std::get<1>(*r)}) {
      auto done = f->wait(30s);
      REQUIRE_FALSE(done);
      CHECK(done.error().code() == troupe::errc::io_error);
      CHECK(done.error().message() == "disk");
    }
    // The failure comes after the elements taken before it.
    if (bcast) {
      CHECK(a->copy() == int_range(0, 5));
      CHECK(b->copy() == int_range(0, 5));
    } else {
      CHECK(split_exactly({a->copy(), b->copy()}, int_range(0, 5)));
    }
  }
  auto empty = ts::empty<int>().to(ts::broadcast(ts::collect_all<int>(), ts::ignore<int>().async())).run(*node);
  REQUIRE(empty);
  CHECK(value_of(std::get<0>(*empty)).empty());
  completes(std::get<1>(*empty));
}

TEST_CASE("fan-out: a cancelled output leaves the others running until the last cancels") {
  auto node = troupe::test::make_node();
  auto take = [](int n) { return ts::flow<int, int>{ts::take(static_cast<std::uint64_t>(n))}.to(ts::collect_all<int>()); };
  auto r = ts::from_range(0, 1'000).to(ts::broadcast(take(3), ts::collect_all<int>())).run(*node);
  REQUIRE(r);
  CHECK(value_of(std::get<0>(*r)) == int_range(0, 3));
  CHECK(value_of(std::get<1>(*r)) == int_range(0, 1'000));
  // An endless upstream ends once every output has cancelled.
  auto both = counting().to(ts::broadcast(take(3), take(500).async(8))).run(*node);
  REQUIRE(both);
  CHECK(value_of(std::get<0>(*both)) == int_range(0, 3));
  CHECK(value_of(std::get<1>(*both)) == int_range(0, 500));
  auto split = counting().to(ts::balance(take(30), take(700).async(8))).run(*node);
  REQUIRE(split);
  auto first = value_of(std::get<0>(*split));
  auto second = value_of(std::get<1>(*split));
  CHECK(first.size() == 30);
  CHECK(second.size() == 700);
  std::vector<int> seen = first;
  seen.insert(seen.end(), second.begin(), second.end());
  std::sort(seen.begin(), seen.end());
  CHECK(std::adjacent_find(seen.begin(), seen.end()) == seen.end());  // none twice
}

TEST_CASE("fan-out: with eager_cancel one cancelled output cancels the upstream and completes the others") {
  auto node = troupe::test::make_node();
  auto take3 = ts::flow<int, int>{ts::take(3)}.to(ts::collect_all<int>());
  ts::fan_out_options eager{.buffer = 32, .eager_cancel = true};
  auto r = counting().to(ts::broadcast(eager, take3, ts::collect_all<int>())).run(*node);
  REQUIRE(r);
  CHECK(value_of(std::get<0>(*r)) == int_range(0, 3));
  // The other output got the elements taken before the cancel, then completed.
  auto rest = value_of(std::get<1>(*r));
  CHECK(rest.size() >= 3);
  CHECK(rest.size() <= 32);
  CHECK(rest == int_range(0, static_cast<int>(rest.size())));
  auto apart = counting().to(ts::broadcast(eager, take3, ts::collect_all<int>().async(8))).run(*node);
  REQUIRE(apart);
  CHECK(value_of(std::get<0>(*apart)) == int_range(0, 3));
  auto far = value_of(std::get<1>(*apart));
  CHECK(far == int_range(0, static_cast<int>(far.size())));
  auto balanced = counting().to(ts::balance(eager, take3, ts::collect_all<int>().async(8))).run(*node);
  REQUIRE(balanced);
  CHECK(value_of(std::get<0>(*balanced)).size() == 3);
  CHECK(value_of(std::get<1>(*balanced)).size() <= 1'000);
}

TEST_CASE("fan-out: a failing output fails its own value and the others go on") {
  auto node = troupe::test::make_node();
  auto throwing = ts::for_each<int>([](int x) {
    if (x == 10)
      throw std::runtime_error("output broke at 10");
  });
  auto r = ts::from_range(0, 1'000).to(ts::broadcast(throwing, ts::collect_all<int>())).run(*node, {.name = "one-fails"});
  REQUIRE(r);
  auto failed = std::get<0>(*r).wait(30s);
  REQUIRE_FALSE(failed);
  CHECK(failed.error().message().find("stream 'one-fails': stage 'for_each#") != std::string::npos);
  CHECK(failed.error().message().find("output broke at 10") != std::string::npos);
  CHECK(value_of(std::get<1>(*r)) == int_range(0, 1'000));
}

TEST_CASE("fan-out: async outputs stop with the stream and every island ends") {
  auto node = troupe::test::make_node();
  auto before = node->system().registry().running();
  auto heads = ts::repeat(7).to(ts::broadcast(ts::head<int>().async(), ts::head<int>(), ts::head<int>().async(2))).run(*node);
  REQUIRE(heads);
  CHECK(value_of(std::get<0>(*heads)) == 7);
  CHECK(value_of(std::get<1>(*heads)) == 7);
  CHECK(value_of(std::get<2>(*heads)) == 7);
  CHECK(troupe::test::wait_until([&] { return node->system().registry().running() <= before; }));
  auto alone = ts::from_range(0, 100'000).to(ts::fold_sink<int>(std::int64_t{0}, std::plus<>{}).async(8)).run(*node);
  REQUIRE(alone);
  CHECK(value_of(*alone) == std::int64_t{99'999} * 100'000 / 2);
  auto endless = ts::repeat(1).to(ts::broadcast(ts::ignore<int>().async(), ts::ignore<int>())).run(*node);
  REQUIRE(endless);
  node->shutdown();
  for (auto* f : {&std::get<0>(*endless), &std::get<1>(*endless)})
    CHECK_FALSE(f->wait(30s));
}
