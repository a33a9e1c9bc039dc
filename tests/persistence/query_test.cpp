// Queries (query.hpp) and the replay entry point (replay.hpp) on every backend.
#include "conformance_backends.hpp"

#include "troupe/actors/log.hpp"
#include "troupe/actors/metrics.hpp"
#include "troupe/persistence/journal_service.hpp"
#include "troupe/persistence/query.hpp"
#include "troupe/persistence/replay.hpp"

#include "support/wait.hpp"

#include <doctest/doctest.h>

#include <atomic>
#include <map>
#include <mutex>
#include <thread>

using namespace troupe;
using namespace troupe::persistence;
using namespace troupe::test;
using namespace std::chrono_literals;

namespace {

void write_ok(journal_backend& j, std::vector<atomic_write> batch) {
  for (auto& r : j.write(std::span<const atomic_write>{batch}))
    REQUIRE(r);
}

} // namespace

TEST_CASE_TEMPLATE("query: current events by persistence id end at the end seen first", B,
                   TROUPE_CONFORMANCE_BACKENDS) {
  auto b = B::make();
  write_ok(*b.journal, {make_write("q", 1, 10)});
  auto cursor = current_events_by_persistence_id(b.journal, "q", 3, max_sequence_nr, 3);
  auto first = cursor.next_page();
  REQUIRE(first);
  CHECK(first->size() == 3);
  CHECK(first->front().seq == 3);
  // Written after the query started: not part of this "current" query.
  write_ok(*b.journal, {make_write("q", 11, 12)});
  std::vector<sequence_nr> seen{3, 4, 5};
  for (;;) {
    auto page = cursor.next_page();
    REQUIRE(page);
    CHECK(page->size() <= 3);
    if (page->empty())
      break;
    for (auto& e : *page)
      seen.push_back(e.seq);
  }
  CHECK(seen == std::vector<sequence_nr>{3, 4, 5, 6, 7, 8, 9, 10});
  CHECK(cursor.done());
}

TEST_CASE_TEMPLATE("query: current events by tag from an offset", B, TROUPE_CONFORMANCE_BACKENDS) {
  auto b = B::make();
  write_ok(*b.journal, {make_write("a", 1, 3, {"t"}), make_write("b", 1, 2, {"t"}),
                        make_write("c", 1, 5, {"other"})});
  auto all = b.journal->events_by_tag("t", 0, 100);
  REQUIRE(all->size() == 5);
  auto cursor = current_events_by_tag(b.journal, "t", (*all)[1].offset, 2);
  auto first = cursor.next_page();
  REQUIRE(first);
  std::vector<offset_type> seen;
  for (auto& e : *first)
    seen.push_back(e.offset);
  write_ok(*b.journal, {make_write("a", 4, 4, {"t"})});  // after the start: excluded
  for (;;) {
    auto page = cursor.next_page();
    REQUIRE(page);
    if (page->empty())
      break;
    for (auto& e : *page)
      seen.push_back(e.offset);
  }
  CHECK(seen == std::vector<offset_type>{(*all)[2].offset, (*all)[3].offset, (*all)[4].offset});
}

TEST_CASE_TEMPLATE("query: current persistence ids in pages", B, TROUPE_CONFORMANCE_BACKENDS) {
  auto b = B::make();
  std::vector<atomic_write> batch;
  for (int i = 0; i < 7; ++i)
    batch.push_back(make_write(id_of("id", i), 1, 1));
  write_ok(*b.journal, std::move(batch));
  auto cursor = current_persistence_ids(b.journal, 3);
  std::vector<std::string> seen;
  for (;;) {
    auto page = cursor.next_page();
    REQUIRE(page);
    CHECK(page->size() <= 3);
    if (page->empty())
      break;
    seen.insert(seen.end(), page->begin(), page->end());
  }
  CHECK(seen == std::vector<std::string>{"id0", "id1", "id2", "id3", "id4", "id5", "id6"});
}

TEST_CASE_TEMPLATE("query: live events by tag under concurrent writers skip and repeat nothing", B,
                   TROUPE_CONFORMANCE_BACKENDS) {
  auto b = B::make();
  logger::options lo;
  lo.level = log_level::off;
  auto log = *logger::make(lo);
  metrics_registry metrics;
  auto svc = journal_service::start(b.journal, b.snapshots, {}, *log, metrics);

  std::mutex mtx;
  std::vector<event_record> received;
  std::atomic<bool> out_of_order{false};
  live_options opts;
  opts.page_size = 64;
  opts.refresh_interval = 1ms;
  auto sub = live_events_by_tag(
    b.journal, "live", 0,
    [&](std::vector<event_record>&& batch) {
      std::lock_guard<std::mutex> guard{mtx};
      for (auto& e : batch) {
        if (!received.empty() && e.offset <= received.back().offset)
          out_of_order = true;
        received.push_back(std::move(e));
      }
    },
    opts);

  constexpr int threads = 4;
  constexpr int ids_per_thread = 10;
  constexpr int events_per_id = 50;
  event_counter acked;
  std::vector<std::thread> writers;
  for (int t = 0; t < threads; ++t)
    writers.emplace_back([&, t] {
      for (int k = 1; k <= events_per_id; ++k)
        for (int i = 0; i < ids_per_thread; ++i) {
          // Every other event carries the tag; the rest are noise in between.
          auto tags = (k % 2 == 0) ? std::vector<std::string>{"live"} : std::vector<std::string>{};
          svc->write(make_write(fmt::format("w{}-{}", t, i), static_cast<sequence_nr>(k),
                                static_cast<sequence_nr>(k), tags),
                     [&](expected<void> r) {
                       if (r)
                         acked.add();
                     });
        }
    });
  for (auto& w : writers)
    w.join();
  constexpr int total = threads * ids_per_thread * events_per_id;
  REQUIRE(acked.wait_for(total, 60s));
  constexpr std::size_t tagged = total / 2;
  CHECK(wait_until(
    [&] {
      std::lock_guard<std::mutex> guard{mtx};
      return received.size() >= tagged;
    },
    30s));
  sub->stop();
  svc->stop();
  CHECK_FALSE(out_of_order.load());
  auto expected_events = b.journal->events_by_tag("live", 0, tagged + 10);
  REQUIRE(expected_events);
  REQUIRE(expected_events->size() == tagged);
  std::lock_guard<std::mutex> guard{mtx};
  REQUIRE(received.size() == tagged);  // none skipped, none twice
  for (std::size_t i = 0; i < tagged; ++i) {
    CHECK(received[i].offset == (*expected_events)[i].offset);
    CHECK(received[i].persistence_id == (*expected_events)[i].persistence_id);
  }
  CHECK(sub->position() == expected_events->back().offset);
}

TEST_CASE_TEMPLATE("query: live events by persistence id follow new writes until stopped", B,
                   TROUPE_CONFORMANCE_BACKENDS) {
  auto b = B::make();
  write_ok(*b.journal, {make_write("f", 1, 3)});
  std::mutex mtx;
  std::vector<sequence_nr> seen;
  std::atomic<int> batches_after_stop{0};
  std::atomic<bool> stopped{false};
  live_options opts;
  opts.refresh_interval = 1ms;
  auto sub = live_events_by_persistence_id(
    b.journal, "f", 2,
    [&](std::vector<event_record>&& batch) {
      if (stopped)
        batches_after_stop++;
      std::lock_guard<std::mutex> guard{mtx};
      for (auto& e : batch)
        seen.push_back(e.seq);
    },
    opts);
  auto count = [&] {
    std::lock_guard<std::mutex> guard{mtx};
    return seen.size();
  };
  REQUIRE(wait_until([&] { return count() == 2; }));
  write_ok(*b.journal, {make_write("f", 4, 5)});
  REQUIRE(wait_until([&] { return count() == 4; }));
  CHECK(sub->running());
  sub->stop();
  stopped = true;
  CHECK_FALSE(sub->running());
  write_ok(*b.journal, {make_write("f", 6, 6)});
  CHECK(batches_after_stop.load() == 0);
  std::lock_guard<std::mutex> guard{mtx};
  CHECK(seen == std::vector<sequence_nr>{2, 3, 4, 5});
  CHECK(sub->position() == 5);
}

TEST_CASE("query: stop() interrupts a long refresh interval") {
  auto b = memory_backend::make();
  live_options opts;
  opts.refresh_interval = 1h;
  auto sub = live_events_by_tag(b.journal, "t", 0, [](std::vector<event_record>&&) {}, opts);
  REQUIRE(wait_until([&] {
    return std::static_pointer_cast<memory_journal>(b.journal)->calls(journal_op::query) >= 1;
  }));
  sub->stop();  // returns without waiting an hour
  CHECK_FALSE(sub->running());
}

TEST_CASE("query: a failed read ends a live subscription with the error") {
  auto j = std::make_shared<memory_journal>();
  j->fail(journal_op::query, "", 1);
  std::optional<error> failure;
  event_counter failed;
  live_options opts;
  opts.refresh_interval = 1ms;
  auto sub = live_events_by_tag(
    j, "t", 0, [](std::vector<event_record>&&) {}, opts,
    [&](const error& e) {
      failure = e;
      failed.add();
    });
  REQUIRE(failed.wait_for(1));
  REQUIRE(wait_until([&] { return !sub->running(); }));
  CHECK(failure->code() == errc::journal_failure);
}

TEST_CASE_TEMPLATE("replay: for_each_event walks one id in pages and stops on a visitor error", B,
                   TROUPE_CONFORMANCE_BACKENDS) {
  auto b = B::make();
  write_ok(*b.journal, {make_write("r", 1, 25), make_write("other", 1, 3)});
  std::vector<sequence_nr> seen;
  auto n = for_each_event(
    *b.journal, "r",
    [&](const event_record& e) -> expected<void> {
      seen.push_back(e.seq);
      return {};
    },
    3, 20, 4);
  REQUIRE(n);
  CHECK(*n == 18);
  CHECK(seen.front() == 3);
  CHECK(seen.back() == 20);
  auto stopped = for_each_event(*b.journal, "r", [](const event_record& e) -> expected<void> {
    if (e.seq == 7)
      return error{errc::decode_failed, "cannot decode 'r' seq 7"};
    return {};
  });
  REQUIRE_FALSE(stopped);
  CHECK(stopped.error().code() == errc::decode_failed);
}
