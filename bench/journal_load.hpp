// The troupe side of the journal benchmarks, for any backend (journal_write and
// journal_replay on SQLite, persist_pg and replay_pg on PostgreSQL):
//
//   service_write_rate  `ids` persistence ids interleaved, one write of one event
//                       in flight per id (like an entity), submitted from 3 threads
//                       to a journal_service (group commit); acknowledged events/s
//   paged_replay        one id's events read back through read_events in pages
#pragma once

#include "harness.hpp"

#include "troupe/actors/log.hpp"
#include "troupe/actors/metrics.hpp"
#include "troupe/persistence/journal_service.hpp"

#include <fmt/core.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

namespace troupe::bench {

/// The id of entity `i` in the write benchmarks.
inline std::string bench_entity_id(int i) {
  return fmt::format("bench|entity-{}", i);
}

/// Events per second acknowledged by a journal_service over `backend`; sets
/// extra["mean_batch_events"].
inline double service_write_rate(const options& opts,
                                 std::shared_ptr<persistence::journal_backend> backend,
                                 std::shared_ptr<persistence::snapshot_backend> snapshots, int ids,
                                 std::size_t payload_size, nlohmann::json& extra) {
  using namespace troupe::persistence;
  logger::options lo;
  lo.level = log_level::warn;
  auto log = *logger::make(lo);
  metrics_registry metrics;
  auto svc = journal_service::start(std::move(backend), std::move(snapshots), {}, *log, metrics);

  constexpr int submitters = 3;
  struct lane {
    std::mutex mtx;
    std::condition_variable cv;
    std::deque<int> ready;
    std::atomic<std::uint64_t>* acked;
  };
  std::vector<lane> lanes(submitters);
  std::vector<sequence_nr> next_seq(static_cast<std::size_t>(ids), 1);
  std::vector<std::string> names;
  for (int i = 0; i < ids; ++i) {
    names.push_back(bench_entity_id(i));
    lanes[static_cast<std::size_t>(i % submitters)].ready.push_back(i);
  }
  std::atomic<std::uint64_t> acked{0};
  for (auto& l : lanes)
    l.acked = &acked;
  std::atomic<bool> running{true};
  const bytes payload(payload_size, 0x5a);
  std::vector<std::thread> threads;
  for (int t = 0; t < submitters; ++t) {
    threads.emplace_back([&, t] {
      auto& my = lanes[static_cast<std::size_t>(t)];
      std::unique_lock<std::mutex> lock{my.mtx};
      while (running.load(std::memory_order_relaxed)) {
        if (my.ready.empty()) {
          my.cv.wait_for(lock, std::chrono::milliseconds{50});
          continue;
        }
        auto i = my.ready.front();
        my.ready.pop_front();
        lock.unlock();
        atomic_write w;
        w.persistence_id = names[static_cast<std::size_t>(i)];
        auto& e = w.events.emplace_back();
        e.seq = next_seq[static_cast<std::size_t>(i)]++;
        e.manifest = "bench.event";
        e.payload = payload;
        e.writer = "bench-writer";
        // Two words of captures: std::function stores them without allocating.
        svc->write(std::move(w), [l = &my, i](expected<void> r) {
          if (!r)
            die(r.error().to_string());
          auto& my = *l;
          my.acked->fetch_add(1, std::memory_order_relaxed);
          std::lock_guard<std::mutex> guard{my.mtx};
          my.ready.push_back(i);
          if (my.ready.size() == 1)
            my.cv.notify_one();
        });
        lock.lock();
      }
    });
  }
  // Warm up (the first batches create the id rows), then measure.
  auto warm_until = now_seconds() + std::min(1.0, opts.seconds / 3);
  while (now_seconds() < warm_until)
    std::this_thread::sleep_for(std::chrono::milliseconds{10});
  auto start_count = acked.load();
  auto start = now_seconds();
  std::this_thread::sleep_for(std::chrono::duration<double>(opts.seconds));
  auto count = acked.load() - start_count;
  auto elapsed = now_seconds() - start;
  running = false;
  for (auto& l : lanes)
    l.cv.notify_all();
  for (auto& t : threads)
    t.join();
  svc->stop();
  auto batches = metrics.histogram("troupe_persistence_journal_batch_events", {}).read();
  extra["mean_batch_events"] = batches.count ? batches.sum / static_cast<double>(batches.count) : 0;
  return static_cast<double>(count) / elapsed;
}

/// Rows per second of a raw baseline's `rows`-row transactions over `seconds`
/// (`w.transaction(rows)` commits one durably).
template <class Writer>
double transaction_rate(Writer& w, int rows, double seconds) {
  std::int64_t n = 0;
  auto start = now_seconds();
  while (now_seconds() - start < seconds) {
    w.transaction(rows);
    n += rows;
  }
  return static_cast<double>(n) / (now_seconds() - start);
}

/// Stores `events` events of `payload_size` bytes for `id` in one batch of
/// 1000-event writes (the replay benchmarks' setup).
inline void write_replay_events(persistence::journal_backend& j, const std::string& id,
                                persistence::sequence_nr events, std::size_t payload_size) {
  using namespace troupe::persistence;
  std::vector<atomic_write> batch;
  for (sequence_nr s = 1; s <= events; s += 1000) {
    auto& w = batch.emplace_back();
    w.persistence_id = id;
    for (sequence_nr k = 0; k < 1000 && s + k <= events; ++k) {
      auto& e = w.events.emplace_back();
      e.seq = s + k;
      e.manifest = "bench.event";
      e.payload.assign(payload_size, 0x5a);
      e.writer = "bench-writer";
    }
  }
  for (auto& r : j.write(std::span<const atomic_write>{batch}))
    if (!r)
      die(r.error().to_string());
}

/// Reads every event of `id` in pages of `page`; dies unless it finds `events`
/// events of `payload_size` bytes. Returns the events read.
inline std::uint64_t paged_replay(persistence::journal_backend& j, const std::string& id,
                                  std::size_t page, std::uint64_t events, std::size_t payload_size) {
  using namespace troupe::persistence;
  std::uint64_t n = 0;
  std::size_t bytes_seen = 0;
  sequence_nr next = 1;
  for (;;) {
    auto p = j.read_events(id, next, max_sequence_nr, page);
    if (!p)
      die(p.error().to_string());
    if (p->empty())
      break;
    for (auto& e : *p)
      bytes_seen += e.payload.size();
    n += p->size();
    next = p->back().seq + 1;
  }
  if (n != events || bytes_seen != events * payload_size)
    die("replay read the wrong number of events");
  return n;
}

} // namespace troupe::bench
