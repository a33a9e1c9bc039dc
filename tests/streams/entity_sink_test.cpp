// The sharded entity sink: a stream into entities spread over a cluster keeps
// the order per entity, loses and duplicates nothing while a shard moves, keeps
// at most `parallelism` elements in flight, and is slowed (not failed) by a full
// region buffer.
#include "membership/cluster_fixture.hpp"
#include "sharding/sharding_fixture.hpp"
#include "support/wait.hpp"

#include "troupe/streams/streams.hpp"

#include <doctest/doctest.h>
#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <thread>

using namespace std::chrono_literals;
using namespace troupe;
namespace ts = troupe::streams;
using troupe::persistence::done;

namespace {

constexpr std::uint32_t shards = 12;

struct tally_item {
  std::string id;
  std::int64_t value = 0;
};

std::string id_of(const tally_item& x) {
  return x.id;
}

tally::append command_of(const tally_item& x) {
  return tally::append{x.value};
}

/// The asks in flight through an ask_fn, and the most seen at once.
struct flight_log {
  std::atomic<int> in_flight{0};
  std::atomic<int> max_in_flight{0};
  std::atomic<int> acked{0};
};

ts::ask_fn<tally_item, done> counted(ts::ask_fn<tally_item, done> inner,
                                    std::shared_ptr<flight_log> log) {
  return [inner, log](caf::event_based_actor* self, const tally_item& x, duration timeout,
                      ts::reply_fn<done> reply) {
    auto now = log->in_flight.fetch_add(1) + 1;
    auto seen = log->max_in_flight.load();
    while (now > seen && !log->max_in_flight.compare_exchange_weak(seen, now)) {
    }
    inner(self, x, timeout, [log, reply](expected<done> r) {
      log->in_flight.fetch_sub(1);
      if (r)
        log->acked.fetch_add(1);
      reply(std::move(r));
    });
  };
}

/// Each entity's values, as the entities hold them, asked through node `n`.
std::map<std::string, std::vector<std::int64_t>> values_of(node& n, const std::vector<std::string>& ids) {
  std::map<std::string, std::vector<std::int64_t>> out;
  for (auto& id : ids) {
    auto v = sharding::entity_for<tally::entity>(n, id).ask(tally::get_values{}, 10s);
    INFO(id << ": " << (v ? std::string{"ok"} : v.error().to_string()));
    REQUIRE(v);
    out[id] = std::move(*v);
  }
  return out;
}

} // namespace

TEST_CASE("entity sink: a stream into sharded entities on three nodes loses and duplicates nothing "
          "and keeps the order per entity while a node hands its shards off, with at most "
          "parallelism elements in flight") {
  test::in_process_cluster c{3, test::sharding_schema()};
  c.start_clusters(1);
  REQUIRE(test::wait_until([&] { return c.all_up(); }, 30s));
  auto journal = std::make_shared<persistence::memory_journal>();
  for (std::size_t i = 0; i < 3; ++i)
    test::start_sharded_tally(*c[i].n, journal, test::fast_sharding_settings(shards));
  constexpr int entities = 40;
  constexpr std::size_t parallelism = 32;
  std::vector<std::string> ids;
  for (int k = 0; k < entities; ++k)
    ids.push_back(fmt::format("t-{}", k));
  // Node 2 hosts shards before the stream starts, so the hand-off moves some.
  REQUIRE(test::wait_until(
    [&] {
      for (auto& id : ids)
        (void) sharding::entity_for<tally::entity>(*c[0].n, id).ask(tally::get_values{}, 10s);
      auto r = sharding::report(*c[2].n, "tally", 5s);
      return r && !r->shards.empty();
    },
    60s));

  auto log = std::make_shared<flight_log>();
  auto ask = counted(ts::ask_sharded_entity<tally::entity, tally_item>(*c[0].n, id_of, command_of), log);
  auto [src, queue] = ts::queue_source<tally_item>(64);
  auto finished = src.via(ts::ask_flow<tally_item, done>(id_of, ask, {.parallelism = parallelism,
                                                               .timeout = 60s}))
                    .to(ts::ignore<done>())
                    .run(*c[0].n, {.name = "into-tallies"});
  REQUIRE(finished);

  // The producer offers until told to stop: through the whole hand-off.
  std::atomic<bool> stop{false};
  std::atomic<std::int64_t> offered{0};
  std::thread producer{[&] {
    for (std::int64_t v = 1; !stop.load(); ++v) {
      tally_item x{ids[static_cast<std::size_t>(v % entities)], v};
      if (!test::wait_until([&] { return queue.offer(x) == ts::offer_result::enqueued; }, 30s))
        break;
      offered.store(v);
    }
  }};
  REQUIRE(test::wait_until([&] { return log->acked.load() >= 1000; }, 60s));
  auto before = log->acked.load();
  CHECK(c[2].n->shutdown().clean);
  auto during = log->acked.load() - before;
  // A few hundred more after the hand-off, through the new homes.
  auto after_shutdown = log->acked.load();
  CHECK(test::wait_until([&] { return log->acked.load() >= after_shutdown + 500; }, 60s));
  stop.store(true);
  producer.join();
  queue.complete();
  auto r = finished->wait(60s);
  INFO((r ? std::string{"ok"} : r.error().to_string()));
  REQUIRE(r);
  MESSAGE("acknowledged during the hand-off: " << during << ", in all: " << log->acked.load());

  auto count = offered.load();
  CHECK(log->acked.load() == count);
  CHECK(log->max_in_flight.load() <= static_cast<int>(parallelism));
  CHECK(log->max_in_flight.load() >= 2);
  std::map<std::string, std::vector<std::int64_t>> expected_values;
  for (std::int64_t v = 1; v <= count; ++v)
    expected_values[ids[static_cast<std::size_t>(v % entities)]].push_back(v);
  auto got = values_of(*c[0].n, ids);
  for (auto& id : ids) {
    INFO(id);
    CHECK(got[id] == expected_values[id]);
  }
}

TEST_CASE("entity sink: a full region buffer slows the stream instead of failing it") {
  test::in_process_cluster c{1, test::sharding_schema()};
  c.start_clusters(1);
  REQUIRE(test::wait_until([&] { return c.all_up(); }, 30s));
  auto journal = std::make_shared<persistence::memory_journal>();
  auto settings = test::fast_sharding_settings(shards);
  settings.buffer_size = 2;  // while shard homes are unknown, most commands are refused
  test::start_sharded_tally(*c[0].n, journal, settings);
  constexpr int entities = 100;
  constexpr int count = 2000;
  std::vector<std::string> ids;
  for (int k = 0; k < entities; ++k)
    ids.push_back(fmt::format("b-{}", k));
  ts::entity_sink_options opts;
  opts.ask.parallelism = 64;
  opts.ask.max_retries = 1000;
  opts.ask.backoff = {.min = 1ms, .max = 50ms};
  auto finished = ts::from_range(1, count + 1)
                    .via(ts::map([&ids](int v) {
                      return tally_item{ids[static_cast<std::size_t>(v % entities)], v};
                    }))
                    .to(ts::to_entities<tally::entity, tally_item>(*c[0].n, id_of, command_of, opts))
                    .run(*c[0].n);
  REQUIRE(finished);
  auto r = finished->wait(60s);
  INFO((r ? std::string{"ok"} : r.error().to_string()));
  REQUIRE(r);
  auto report = sharding::report(*c[0].n, "tally", 5s);
  REQUIRE(report);
  CHECK(report->refused > 0);
  MESSAGE("commands refused by the full region buffer (and retried): " << report->refused);
  auto got = values_of(*c[0].n, ids);
  for (int k = 0; k < entities; ++k) {
    std::vector<std::int64_t> want;
    for (std::int64_t v = k == 0 ? entities : k; v <= count; v += entities)
      want.push_back(v);
    INFO(ids[static_cast<std::size_t>(k)]);
    CHECK(got[ids[static_cast<std::size_t>(k)]] == want);
  }
}

TEST_CASE("entity sink: without a shard region of the type on the node, the stream fails naming "
          "the type") {
  auto node = test::make_node({});
  auto finished = ts::from_range(1, 10)
                    .via(ts::map([](int v) { return tally_item{"x", v}; }))
                    .to(ts::to_entities<tally::entity, tally_item>(*node, id_of, command_of))
                    .run(*node);
  REQUIRE(finished);
  auto r = finished->wait(10s);
  REQUIRE_FALSE(r);
  CHECK(r.error().code() == errc::invalid_argument);
  CHECK(r.error().to_string().find("no shard region of entity type 'tally'") != std::string::npos);
}

TEST_CASE("entity sink: commands for entities on another node travel many to a packet") {
  test::in_process_cluster c{2, test::sharding_schema()};
  c.start_clusters(1);
  REQUIRE(test::wait_until([&] { return c.all_up(); }, 30s));
  auto journal = std::make_shared<persistence::memory_journal>();
  for (std::size_t i = 0; i < 2; ++i)
    test::start_sharded_tally(*c[i].n, journal, test::fast_sharding_settings(shards));
  // Ids whose shards node 1 hosts, once both nodes host shards (a shard gets a
  // home with its first command).
  std::vector<std::string> remote_ids;
  REQUIRE(test::wait_until(
    [&] {
      remote_ids.clear();
      for (int k = 0; k < 48; ++k)
        (void) sharding::entity_for<tally::entity>(*c[0].n, fmt::format("r-{}", k))
          .ask(tally::get_values{}, 10s);
      auto r = sharding::report(*c[1].n, "tally", 5s);
      if (!r || r->shards.empty() || r->shards.size() == shards)
        return false;
      for (int k = 0; k < 4000 && remote_ids.size() < 200; ++k) {
        auto id = fmt::format("r-{}", k);
        for (auto& s : r->shards)
          if (s.id == sharding::shard_of(id, shards))
            remote_ids.push_back(id);
      }
      return remote_ids.size() == 200;
    },
    60s));
  constexpr int count = 3000;
  ts::entity_sink_options opts;
  opts.ask.parallelism = 256;
  opts.ask.timeout = 60s;
  auto finished = ts::from_range(1, count + 1)
                    .via(ts::map([&remote_ids](int v) {
                      return tally_item{remote_ids[static_cast<std::size_t>(v) % remote_ids.size()], v};
                    }))
                    .to(ts::to_entities<tally::entity, tally_item>(*c[0].n, id_of, command_of, opts))
                    .run(*c[0].n);
  REQUIRE(finished);
  auto r = finished->wait(120s);
  INFO((r ? std::string{"ok"} : r.error().to_string()));
  REQUIRE(r);
  auto counter = [&](std::string_view name) {
    return c[0].n->metrics().counter_value(name, {{"type", "tally"}}).value_or(0);
  };
  auto commands = counter("troupe_sharding_forwarded_commands_total");
  auto batches = counter("troupe_sharding_forwarded_batches_total");
  MESSAGE(commands << " commands forwarded in " << batches << " packets");
  CHECK(commands >= static_cast<std::uint64_t>(count));
  CHECK(batches > 0);
  CHECK(batches * 4 <= commands);
  auto got = values_of(*c[0].n, remote_ids);
  for (std::size_t k = 0; k < remote_ids.size(); ++k) {
    std::vector<std::int64_t> want;
    for (std::int64_t v = 1; v <= count; ++v)
      if (static_cast<std::size_t>(v) % remote_ids.size() == k)
        want.push_back(v);
    INFO(remote_ids[k]);
    CHECK(got[remote_ids[k]] == want);
  }
}
