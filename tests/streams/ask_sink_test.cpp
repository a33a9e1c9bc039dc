// The ask sink and map_async family: bounded in flight, order per key, retries
// with backoff, failures naming the stage; into plain actors and into
// event-sourced entities (the sharded entity sink, entity_sink_test.cpp, builds on it).
#include "tally_entity.hpp"

#include "support/node_fixture.hpp"
#include "support/wait.hpp"

#include "troupe/streams/streams.hpp"

#include <caf/all.hpp>
#include <doctest/doctest.h>
#include <fmt/format.h>

#include <atomic>
#include <map>
#include <mutex>

using namespace std::chrono_literals;
namespace ts = troupe::streams;

namespace {

struct item {
  int key = 0;
  int value = 0;
};

struct answer_msg {
  std::uint64_t id = 0;
};

/// What the target saw, shared with the test.
struct target_log {
  std::mutex mtx;
  std::map<int, std::vector<int>> accepted;  // per key, in arrival order
  int in_flight = 0;
  int max_in_flight = 0;
  int refusals = 0;
};

struct target_state {
  std::map<std::uint64_t, std::pair<caf::response_promise, item>> pending;
  std::uint64_t seq = 0;
  std::map<int, int> seen;  // value -> attempts
};

/// Answers every request a little later (so many are in flight at once); refuses
/// the first attempt of every 5th value with `overloaded`, and a value of -1 with
/// a non-retryable error.
caf::behavior slow_target(caf::stateful_actor<target_state>* self, std::shared_ptr<target_log> log) {
  return {
    [self, log](item x) -> caf::result<int> {
      auto attempts = ++self->state.seen[x.value];
      if (x.value == -1)
        return troupe::to_caf_error(troupe::error{troupe::errc::invalid_argument, "value -1 refused"});
      if (x.value % 5 == 0 && attempts == 1) {
        std::lock_guard<std::mutex> lock{log->mtx};
        ++log->refusals;
        return troupe::to_caf_error(troupe::error{troupe::errc::overloaded, "busy, try later"});
      }
      {
        std::lock_guard<std::mutex> lock{log->mtx};
        log->accepted[x.key].push_back(x.value);
        log->max_in_flight = std::max(log->max_in_flight, ++log->in_flight);
      }
      auto id = ++self->state.seq;
      self->state.pending.emplace(id, std::pair{self->make_response_promise(), x});
      self->delayed_send(self, std::chrono::milliseconds{1}, answer_msg{id});
      return caf::delegated<int>{};
    },
    [self, log](answer_msg a) {
      auto i = self->state.pending.find(a.id);
      {
        std::lock_guard<std::mutex> lock{log->mtx};
        --log->in_flight;
      }
      i->second.first.deliver(i->second.second.value);
      self->state.pending.erase(i);
    },
  };
}

} // namespace

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(item)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(answer_msg)

TEST_CASE("ask sink: ask_sink into plain actors keeps order per key and at most parallelism in flight") {
  auto node = troupe::test::make_node();
  auto log = std::make_shared<target_log>();
  auto target = node->spawn("target", slow_target, log);
  REQUIRE(target);
  auto items = ts::from_range(0, 600).via(ts::map([](int i) { return item{i % 7, i}; }));
  ts::ask_options opts{.parallelism = 6, .timeout = 5s};
  opts.backoff = {.min = 1ms, .max = 5ms};
  auto route = [t = *target](const item&) { return t; };
  auto done = items
                .to(ts::ask_sink<item, int>([](const item& x) { return x.key; },
                                            ts::ask_actor<item, int>(route), opts))
                .run(*node);
  REQUIRE(done);
  auto r = done->wait(60s);
  INFO((r ? std::string{} : r.error().to_string()));
  REQUIRE(r);
  std::lock_guard<std::mutex> lock{log->mtx};
  CHECK(log->max_in_flight <= 6);
  CHECK(log->refusals == 120);
  int total = 0;
  for (auto& [key, values] : log->accepted) {
    total += static_cast<int>(values.size());
    CHECK(std::is_sorted(values.begin(), values.end()));  // retried elements kept their place
    CHECK(std::adjacent_find(values.begin(), values.end()) == values.end());
  }
  CHECK(total == 600);
}

TEST_CASE("ask sink: a non-retryable ask failure fails the stream naming the stage") {
  auto node = troupe::test::make_node();
  auto log = std::make_shared<target_log>();
  auto target = node->spawn("target", slow_target, log);
  REQUIRE(target);
  auto items = ts::from_container(std::vector<item>{{1, 1}, {1, -1}, {1, 2}});
  auto route = [t = *target](const item&) { return t; };
  auto done = items
                .to(ts::ask_sink<item, int>([](const item& x) { return x.key; },
                                            ts::ask_actor<item, int>(route)))
                .run(*node, {.name = "orders"});
  REQUIRE(done);
  auto r = done->wait(20s);
  REQUIRE_FALSE(r);
  CHECK(r.error().code() == troupe::errc::invalid_argument);
  CHECK(r.error().message().find("stream 'orders': stage 'map_async_partitioned#") != std::string::npos);
  CHECK(r.error().message().find("value -1 refused") != std::string::npos);
}

TEST_CASE("ask sink: map_async keeps input order and map_async_unordered delivers every element") {
  auto node = troupe::test::make_node();
  auto log = std::make_shared<target_log>();
  auto target = node->spawn("target", slow_target, log);
  REQUIRE(target);
  auto t = *target;
  auto ask = [t](int i, ts::async_reply<int> reply) {
    troupe::ask<int>(reply.self(), t, 5s, item{0, i * 5 + 1}).then([reply](troupe::expected<int> r) { reply(r); });
  };
  auto ordered = ts::from_range(0, 200).via(ts::map_async<int>(8, ask)).to(ts::collect_all<int>()).run(*node);
  auto unordered = ts::from_range(0, 200).via(ts::map_async_unordered<int>(8, ask)).to(ts::collect_all<int>()).run(*node);
  REQUIRE(ordered);
  REQUIRE(unordered);
  auto a = ordered->wait(30s);
  auto b = unordered->wait(30s);
  REQUIRE(a);
  REQUIRE(b);
  CHECK(std::is_sorted(a->begin(), a->end()));
  CHECK(a->size() == 200);
  std::sort(b->begin(), b->end());
  CHECK(*a == *b);
}

TEST_CASE("ask sink: ask_sink into persistent entities delivers each element once in order per entity") {
  troupe::test::temp_dir dir;
  auto node = tally::make_node(dir);
  std::vector<troupe::persistence::entity_ref<tally::entity>> refs;
  for (int k = 0; k < 10; ++k) {
    auto ref = troupe::persistence::spawn_entity<tally::entity>(*node, fmt::format("t{}", k));
    REQUIRE(ref);
    refs.push_back(*ref);
  }
  auto route = [refs](const item& x) { return refs[static_cast<std::size_t>(x.key)]; };
  auto command = [](const item& x) { return tally::append{x.value}; };
  auto items = ts::from_range(0, 1000).via(ts::map([](int i) { return item{i % 10, i}; }));
  auto done = items
                .to(ts::ask_sink<item, troupe::persistence::done>(
                  [](const item& x) { return x.key; },
                  ts::ask_entity<tally::entity, item, tally::append>(route, command),
                  {.parallelism = 8}))
                .run(*node);
  REQUIRE(done);
  auto r = done->wait(60s);
  INFO((r ? std::string{} : r.error().to_string()));
  REQUIRE(r);
  for (int k = 0; k < 10; ++k) {
    auto values = refs[static_cast<std::size_t>(k)].ask(tally::get_values{}, 5s);
    REQUIRE(values);
    REQUIRE(values->size() == 100);
    for (std::size_t i = 0; i < values->size(); ++i)
      CHECK((*values)[i] == static_cast<std::int64_t>(k + 10 * static_cast<int>(i)));
  }
}
