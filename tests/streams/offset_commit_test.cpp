// Offsets through the asks and their commits (offset_acks.hpp, commit_offsets.hpp):
// the committed offset is the contiguous acknowledged watermark, never past an
// element still in flight or failed for good; the offsets held stay within the
// window; commits go to the SQLite offset store and a restart resumes after them;
// deduplicating entities apply a replay once (the process test with kill -9 is
// exactly_once_process_test.cpp).
#include "dedup_tally.hpp"

#include "membership/cluster_fixture.hpp"
#include "sharding/sharding_fixture.hpp"
#include "support/node_fixture.hpp"
#include "support/temp_dir.hpp"
#include "support/wait.hpp"

#include "troupe/persistence/projection.hpp"
#include "troupe/streams/streams.hpp"

#include <caf/all.hpp>
#include <doctest/doctest.h>
#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <set>

using namespace std::chrono_literals;
using namespace troupe;
namespace ts = troupe::streams;
using persistence::offset_type;

namespace {

struct release_held_msg {};

/// Answers each offset with itself at once, except: offsets in `held` wait for a
/// release_held_msg, offsets in `refused` fail (invalid_argument, not retried).
struct held_target_state {
  std::vector<std::pair<caf::response_promise, std::int64_t>> held_promises;
};

struct target_spec {
  std::set<std::int64_t> held;
  std::set<std::int64_t> refused;
  std::shared_ptr<std::atomic<int>> requests = std::make_shared<std::atomic<int>>(0);
};

caf::behavior held_target(caf::stateful_actor<held_target_state>* self, target_spec spec) {
  return {
    [self, spec](std::int64_t o) -> caf::result<std::int64_t> {
      spec.requests->fetch_add(1);
      if (spec.refused.count(o))
        return to_caf_error(error{errc::invalid_argument, fmt::format("offset {} refused", o)});
      if (spec.held.count(o)) {
        self->state.held_promises.emplace_back(self->make_response_promise(), o);
        return caf::delegated<std::int64_t>{};
      }
      return o;
    },
    [self](release_held_msg) {
      for (auto& [p, o] : self->state.held_promises)
        p.deliver(o);
      self->state.held_promises.clear();
    },
  };
}

caf::actor spawn_target(node& n, target_spec spec) {
  auto target = n.spawn("target", held_target, std::move(spec));
  REQUIRE(target);
  return *target;
}

/// What the stream's sink and the saver saw.
struct observed {
  std::mutex mtx;
  std::vector<offset_type> saved;       // in save order
  std::vector<offset_type> acked;       // offsets, in ack order
  std::vector<offset_type> watermarks;  // as carried by the acks
  std::atomic<int> ack_count{0};

  ts::offset_saver saver(std::optional<offset_type> fail_at = std::nullopt) {
    return [this, fail_at](offset_type o) -> expected<void> {
      if (fail_at && o >= *fail_at)
        return error{errc::journal_failure, fmt::format("store refused offset {}", o)};
      std::lock_guard<std::mutex> lock{mtx};
      saved.push_back(o);
      return {};
    };
  }
  auto sink() {
    return ts::for_each<ts::offset_ack<std::int64_t>>([this](const ts::offset_ack<std::int64_t>& a) {
      {
        std::lock_guard<std::mutex> lock{mtx};
        acked.push_back(a.offset);
        watermarks.push_back(a.watermark);
      }
      ack_count.fetch_add(1);
    });
  }
  std::vector<offset_type> saved_now() {
    std::lock_guard<std::mutex> lock{mtx};
    return saved;
  }
};

/// Offsets 1..n (as elements) through ask_flow_with_offsets into `target`, each
/// offset its own key, and commit_offsets into `save`.
ts::source<ts::offset_ack<std::int64_t>> offsets_into(caf::actor target, std::int64_t n,
                                                     std::size_t parallelism, std::size_t window,
                                                     ts::offset_saver save, ts::commit_options c) {
  auto route = [target](const std::int64_t&) { return target; };
  return ts::from_range(std::int64_t{1}, n + 1)
    .via(ts::ask_flow_with_offsets<std::int64_t, std::int64_t>(
      [](const std::int64_t& o) { return o; }, [](const std::int64_t& o) { return o; },
      ts::ask_actor<std::int64_t, std::int64_t>(route), {.parallelism = parallelism, .timeout = 30s},
      window))
    .via(ts::commit_offsets(std::move(save), c));
}

/// The stream fails with `code` and an error that mentions each of `what`.
void check_fails_with(const expected<ts::completion>& done, errc code,
                      std::initializer_list<std::string_view> what) {
  REQUIRE(done);
  auto r = done->wait(30s);
  REQUIRE_FALSE(r);
  INFO(r.error().to_string());
  CHECK(r.error().code() == code);
  for (auto w : what)
    CHECK(r.error().message().find(w) != std::string::npos);
}

} // namespace

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(release_held_msg)

TEST_CASE("offset commits: the committed offset is the contiguous acknowledged watermark, nothing "
          "is committed past an element in flight, and the window bounds the offsets held") {
  auto node = test::make_node();
  target_spec spec;
  spec.held = {1};
  auto target = spawn_target(*node, spec);
  observed seen;
  constexpr std::size_t window = 8;
  auto done = offsets_into(target, 40, 16, window, seen.saver(), {.every_n = 1, .every_interval = 0s})
                .to(seen.sink())
                .run(*node);
  REQUIRE(done);
  // Offset 1 is held: the 7 behind it in the window are acknowledged, no more.
  REQUIRE(test::wait_until([&] { return seen.ack_count.load() >= static_cast<int>(window) - 1; }));
  CHECK(seen.ack_count.load() == static_cast<int>(window) - 1);
  CHECK(spec.requests->load() == static_cast<int>(window));
  CHECK(seen.saved_now().empty());  // every_n = 1, yet the watermark has not moved
  {
    std::lock_guard<std::mutex> lock{seen.mtx};
    CHECK(std::all_of(seen.watermarks.begin(), seen.watermarks.end(), [](offset_type w) { return w == 0; }));
  }
  caf::anon_send(target, release_held_msg{});
  auto r = done->wait(30s);
  INFO((r ? std::string{"ok"} : r.error().to_string()));
  REQUIRE(r);
  std::lock_guard<std::mutex> lock{seen.mtx};
  CHECK(seen.acked.size() == 40);
  REQUIRE_FALSE(seen.saved.empty());
  CHECK(std::is_sorted(seen.saved.begin(), seen.saved.end()));
  CHECK(seen.saved.back() == 40);
  // Each ack's watermark: every offset at or below it was acknowledged by then.
  std::set<offset_type> so_far;
  for (std::size_t i = 0; i < seen.acked.size(); ++i) {
    so_far.insert(seen.acked[i]);
    auto w = seen.watermarks[i];
    auto at_or_below = std::distance(so_far.begin(), so_far.upper_bound(w));
    CHECK(static_cast<offset_type>(at_or_below) == w);
  }
}

TEST_CASE("offset commits: an element that fails for good stops the stream below it, and with "
          "resume the watermark moves past it") {
  auto node = test::make_node();
  auto target = spawn_target(*node, {.refused = {5}});
  SUBCASE("stop") {
    observed seen;
    auto done = offsets_into(target, 20, 4, 0, seen.saver(), {.every_n = 1, .every_interval = 0s})
                  .to(seen.sink())
                  .run(*node, {.name = "refusing"});
    check_fails_with(done, errc::invalid_argument, {"offset_acks", "offset 5 refused"});
    for (auto o : seen.saved_now())
      CHECK(o < 5);
  }
  SUBCASE("resume") {
    observed seen;
    auto done = offsets_into(target, 20, 4, 0, seen.saver(), {.every_n = 1, .every_interval = 0s})
                  .with_decider([](const error&) { return ts::directive::resume; })
                  .to(seen.sink())
                  .run(*node);
    REQUIRE(done);
    auto r = done->wait(30s);
    INFO((r ? std::string{"ok"} : r.error().to_string()));
    REQUIRE(r);
    CHECK(seen.ack_count.load() == 19);
    REQUIRE_FALSE(seen.saved_now().empty());
    CHECK(seen.saved_now().back() == 20);
  }
}

TEST_CASE("offset commits: source offsets that do not increase fail the stream with invalid_argument") {
  auto node = test::make_node();
  auto route = [t = spawn_target(*node, {})](const std::int64_t&) { return t; };
  auto done = ts::from_container(std::vector<std::int64_t>{1, 2, 3, 3, 4})
                .via(ts::ask_flow_with_offsets<std::int64_t, std::int64_t>(
                  [](const std::int64_t& o) { return o; }, [](const std::int64_t& o) { return o; },
                  ts::ask_actor<std::int64_t, std::int64_t>(route)))
                .to(ts::ignore<ts::offset_ack<std::int64_t>>())
                .run(*node);
  check_fails_with(done, errc::invalid_argument, {"offset 3 came after 3"});
}

TEST_CASE("offset commits: a failed save fails the stream naming the stage and the store's error") {
  auto node = test::make_node();
  observed seen;
  auto done = offsets_into(spawn_target(*node, {}), 200, 8, 0, seen.saver(50), {.every_n = 10, .every_interval = 0s})
                .to(seen.sink())
                .run(*node, {.name = "saving"});
  check_fails_with(done, errc::journal_failure, {"commit_offsets", "store refused offset"});
  for (auto o : seen.saved_now())
    CHECK(o < 50);
}

TEST_CASE("offset commits: commits go to the SQLite offset store, also when the stream is shut "
          "down, and a new run resumes after the committed offset") {
  test::temp_dir dir;
  auto node = test::make_node();
  auto target = spawn_target(*node, {});
  auto store = persistence::sqlite_offset_store::open({.path = dir.file("offsets.db"), .create_if_missing = true});
  REQUIRE(store);
  auto committed = [&] {
    auto c = ts::committed_offset(**store, "numbers", "target");
    REQUIRE(c);
    return *c;
  };
  CHECK(committed() == 0);
  auto route = [target](const std::int64_t&) { return target; };
  auto run_from = [&](offset_type after, ts::kill_switch& ks, std::shared_ptr<std::atomic<offset_type>> highest) {
    return ts::from_range(static_cast<std::int64_t>(after) + 1, std::int64_t{1'000'000})
      .via(ks.flow())
      .via(ts::ask_flow_with_offsets<std::int64_t, std::int64_t>(
        [](const std::int64_t& o) { return o % 10; }, [](const std::int64_t& o) { return o; },
        ts::ask_actor<std::int64_t, std::int64_t>(route), {.parallelism = 8}))
      .via(ts::commit_offsets(*store, "numbers", "target", {.every_n = 100, .every_interval = 50ms}))
      .to(ts::for_each<ts::offset_ack<std::int64_t>>([highest](const ts::offset_ack<std::int64_t>& a) {
        auto h = highest->load();
        while (a.offset > h && !highest->compare_exchange_weak(h, a.offset)) {
        }
      }))
      .run(*node);
  };
  // Runs while a commit by time or count happens, then is shut down: its last
  // acknowledged offset is committed on the way out.
  offset_type first_end = 0;
  {
    ts::kill_switch ks;
    auto highest = std::make_shared<std::atomic<offset_type>>(0);
    auto done = run_from(0, ks, highest);
    REQUIRE(done);
    REQUIRE(test::wait_until([&] { return committed() >= 500; }, 30s));
    ks.shutdown();
    REQUIRE(done->wait(30s));
    first_end = highest->load();
    CHECK(committed() == first_end);
  }
  {
    ts::kill_switch ks;
    auto highest = std::make_shared<std::atomic<offset_type>>(0);
    auto first = std::make_shared<std::atomic<offset_type>>(0);
    auto done = run_from(committed(), ks, highest);
    REQUIRE(done);
    REQUIRE(test::wait_until([&] { return committed() >= first_end + 100; }, 30s));
    ks.shutdown();
    REQUIRE(done->wait(30s));
    CHECK(committed() == highest->load());
    CHECK(highest->load() > first_end);
  }
}

TEST_CASE("offset commits: sharded deduplicating entities apply a replay from an older offset "
          "once, and without origins the replay is applied twice") {
  test::in_process_cluster c{1, test::sharding_schema()};
  c.start_clusters(1);
  REQUIRE(test::wait_until([&] { return c.all_up(); }, 30s));
  auto& n = *c[0].n;
  dedup_tally::register_types(n.codec());
  auto journal = std::make_shared<persistence::memory_journal>();
  REQUIRE(persistence::install_journal(n, journal, journal));
  REQUIRE(sharding::start<dedup_tally::entity>(n, test::fast_sharding_settings(6)));
  constexpr std::int64_t entities = 7;
  auto stream = [&](std::int64_t from, std::int64_t to, std::string producer, std::string prefix) {
    auto id_of = [prefix](const std::int64_t& o) { return fmt::format("{}-{}", prefix, o % entities); };
    auto command_of = [producer](const std::int64_t& o) {
      auto from_o = producer.empty() ? persistence::origin{} : persistence::origin{producer, static_cast<std::uint64_t>(o)};
      return dedup_tally::add{o, from_o};
    };
    ts::entity_sink_options opts;
    opts.ask.parallelism = 8;
    auto done = ts::from_range(from, to + 1)
                  .via(ts::entities_flow_with_offsets<dedup_tally::entity, std::int64_t>(
                    n, id_of, command_of, [](const std::int64_t& o) { return o; }, opts))
                  .to(ts::ignore<ts::offset_ack<persistence::done>>())
                  .run(n);
    REQUIRE(done);
    auto r = done->wait(60s);
    INFO((r ? std::string{"ok"} : r.error().to_string()));
    REQUIRE(r);
  };
  auto values_of = [&](const std::string& prefix) {
    std::map<std::string, std::vector<std::int64_t>> out;
    for (std::int64_t k = 0; k < entities; ++k) {
      auto id = fmt::format("{}-{}", prefix, k);
      auto v = sharding::entity_for<dedup_tally::entity>(n, id).ask(dedup_tally::get_values{}, 10s);
      REQUIRE(v);
      out[id] = *v;
    }
    return out;
  };
  auto expected_values = [&](const std::string& prefix, std::vector<std::pair<std::int64_t, std::int64_t>> ranges) {
    std::map<std::string, std::vector<std::int64_t>> out;
    for (std::int64_t k = 0; k < entities; ++k)
      out[fmt::format("{}-{}", prefix, k)];
    for (auto [from, to] : ranges)
      for (auto o = from; o <= to; ++o)
        out[fmt::format("{}-{}", prefix, o % entities)].push_back(o);
    return out;
  };
  // 1..300 acknowledged, "crash" with 100 committed: the restart replays 101..300.
  stream(1, 300, "numbers", "once");
  stream(101, 400, "numbers", "once");
  CHECK(values_of("once") == expected_values("once", {{1, 400}}));
  stream(1, 300, "", "twice");
  stream(101, 400, "", "twice");
  CHECK(values_of("twice") == expected_values("twice", {{1, 300}, {101, 400}}));
}
