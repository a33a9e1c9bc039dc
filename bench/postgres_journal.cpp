// The PostgreSQL journal versus raw libpq doing the same durable work on the same
// schema, on one server (synchronous_commit=on, fsync on: a commit is durable).
//
//   persist_pg  10,000 ids interleaved, 100-byte events, one write in flight per id,
//               submitted from 3 threads to the journal_service (group commit):
//               acknowledged events/s. Baseline: one connection inserting the same
//               rows into the same tables with one multi-row INSERT (binary arrays)
//               per transaction of 4096 rows plus the highest-offset update. Two
//               rounds of one window each, alternating.
//   replay_pg   100,000 events of one id read through read_events in pages of 4096
//               versus one raw SELECT of the same rows (binary results).
//
// The server: BENCH_PG_URI, or else a throwaway cluster started for the run
// with scripts/pg-throwaway.sh (on the same machine as the benchmark). Each
// measurement gets its own schema.
#include "harness.hpp"
#include "journal_load.hpp"

#include "troupe/persistence/postgres_journal.hpp"

#include <endian.h>
#include <fmt/core.h>
#include <libpq-fe.h>

#include <cstdio>
#include <filesystem>
#include <memory>

namespace troupe::bench {

namespace {

using namespace troupe::persistence;

constexpr int entity_count = 10'000;
constexpr std::size_t payload_size = 100;
/// The baseline's rows per transaction: the service's largest batch (its default
/// max-batch-events), which its batches reach under this load.
constexpr int raw_batch = 4096;
constexpr int rounds = 2;

// -- the server ----------------------------------------------------------------------------

std::string run_script(const std::string& what, const std::string& dir) {
  auto root = std::filesystem::path{__FILE__}.parent_path().parent_path();
  auto cmd = fmt::format("'{}' {} '{}'", (root / "scripts" / "pg-throwaway.sh").string(), what, dir);
  auto pipe = ::popen(cmd.c_str(), "r");
  if (!pipe)
    die("cannot run " + cmd);
  std::string out;
  char buf[256];
  while (auto n = std::fread(buf, 1, sizeof buf, pipe))
    out.append(buf, n);
  if (::pclose(pipe) != 0)
    die(cmd + " failed");
  while (!out.empty() && out.back() == '\n')
    out.pop_back();
  return out;
}

/// A throwaway cluster for this process, unless BENCH_PG_URI names a server.
struct server {
  server() {
    if (auto u = std::getenv("BENCH_PG_URI"); u && *u) {
      uri = u;
      return;
    }
    dir = std::make_unique<scratch_dir>();
    uri = run_script("start", dir->path.string());
  }
  ~server() {
    if (dir)
      run_script("destroy", dir->path.string());
  }
  std::unique_ptr<scratch_dir> dir;
  std::string uri;
};

/// A raw libpq connection; dies on any error (a benchmark, not a product path).
struct raw_conn {
  explicit raw_conn(const std::string& uri) : c(PQconnectdb(uri.c_str())) {
    if (PQstatus(c) != CONNECTION_OK)
      die(fmt::format("cannot connect: {}", PQerrorMessage(c)));
    PQsetNoticeProcessor(c, [](void*, const char*) {}, nullptr);
  }
  ~raw_conn() { PQfinish(c); }
  raw_conn(const raw_conn&) = delete;
  raw_conn& operator=(const raw_conn&) = delete;

  PGresult* check(PGresult* r, const char* what) {
    auto s = PQresultStatus(r);
    if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK)
      die(fmt::format("{}: {}", what, PQresultErrorMessage(r)));
    return r;
  }
  void exec(const char* sql) { PQclear(check(PQexec(c, sql), sql)); }
  PGconn* c;
};

/// A new schema on the server; the URI whose search_path is it.
std::string fresh_schema(const std::string& uri, const char* name) {
  raw_conn c{uri};
  c.exec(fmt::format("DROP SCHEMA IF EXISTS {0} CASCADE; CREATE SCHEMA {0}", name).c_str());
  return fmt::format("{}{}options=-csearch_path%3D{}", uri,
                     uri.find('?') == std::string::npos ? "?" : "&", name);
}

std::shared_ptr<postgres_journal> open_journal(const std::string& uri) {
  postgres_options o;
  o.uri = uri;
  auto j = postgres_journal::open(o);
  if (!j)
    die(j.error().to_string());
  return *j;
}

// -- raw libpq -----------------------------------------------------------------------------

/// One binary array parameter (PostgreSQL's array wire format, one dimension).
struct raw_array {
  Oid element;
  std::string body;
  std::uint32_t n = 0;
  void put32(std::string& o, std::uint32_t x) const {
    x = htobe32(x);
    o.append(reinterpret_cast<const char*>(&x), 4);
  }
  void add(std::int64_t x) {
    put32(body, 8);
    auto b = htobe64(static_cast<std::uint64_t>(x));
    body.append(reinterpret_cast<const char*>(&b), 8);
    ++n;
  }
  void add(std::string_view x) {
    put32(body, static_cast<std::uint32_t>(x.size()));
    body.append(x);
    ++n;
  }
  std::string encode() const {
    std::string o;
    for (std::uint32_t x : {1u, 0u, static_cast<std::uint32_t>(element), n, 1u})
      put32(o, x);
    return o + body;
  }
};

/// Inserts events round-robin over `ids` registered up front, in durable
/// transactions of `rows` rows, as the backend stores them.
class raw_pg_writer {
public:
  raw_pg_writer(const std::string& uri, int ids) : db_{uri} {
    db_.exec("INSERT INTO persistence_ids(name) SELECT 'bench|entity-' || g "
             "FROM generate_series(0, 9999) g");
    auto r = db_.check(PQexec(db_.c, "SELECT id FROM persistence_ids ORDER BY id"), "ids");
    for (int i = 0; i < PQntuples(r); ++i)
      pids_.push_back(std::strtoll(PQgetvalue(r, i, 0), nullptr, 10));
    PQclear(r);
    if (static_cast<int>(pids_.size()) != ids)
      die("raw writer: wrong number of ids");
    seqs_.assign(pids_.size(), 1);
  }

  void transaction(int rows) {
    raw_array ord{20}, pid{20}, seq{20}, manifest{25}, version{20}, payload{17}, tags{25},
      writer{25}, ts{20};
    std::string bytes(payload_size, '\x5a');
    auto now = now_ms();
    for (int k = 0; k < rows; ++k) {
      auto i = next_++ % pids_.size();
      ord.add(++offset_);
      pid.add(pids_[i]);
      seq.add(seqs_[i]++);
      manifest.add("bench.event");
      version.add(std::int64_t{1});
      payload.add(bytes);
      tags.add("");
      writer.add("bench-writer");
      ts.add(now);
    }
    std::string values[9];
    const raw_array* arrays[] = {&ord, &pid, &seq, &manifest, &version, &payload, &tags, &writer, &ts};
    const char* ptrs[9];
    int lengths[9], formats[9];
    for (int c = 0; c < 9; ++c) {
      values[c] = arrays[c]->encode();
      ptrs[c] = values[c].data();
      lengths[c] = static_cast<int>(values[c].size());
      formats[c] = 1;
    }
    db_.exec("BEGIN");
    PQclear(db_.check(
      PQexecParams(db_.c,
                   "INSERT INTO events(ordering, pid, seq, manifest, version, payload, tags, "
                   "writer, timestamp_ms) SELECT * FROM unnest($1::int8[], $2::int8[], "
                   "$3::int8[], $4::text[], $5::int8[], $6::bytea[], $7::text[], $8::text[], "
                   "$9::int8[])",
                   9, nullptr, ptrs, lengths, formats, 1),
      "insert"));
    auto off = std::to_string(offset_);
    const char* p1[] = {off.c_str()};
    PQclear(db_.check(PQexecParams(db_.c,
                                   "UPDATE journal_meta SET value = $1 WHERE key = 'highest_offset'",
                                   1, nullptr, p1, nullptr, nullptr, 0),
                      "offset"));
    db_.exec("COMMIT");
  }

private:
  raw_conn db_;
  std::vector<std::int64_t> pids_;
  std::vector<std::int64_t> seqs_;
  std::size_t next_ = 0;
  std::int64_t offset_ = 0;
};

// -- persist_pg ----------------------------------------------------------------------------

std::vector<result> persist_pg(const options& opts) {
  server s;
  result r;
  r.bench = "persist_pg";
  r.unit = "events/s";
  // Rounds of one troupe window and one raw window, each on a fresh schema, so
  // that both see the same machine (others' load on a shared machine drifts).
  paired_windows w;
  for (int round = 0; round < rounds; ++round) {
    auto journal = open_journal(fresh_schema(s.uri, "bench_persist_troupe"));
    r.extra["synchronous_commit"] = journal->synchronous_commit();
    w.a.push_back(
      service_write_rate(opts, journal, journal, entity_count, payload_size, r.extra));
    journal.reset();
    auto uri = fresh_schema(s.uri, "bench_persist_raw");
    open_journal(uri);  // the same schema, created by troupe
    raw_pg_writer raw{uri, entity_count};
    transaction_rate(raw, raw_batch, std::min(1.0, opts.seconds / 3));  // warm up, as troupe's
    w.b.push_back(transaction_rate(raw, raw_batch, opts.seconds));
  }
  r.troupe = paired_windows::mean(w.a);
  r.baseline = paired_windows::mean(w.b);
  r.extra["rounds"] = rounds;
  raw_conn{s.uri}.exec("DROP SCHEMA bench_persist_troupe CASCADE; "
                       "DROP SCHEMA bench_persist_raw CASCADE");
  r.extra["entities"] = entity_count;
  r.extra["payload_bytes"] = payload_size;
  r.extra["baseline_batch_rows"] = raw_batch;
  r.extra["server"] = std::getenv("BENCH_PG_URI") ? "BENCH_PG_URI"
                                                          : "throwaway, same machine";
  r.extra["config"] = "defaults";
  return {r};
}

// -- replay_pg -----------------------------------------------------------------------------

constexpr sequence_nr replay_events = 100'000;
constexpr std::size_t replay_page = 4096;

std::vector<result> replay_pg(const options& opts) {
  server s;
  auto uri = fresh_schema(s.uri, "bench_replay");
  auto journal = open_journal(uri);
  const std::string id = "bench|replayed";
  write_replay_events(*journal, id, replay_events, payload_size);
  raw_conn raw{uri};
  raw.exec("VACUUM ANALYZE events");
  // The events of one id, as the backend reads them, in one statement.
  auto select_all = [&] {
    const char* p[] = {id.c_str()};
    auto r = raw.check(
      PQexecParams(raw.c,
                   "SELECT e.seq, e.manifest, e.version, e.payload, e.tags, e.writer, "
                   "e.timestamp_ms, e.ordering FROM events e WHERE e.pid = (SELECT id FROM "
                   "persistence_ids WHERE name = $1) ORDER BY e.seq",
                   1, nullptr, p, nullptr, nullptr, 1),
      "select");
    std::uint64_t n = static_cast<std::uint64_t>(PQntuples(r));
    std::size_t bytes = 0;
    for (int row = 0; row < PQntuples(r); ++row)
      bytes += static_cast<std::size_t>(PQgetlength(r, row, 3));
    PQclear(r);
    if (n != replay_events || bytes != replay_events * payload_size)
      die("raw replay read the wrong rows");
    return n;
  };
  auto troupe_pass = [&] { return paged_replay(*journal, id, replay_page, replay_events, payload_size); };
  troupe_pass();  // warm the server's buffers
  select_all();
  // Alternate passes, so that both see the same machine.
  double troupe_busy = 0, raw_busy = 0;
  std::uint64_t troupe_n = 0, raw_n = 0;
  for (auto start = now_seconds(); now_seconds() - start < 2 * opts.seconds;) {
    auto t0 = now_seconds();
    troupe_n += troupe_pass();
    auto t1 = now_seconds();
    raw_n += select_all();
    raw_busy += now_seconds() - t1;
    troupe_busy += t1 - t0;
  }
  journal.reset();
  raw.exec("DROP SCHEMA bench_replay CASCADE");
  result r;
  r.bench = "replay_pg";
  r.unit = "events/s";
  r.troupe = static_cast<double>(troupe_n) / troupe_busy;
  r.baseline = static_cast<double>(raw_n) / raw_busy;
  r.extra["events"] = replay_events;
  r.extra["page_size"] = replay_page;
  r.extra["payload_bytes"] = payload_size;
  return {r};
}

} // namespace

TROUPE_BENCHMARK("persist_pg",
                 "10k ids interleaved, 100 B events, group commit on PostgreSQL vs raw libpq",
                 persist_pg);
TROUPE_BENCHMARK("replay_pg",
                 "100k events of one id from PostgreSQL: paged read_events vs one raw SELECT",
                 replay_pg);

} // namespace troupe::bench
