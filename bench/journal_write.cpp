// journal_write: 10,000 persistence ids interleaved, 100-byte payloads, WAL +
// synchronous=FULL. troupe: writes submitted concurrently from a few threads to
// the journal_service, each id with one write in flight (like an entity).
// baseline: raw SQLite inserting the same rows into the same schema with the same
// durability, prepared statement, one transaction per 4096 rows.
//
// journal_replay: 100,000 events of one id read through the backend's paged
// read_events versus one raw SELECT of the same rows.
#include "harness.hpp"
#include "journal_load.hpp"
#include "raw_sqlite.hpp"

#include "troupe/persistence/sqlite_journal.hpp"

namespace troupe::bench {

namespace {

using namespace troupe::persistence;

constexpr int entity_count = 10'000;
constexpr std::size_t payload_size = 100;
constexpr int raw_batch = 4096;

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

/// Events per second acknowledged by the journal_service (journal_load.hpp).
double troupe_write(const options& opts, const std::string& path, nlohmann::json& extra) {
  auto journal = open_journal(path, sync_mode::full);
  return service_write_rate(opts, journal, journal, entity_count, payload_size, extra);
}

/// Rows per second: raw prepared inserts into the same schema, same durability.
double raw_write(const options& opts, const std::string& path) {
  create_journal_schema(path);
  std::vector<std::string> ids;
  for (int i = 0; i < entity_count; ++i)
    ids.push_back(bench_entity_id(i));
  raw_event_writer raw{path, ids, {"bench.event", bytes(payload_size, 0x5a), "bench-writer"}};
  auto warm_until = now_seconds() + std::min(1.0, opts.seconds / 3);
  while (now_seconds() < warm_until)
    raw.transaction(raw_batch);
  return transaction_rate(raw, raw_batch, opts.seconds);
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
  r.extra["baseline_merge_every_rows"] = raw_event_writer::merge_every_rows;
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
  write_replay_events(*journal, id, replay_events, payload_size);

  auto measure = [&](auto&& one_pass) {
    one_pass();  // warm the page cache and statement caches
    std::uint64_t events = 0;
    auto start = now_seconds();
    while (now_seconds() - start < opts.seconds)
      events += one_pass();
    return static_cast<double>(events) / (now_seconds() - start);
  };

  auto troupe_rate =
    measure([&] { return paged_replay(*journal, id, replay_page, replay_events, payload_size); });

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
