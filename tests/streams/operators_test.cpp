// Each operator's semantics: elements, completion, errors, cancellation.
#include "support/node_fixture.hpp"
#include "support/wait.hpp"

#include "troupe/streams/streams.hpp"

#include <doctest/doctest.h>
#include <fmt/format.h>

#include <stdexcept>
#include <string>

using namespace std::chrono_literals;
namespace ts = troupe::streams;

namespace {

template <class T>
std::vector<T> run_all(troupe::node& n, const ts::source<T>& s) {
  auto r = s.to(ts::collect_all<T>()).run(n);
  REQUIRE(r);
  auto v = r->wait(20s);
  INFO((v ? std::string{} : v.error().to_string()));
  REQUIRE(v);
  return *v;
}

template <class T>
troupe::error run_error(troupe::node& n, const ts::source<T>& s) {
  auto r = s.to(ts::ignore<T>()).run(n);
  REQUIRE(r);
  auto done = r->wait(20s);
  REQUIRE_FALSE(done);
  return done.error();
}

} // namespace

TEST_CASE("operators: take passes a prefix and cancels an endless upstream") {
  auto node = troupe::test::make_node();
  CHECK(run_all(*node, ts::repeat(3).via(ts::take(4))) == std::vector<int>{3, 3, 3, 3});
  CHECK(run_all(*node, ts::from_range(0, 10).via(ts::take(0))).empty());
  CHECK(run_all(*node, ts::from_range(0, 3).via(ts::take(10))) == std::vector<int>{0, 1, 2});
}

TEST_CASE("operators: take_while stops at the first element that fails the predicate") {
  auto node = troupe::test::make_node();
  auto s = ts::from_range(0, 1'000'000).via(ts::take_while([](int x) { return x < 5; }));
  CHECK(run_all(*node, s) == std::vector<int>{0, 1, 2, 3, 4});
}

TEST_CASE("operators: drop and drop_while skip a prefix") {
  auto node = troupe::test::make_node();
  CHECK(run_all(*node, ts::from_range(0, 6).via(ts::drop(4))) == std::vector<int>{4, 5});
  CHECK(run_all(*node, ts::from_range(0, 600).via(ts::drop(598))) == std::vector<int>{598, 599});
  auto s = ts::from_container(std::vector<int>{1, 2, 5, 1, 7}).via(ts::drop_while([](int x) { return x < 3; }));
  CHECK(run_all(*node, s) == std::vector<int>{5, 1, 7});
}

TEST_CASE("operators: collect map_concat and stateful_map_concat") {
  auto node = troupe::test::make_node();
  auto evens = ts::from_range(0, 7).via(ts::collect([](int x) {
    return x % 2 == 0 ? std::optional<std::string>{std::to_string(x)} : std::nullopt;
  }));
  CHECK(run_all(*node, evens) == std::vector<std::string>{"0", "2", "4", "6"});
  auto twice = ts::from_range(1, 4).via(ts::map_concat([](int x) { return std::vector<int>{x, x}; }));
  CHECK(run_all(*node, twice) == std::vector<int>{1, 1, 2, 2, 3, 3});
  // Emits each element with its running index; the state is fresh per run.
  auto indexed = ts::from_container(std::vector<char>{'a', 'b', 'c'}).via(ts::stateful_map_concat([] {
    return [i = 0](char c) mutable { return std::vector<std::string>{fmt::format("{}{}", c, i++)}; };
  }));
  CHECK(run_all(*node, indexed) == std::vector<std::string>{"a0", "b1", "c2"});
  CHECK(run_all(*node, indexed) == std::vector<std::string>{"a0", "b1", "c2"});
}

TEST_CASE("operators: fold emits once at completion and scan emits every step") {
  auto node = troupe::test::make_node();
  CHECK(run_all(*node, ts::from_range(1, 5).via(ts::fold(0, std::plus<>{}))) == std::vector<int>{10});
  CHECK(run_all(*node, ts::empty<int>().via(ts::fold(7, std::plus<>{}))) == std::vector<int>{7});
  CHECK(run_all(*node, ts::empty<int>().via(ts::scan(7, std::plus<>{}))) == std::vector<int>{7});
}

TEST_CASE("operators: grouped makes full groups and a short last one") {
  auto node = troupe::test::make_node();
  auto g = run_all(*node, ts::from_range(0, 7).via(ts::grouped(3)));
  REQUIRE(g.size() == 3);
  CHECK(g[0] == std::vector<int>{0, 1, 2});
  CHECK(g[2] == std::vector<int>{6});
}

TEST_CASE("operators: grouped_within emits a partial group when its window passes") {
  auto node = troupe::test::make_node();
  auto [src, queue] = ts::queue_source<int>(10);
  std::mutex mtx;
  std::vector<std::vector<int>> groups;
  auto done = src.via(ts::grouped_within(100, 20ms))
                .to(ts::for_each<std::vector<int>>([&](std::vector<int> g) {
                  std::lock_guard<std::mutex> lock{mtx};
                  groups.push_back(std::move(g));
                }))
                .run(*node);
  REQUIRE(done);
  CHECK(queue.offer(1) == ts::offer_result::enqueued);
  CHECK(queue.offer(2) == ts::offer_result::enqueued);
  // Far fewer than 100 elements: only the window can emit them.
  CHECK(troupe::test::wait_until([&] {
    std::lock_guard<std::mutex> lock{mtx};
    return !groups.empty();
  }));
  queue.complete();
  REQUIRE(done->wait(10s));
  std::lock_guard<std::mutex> lock{mtx};
  CHECK(groups.front() == std::vector<int>{1, 2});
  for (auto& g : groups)
    CHECK_FALSE(g.empty());
}

TEST_CASE("operators: merge concat and zip combine two sources") {
  auto node = troupe::test::make_node();
  auto merged = run_all(*node, ts::from_range(0, 500).via(ts::merge(ts::from_range(1000, 1500).async())));
  CHECK(merged.size() == 1000);
  std::sort(merged.begin(), merged.end());
  CHECK(merged.front() == 0);
  CHECK(merged.back() == 1499);
  CHECK(run_all(*node, ts::from_range(0, 3).via(ts::concat(ts::from_range(7, 9))))
        == std::vector<int>{0, 1, 2, 7, 8});
  auto zipped = run_all(*node, ts::repeat(1).via(ts::zip(ts::from_container(std::vector<std::string>{"a", "b"}))));
  REQUIRE(zipped.size() == 2);
  CHECK(zipped[1] == std::pair<int, std::string>{1, "b"});
}

TEST_CASE("operators: a failing side of merge fails the result") {
  auto node = troupe::test::make_node();
  auto e = run_error(*node, ts::repeat(1).via(ts::merge(ts::failed<int>(troupe::error{troupe::errc::io_error, "side broke"}))));
  CHECK(e.code() == troupe::errc::io_error);
  CHECK(e.message() == "side broke");
}

TEST_CASE("operators: recover turns an upstream failure into a last element") {
  auto node = troupe::test::make_node();
  auto s = ts::from_range(0, 3)
             .via(ts::concat(ts::failed<int>(troupe::error{troupe::errc::io_error, "disk"})))
             .via(ts::recover([](const troupe::error& e) {
               return e.code() == troupe::errc::io_error ? std::optional<int>{-1} : std::nullopt;
             }));
  CHECK(run_all(*node, s) == std::vector<int>{0, 1, 2, -1});
  auto passes = ts::failed<int>(troupe::error{troupe::errc::timeout, "slow"}).via(ts::recover([](const troupe::error&) {
    return std::optional<int>{};
  }));
  CHECK(run_error(*node, passes).code() == troupe::errc::timeout);
}

TEST_CASE("operators: throttle lets every element through") {
  auto node = troupe::test::make_node();
  auto v = run_all(*node, ts::from_range(0, 50).via(ts::throttle(1000, 1s, 10)));
  CHECK(v.size() == 50);
  CHECK(v.back() == 49);
}

TEST_CASE("operators: a kill switch completes or fails running streams") {
  auto node = troupe::test::make_node();
  ts::kill_switch ks;
  auto a = ts::tick(1ms, 1ms, 1).via(ks.flow()).to(ts::ignore<int>()).run(*node);
  auto b = ts::repeat(2).async().via(ks.flow()).to(ts::ignore<int>()).run(*node);
  REQUIRE(a);
  REQUIRE(b);
  ks.shutdown();
  CHECK(a->wait(10s));
  CHECK(b->wait(10s));
  ts::kill_switch failing;
  auto c = ts::repeat(3).via(failing.flow()).to(ts::ignore<int>()).run(*node);
  REQUIRE(c);
  failing.abort(troupe::error{troupe::errc::stopped, "operator pulled the plug"});
  auto r = c->wait(10s);
  REQUIRE_FALSE(r);
  CHECK(r.error().message() == "operator pulled the plug");
}

TEST_CASE("operators: a queue source answers offers at once and stays bounded") {
  auto node = troupe::test::make_node();
  auto [src, queue] = ts::queue_source<int>(2);
  CHECK(queue.offer(1) == ts::offer_result::enqueued);
  CHECK(queue.offer(2) == ts::offer_result::enqueued);
  CHECK(queue.offer(3) == ts::offer_result::dropped);  // not running yet: the queue is full
  auto sum = src.to(ts::fold_sink<int>(0, std::plus<>{})).run(*node);
  REQUIRE(sum);
  CHECK(troupe::test::wait_until([&] { return queue.size() == 0; }));
  CHECK(troupe::test::wait_until([&] { return queue.offer(10) == ts::offer_result::enqueued; }));
  queue.complete();
  CHECK(queue.offer(4) == ts::offer_result::closed);
  auto v = sum->wait(10s);
  REQUIRE(v);
  CHECK(*v == 13);
  auto again = src.to(ts::ignore<int>()).run(*node);
  REQUIRE(again);
  auto refused = again->wait(10s);
  REQUIRE_FALSE(refused);
  CHECK(refused.error().code() == troupe::errc::invalid_argument);
}
