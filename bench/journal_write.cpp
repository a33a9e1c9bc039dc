// journal_write: 10,000 persistence ids interleaved, 100-byte payloads, WAL +
// synchronous=FULL. troupe: writes submitted concurrently from a few threads to
// the journal_service, each id with one write in flight (like an entity).
// baseline: raw SQLite inserting the same rows into the same schema with the same
// durability, prepared statement, one transaction per 4096 rows.
//
// journal_replay: 100,000 events of one id read through the backend's paged
// read_events versus one raw SELECT of the same rows.
#include "harness.hpp"
#include "raw_sqlite.hpp"

#include "troupe/actors/log.hpp"
#include "troupe/actors/metrics.hpp"
#include "troupe/persistence/journal_service.hpp"
#include "troupe/persistence/sqlite_journal.hpp"

#include <fmt/core.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

namespace troupe::bench {

namespace {

using namespace troupe::persistence;

constexpr int entity_count = 10'000;
constexpr std::size_t payload_size = 100;
constexpr int raw_batch = 4096;

std::string entity_id(int i) {
  return fmt::format("bench|entity-{}", i);
}

std::shared_ptr<sqlite_journal> open_journal(const std::string& path, sync_mode sync) {
  sqlite_options o;
  o.path = path;
  o.synchronous = sync;
  o.create_if_missing = true;
  auto j = sqlite_journal::open(o);
  if (!j)
    die(j.error().to_string());
  return *j;
}

// -- journal_write ------------------------------------------------------------------------

/// Events per second acknowledged by the journal_service.
double troupe_write(const options& opts, const std::string& path, nlohmann::json& extra) {
  auto journal = open_journal(path, sync_mode::full);
  logger::options lo;
  lo.level = log_level::warn;
  auto log = *logger::make(lo);
  metrics_registry metrics;
  auto svc = journal_service::start(journal, journal, {}, *log, metrics);

  constexpr int submitters = 3;
  struct lane {
    std::mutex mtx;
    std::condition_variable cv;
    std::deque<int> ready;
    std::atomic<std::uint64_t>* acked;
  };
  std::vector<lane> lanes(submitters);
  std::vector<sequence_nr> next_seq(entity_count, 1);
  std::vector<std::string> ids;
  for (int i = 0; i < entity_count; ++i) {
    ids.push_back(entity_id(i));
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
        w.persistence_id = ids[static_cast<std::size_t>(i)];
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
  // Warm up (the first batches create the 10,000 id rows), then measure.
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

/// Rows per second: raw prepared inserts into the same schema, same durability.
double raw_write(const options& opts, const std::string& path) {
  create_journal_schema(path);
  std::vector<std::string> ids;
  for (int i = 0; i < entity_count; ++i)
    ids.push_back(entity_id(i));
  raw_event_writer raw{path, ids, {"bench.event", bytes(payload_size, 0x5a), "bench-writer"}};
  auto warm_until = now_seconds() + std::min(1.0, opts.seconds / 3);
  while (now_seconds() < warm_until)
    raw.transaction(raw_batch);
  std::int64_t rows = 0;
  auto start = now_seconds();
  while (now_seconds() - start < opts.seconds) {
    raw.transaction(raw_batch);
    rows += raw_batch;
  }
  return static_cast<double>(rows) / (now_seconds() - start);
}

std::vector<result> journal_write(const options& opts) {
  scratch_dir dir;
  result r;
  r.bench = "journal_write";
  r.unit = "events/s";
  r.troupe = troupe_write(opts, dir.file("troupe.db"), r.extra);
  r.baseline = raw_write(opts, dir.file("raw.db"));
  r.extra["entities"] = entity_count;
  r.extra["payload_bytes"] = payload_size;
  r.extra["synchronous"] = "full";
  r.extra["baseline_batch_rows"] = raw_batch;
  r.extra["config"] = "defaults";
  return {r};
}

// -- journal_replay -----------------------------------------------------------------------

constexpr sequence_nr replay_events = 100'000;
constexpr std::size_t replay_page = 4096;

std::vector<result> journal_replay(const options& opts) {
  scratch_dir dir;
  auto path = dir.file("replay.db");
  auto journal = open_journal(path, sync_mode::off);  // setup only; reads are measured
  const std::string id = "bench|replayed";
  std::vector<atomic_write> batch;
  for (sequence_nr s = 1; s <= replay_events; s += 1000) {
    auto& w = batch.emplace_back();
    w.persistence_id = id;
    for (sequence_nr k = 0; k < 1000; ++k) {
      auto& e = w.events.emplace_back();
      e.seq = s + k;
      e.manifest = "bench.event";
      e.payload.assign(payload_size, 0x5a);
      e.writer = "bench-writer";
    }
  }
  for (auto& r : journal->write(std::span<const atomic_write>{batch}))
    if (!r)
      die(r.error().to_string());

  auto measure = [&](auto&& one_pass) {
    one_pass();  // warm the page cache and statement caches
    std::uint64_t events = 0;
    auto start = now_seconds();
    while (now_seconds() - start < opts.seconds)
      events += one_pass();
    return static_cast<double>(events) / (now_seconds() - start);
  };

  auto troupe_rate = measure([&] {
    std::uint64_t n = 0;
    std::size_t bytes_seen = 0;
    sequence_nr next = 1;
    for (;;) {
      auto page = journal->read_events(id, next, max_sequence_nr, replay_page);
      if (!page)
        die(page.error().to_string());
      if (page->empty())
        break;
      for (auto& e : *page)
        bytes_seen += e.payload.size();
      n += page->size();
      next = page->back().seq + 1;
    }
    if (n != replay_events || bytes_seen != replay_events * payload_size)
      die("replay read the wrong number of events");
    return n;
  });

  raw_event_reader raw{path};
  auto raw_rate = measure([&] {
    auto read = raw.read(id);
    if (read.rows != replay_events || read.payload_bytes != replay_events * payload_size)
      die("raw replay read the wrong number of events");
    return read.rows;
  });

  result r;
  r.bench = "journal_replay";
  r.unit = "events/s";
  r.troupe = troupe_rate;
  r.baseline = raw_rate;
  r.extra["events"] = replay_events;
  r.extra["page_size"] = replay_page;
  return {r};
}

} // namespace

TROUPE_BENCHMARK("journal_write",
                 "10k ids interleaved, 100 B events, WAL+FULL: journal_service vs raw SQLite",
                 journal_write);
TROUPE_BENCHMARK("journal_replay",
                 "100k events of one id: paged read_events vs one raw SELECT", journal_replay);

} // namespace troupe::bench
