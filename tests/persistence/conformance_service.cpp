// The journal_service contract on every backend: group commit under concurrent
// writers, each callback exactly once, per-id order kept.
#include "conformance_backends.hpp"

#include "troupe/actors/log.hpp"
#include "troupe/actors/metrics.hpp"
#include "troupe/persistence/journal_service.hpp"

#include "support/wait.hpp"

#include <doctest/doctest.h>

#include <fmt/core.h>

#include <atomic>
#include <future>
#include <thread>

using namespace troupe;
using namespace troupe::persistence;
using namespace troupe::test;

namespace {

template <class T>
expected<T> await(std::function<void(callback<T>)> call) {
  std::promise<expected<T>> p;
  auto f = p.get_future();
  call([&p](expected<T> r) { p.set_value(std::move(r)); });
  return f.get();
}

} // namespace

TEST_CASE_TEMPLATE("conformance: journal_service group-commits concurrent writers, each callback "
                   "once, per-id order kept",
                   B, TROUPE_CONFORMANCE_BACKENDS) {
  auto b = B::make();
  auto log = quiet_logger();
  metrics_registry metrics;
  auto svc = journal_service::start(b.journal, b.snapshots, {}, *log, metrics);

  constexpr int threads = 4;
  constexpr int ids_per_thread = 50;
  constexpr int writes_per_id = 20;
  constexpr int total = threads * ids_per_thread * writes_per_id;
  std::vector<std::atomic<int>> calls(total);
  std::atomic<int> failures{0};
  event_counter done;
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      // Interleave ids; each id's writes are submitted back to back, without
      // waiting for acks: the service must keep their order.
      for (int k = 1; k <= writes_per_id; ++k)
        for (int i = 0; i < ids_per_thread; ++i) {
          auto id = fmt::format("w{}-{}", t, i);
          auto index = (t * ids_per_thread + i) * writes_per_id + (k - 1);
          svc->write(make_write(id, static_cast<sequence_nr>(k), static_cast<sequence_nr>(k)),
                     [&, index](expected<void> r) {
                       if (!r)
                         failures++;
                       calls[static_cast<std::size_t>(index)]++;
                       done.add();
                     });
        }
    });
  }
  for (auto& w : workers)
    w.join();
  REQUIRE(done.wait_for(total, std::chrono::seconds{60}));
  svc->stop();
  CHECK(failures.load() == 0);
  CHECK(std::all_of(calls.begin(), calls.end(), [](auto& c) { return c.load() == 1; }));
  for (int t = 0; t < threads; ++t)
    for (int i = 0; i < ids_per_thread; ++i) {
      auto id = fmt::format("w{}-{}", t, i);
      auto events = b.journal->read_events(id, 1, max_sequence_nr, 100);
      REQUIRE(events);
      REQUIRE(events->size() == writes_per_id);
      for (std::size_t k = 1; k < events->size(); ++k)
        CHECK((*events)[k].offset > (*events)[k - 1].offset);
    }
  // Group commit happened: fewer backend calls than writes.
  auto batches = metrics.histogram("troupe_persistence_journal_batch_events", {}).read();
  CHECK(batches.count < static_cast<std::uint64_t>(total));
  CHECK(metrics.counter_value("troupe_persistence_journal_events_written_total") == total);
}

TEST_CASE_TEMPLATE("conformance: journal_service reads, snapshots and queries", B,
                   TROUPE_CONFORMANCE_BACKENDS) {
  auto b = B::make();
  auto log = quiet_logger();
  metrics_registry metrics;
  auto svc = journal_service::start(b.journal, b.snapshots, {}, *log, metrics);
  auto w = await<void>([&](callback<void> cb) { svc->write(make_write("s1", 1, 5, {"tg"}), cb); });
  REQUIRE(w);
  auto conflict =
    await<void>([&](callback<void> cb) { svc->write(make_write("s1", 5, 6), cb); });
  REQUIRE_FALSE(conflict);
  CHECK(conflict.error().code() == errc::sequence_conflict);
  auto hi = await<sequence_nr>([&](callback<sequence_nr> cb) { svc->highest_sequence_nr("s1", cb); });
  CHECK(*hi == 5);
  auto page = await<std::vector<event_record>>(
    [&](callback<std::vector<event_record>> cb) { svc->read_events("s1", 2, 4, 10, cb); });
  REQUIRE(page);
  CHECK(page->size() == 3);
  // A page handed back is refilled by a later read: the same records as a fresh one.
  REQUIRE(await<void>([&](callback<void> cb) { svc->write(make_write("s2", 1, 2), cb); }));
  svc->recycle(std::move(*page));
  auto refilled = await<std::vector<event_record>>(
    [&](callback<std::vector<event_record>> cb) { svc->read_events("s2", 1, 10, 10, cb); });
  REQUIRE(refilled);
  REQUIRE(refilled->size() == 2);
  auto fresh = b.journal->read_events("s2", 1, 10, 10);
  REQUIRE(fresh);
  REQUIRE(fresh->size() == 2);
  for (std::size_t i = 0; i < 2; ++i) {
    CHECK((*refilled)[i].persistence_id == "s2");
    CHECK((*refilled)[i].seq == (*fresh)[i].seq);
    CHECK((*refilled)[i].payload == (*fresh)[i].payload);
    CHECK((*refilled)[i].tags == (*fresh)[i].tags);
    CHECK((*refilled)[i].offset == (*fresh)[i].offset);
  }
  svc->recycle(std::move(*refilled));
  auto s = make_snapshot("s1", 5);
  REQUIRE(await<void>([&](callback<void> cb) { svc->save_snapshot(s, cb); }));
  auto loaded = await<std::optional<snapshot_record>>(
    [&](callback<std::optional<snapshot_record>> cb) {
      svc->load_snapshot("s1", snapshot_criteria::latest(), cb);
    });
  REQUIRE(loaded);
  REQUIRE(loaded->has_value());
  CHECK((*loaded)->payload == s.payload);
  REQUIRE(await<void>([&](callback<void> cb) {
    svc->delete_snapshots("s1", snapshot_criteria::latest(), cb);
  }));
  REQUIRE(await<void>([&](callback<void> cb) { svc->delete_events_to("s1", 2, cb); }));
  auto tagged = await<std::vector<event_record>>(
    [&](callback<std::vector<event_record>> cb) { svc->events_by_tag("tg", 0, 100, cb); });
  REQUIRE(tagged);
  CHECK(tagged->size() == 3);
  auto ids = await<std::vector<std::string>>(
    [&](callback<std::vector<std::string>> cb) { svc->persistence_ids("", 10, cb); });
  CHECK(*ids == std::vector<std::string>{"s1", "s2"});
  auto off = await<offset_type>([&](callback<offset_type> cb) { svc->highest_offset(cb); });
  CHECK(*off == b.journal->read_events("s2", 1, 10, 10)->back().offset);  // written last
  svc->stop();
  // After stop, calls fail at once with shutting_down.
  auto late = await<void>([&](callback<void> cb) { svc->write(make_write("s1", 6, 6), cb); });
  REQUIRE_FALSE(late);
  CHECK(late.error().code() == errc::shutting_down);
  auto late_read = await<sequence_nr>(
    [&](callback<sequence_nr> cb) { svc->highest_sequence_nr("s1", cb); });
  REQUIRE_FALSE(late_read);
  CHECK(late_read.error().code() == errc::shutting_down);
}

TEST_CASE_TEMPLATE("conformance: journal_service carries a write's fence and advances fences", B,
                   TROUPE_CONFORMANCE_BACKENDS) {
  auto b = B::make();
  auto log = quiet_logger();
  metrics_registry metrics;
  auto svc = journal_service::start(b.journal, b.snapshots, {}, *log, metrics);
  auto fenced = [](std::string id, sequence_nr seq, std::uint64_t epoch) {
    auto w = make_write(id, seq, seq);
    w.fence = write_fence{"shard-3", epoch};
    return w;
  };
  REQUIRE(await<void>([&](callback<void> cb) { svc->write(fenced("a", 1, 1), cb); }));
  REQUIRE(await<void>([&](callback<void> cb) { svc->advance_fence("shard-3", 2, cb); }));
  auto epoch = await<std::uint64_t>([&](callback<std::uint64_t> cb) { svc->fence_epoch("shard-3", cb); });
  REQUIRE(epoch);
  CHECK(*epoch == 2);
  // The old owner's next write is refused; the new owner's is stored.
  auto stale = await<void>([&](callback<void> cb) { svc->write(fenced("a", 2, 1), cb); });
  REQUIRE_FALSE(stale);
  CHECK(stale.error().code() == errc::fenced);
  REQUIRE(await<void>([&](callback<void> cb) { svc->write(fenced("a", 2, 2), cb); }));
  auto lower = await<void>([&](callback<void> cb) { svc->advance_fence("shard-3", 1, cb); });
  REQUIRE_FALSE(lower);
  CHECK(lower.error().code() == errc::fenced);
  CHECK(metrics.counter("troupe_persistence_journal_writes_total", {{"result", "fenced"}}).value()
        == 1);
  svc->stop();
  auto late = await<void>([&](callback<void> cb) { svc->advance_fence("shard-3", 5, cb); });
  REQUIRE_FALSE(late);
  CHECK(late.error().code() == errc::shutting_down);
}
