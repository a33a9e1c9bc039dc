// The SQLite journal's incremental key merge (schema version 4).
//
// A write stores its events at the end of the append-only `events` table and their
// (pid, seq) -> ordering keys in `recent_keys`, a small table whose pages stay in
// the cache; inserting a batch's keys into the large `event_keys` directly would
// dirty one of its leaves per id written (docs/persistence-storage.md has the
// measurements). Each write transaction that stores events then moves the keys of
// one range of persistence id rows from recent_keys into event_keys, with one
// INSERT ... SELECT in key order and one DELETE of the same range: the keys of
// many batches for those ids land on the same few event_keys leaves at once.
//
// The ranges go round the id rows 1..max(id) in `merge_ranges` steps (each
// ceil(max(id) / merge_ranges) rows wide; with fewer rows than steps, the later
// steps have none). Each writing connection keeps its own place in the round, in
// memory: storing it in the file would dirty one more page
// per commit, which a one-event commit pays in fsync time. A key therefore stays
// in recent_keys for at most merge_ranges + 1 event-writing transactions of the
// connection that follows (while max(id) does not grow; a transaction that rolls
// back still moves the place on): with one writing process, recent_keys holds at
// most the keys of that many batches, and each batch moves about one
// merge_ranges-th of it. With several processes writing the file, each one's
// transactions go round all ranges, so the bound holds for each of them.
//
// Everything runs inside the batch's write transaction, under SQLite's write lock:
// it commits or rolls back with the batch, and another process's keys are merged
// like this process's own.
#include "sqlite_journal_impl.hpp"

#include <fmt/core.h>

namespace troupe::persistence {

using namespace sqlite;

namespace {

/// How many write transactions one round of merges over all ids takes. More
/// ranges: smaller merges, but a larger recent_keys (whose pages a batch dirties);
/// measured in docs/persistence-storage.md.
constexpr std::int64_t merge_ranges = 32;

constexpr const char* sql_top_id = "SELECT max(id) FROM persistence_ids";
constexpr const char* sql_merge_range =
  "INSERT INTO event_keys(pid, seq, ordering) SELECT pid, seq, ordering FROM recent_keys "
  "WHERE pid >= ?1 AND pid < ?2 ORDER BY pid, seq";
constexpr const char* sql_drop_merged_range =
  "DELETE FROM recent_keys WHERE pid >= ?1 AND pid < ?2";

} // namespace

expected<void> sqlite_journal::impl::merge_keys() {
  std::int64_t top = 0;
  {
    auto s = writer->prepare(sql_top_id);
    if (!s)
      return std::move(s).error();
    sq::use q{**s};
    if (auto rc = q->step(); rc != SQLITE_ROW)
      return writer->fail_from(rc, "cannot read the persistence id rows to merge");
    top = q->int64(0);
  }
  // Step k of the round covers the rows [1 + k * width, 1 + (k + 1) * width). With
  // fewer than merge_ranges rows the later steps are empty, so a journal of a few
  // entities does not move every commit's keys right away (a one-event commit would
  // dirty an event_keys page more).
  auto step = merge_next;
  merge_next = (merge_next + 1) % merge_ranges;
  auto width = std::max<std::int64_t>(1, (top + merge_ranges - 1) / merge_ranges);
  auto from = 1 + step * width;
  if (from > top)
    return {};
  auto to = std::min(top + 1, from + width);  // merge_ranges * width >= top
  for (auto sql : {sql_merge_range, sql_drop_merged_range}) {
    auto s = writer->prepare(sql);
    if (!s)
      return std::move(s).error();
    sq::use q{**s};
    q->bind(1, from);
    q->bind(2, to);
    if (auto rc = q->step(); rc != SQLITE_DONE)
      return writer->fail_from(
        rc, rc == SQLITE_CONSTRAINT_PRIMARYKEY
              ? fmt::format("cannot merge the keys of persistence id rows {}..{}: a key is "
                            "stored in both recent_keys and event_keys (the file was changed "
                            "outside troupe; `troupe journal verify` lists such keys)",
                            from, to - 1)
              : fmt::format("cannot merge the keys of persistence id rows {}..{}", from, to - 1));
  }
  return {};
}

} // namespace troupe::persistence
