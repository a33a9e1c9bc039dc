// `troupe journal verify`: everything in a journal that recovery, queries or other
// readers would trip on, each problem named by its row. The checks here read the
// tables both stores share with SQL both accept; store_checks adds the rest.
#include "journal_verify.hpp"

#include <climits>
#include <tuple>

namespace troupe::tools {

namespace {

// Every event in (pid, seq) order with the seq and offset before it of the same
// id (a window, so one pass); CAST(... AS INTEGER) keeps the flag an integer.
constexpr const char* sql_event_rows =
  "SELECT p.name, e.seq, LAG(e.seq) OVER w, p.deleted_to, e.ordering, e.payload, e.pid, "
  "CAST(p.id IS NULL AS INTEGER), e.version, e.manifest, e.tags, e.writer, "
  "LAG(e.ordering) OVER w FROM events e LEFT JOIN persistence_ids p ON p.id = e.pid "
  "WINDOW w AS (PARTITION BY e.pid ORDER BY e.seq, e.ordering) ORDER BY e.pid, e.seq, e.ordering";

constexpr const char* sql_snapshot_rows =
  "SELECT p.name, s.seq, s.payload, s.pid, CAST(p.id IS NULL AS INTEGER), s.version, "
  "s.manifest FROM snapshots s LEFT JOIN persistence_ids p ON p.id = s.pid "
  "ORDER BY p.name, s.seq";

constexpr const char* sql_duplicate_snapshots =
  "SELECT p.name, s.seq, count(*) FROM snapshots s JOIN persistence_ids p ON p.id = s.pid "
  "GROUP BY p.name, s.seq HAVING count(*) > 1";

struct verifier {
  journal_source& s;
  verify_report& v;

  expected<void> ids() {
    return s.each(s.dialect().ids, [&](const journal_row& r) {
      auto name = r.shown(0);
      v.highest[name] = r.integer(2);
      v.check_text(r, 0, "persistence id", fmt::format("'{}'", name));
    });
  }

  /// One pass over the events in (pid, seq) order.
  expected<void> event_rows() {
    std::map<std::int64_t, std::tuple<std::int64_t, std::string, std::string>> orphans;
    auto ok = s.each(sql_event_rows, [&](const journal_row& r) {
      ++v.events;
      if (r.integer(7) != 0) {  // no persistence id row
        auto& [count, first, last] = orphans[r.integer(6)];
        if (count++ == 0)
          first = r.shown(1);
        last = r.shown(1);
        return;
      }
      event_row(r, fmt::format("'{}' seq {}", r.shown(0), r.shown(1)));
    });
    for (auto& [pid, o] : orphans) {
      auto& [count, first, last] = o;
      v.problem("orphaned events: {} event(s), seq {}..{}, belong to persistence id row {}, "
                "which is missing from persistence_ids: that entity recovers without them",
                count, first, last, pid);
    }
    return ok;
  }

  void event_row(const journal_row& r, const std::string& row) {
    auto offset = r.integer(4);
    if (!r.is_integer(1) || r.integer(1) < 1) {
      v.problem("damaged event: '{}' offset {}: seq {} is not an integer >= 1", r.shown(0),
                offset, r.shown(1));
      return;
    }
    auto seq = r.integer(1);
    // The seq after the previous one (or after the deleted prefix); stored values
    // may be anything, so no signed overflow at INT64_MAX.
    auto previous = r.integer(r.is_null(2) ? 3 : 2);
    auto expected_seq = previous == INT64_MAX ? INT64_MAX : previous + 1;
    if (seq > expected_seq)
      v.problem("gap: '{}' seq {}..{} missing (not deleted)", r.shown(0), expected_seq, seq - 1);
    // Possible only for rows written past troupe (a SQLite journal's keys, or
    // PostgreSQL's unique index, refuse a second one).
    if (!r.is_null(2) && r.is_integer(2) && previous == seq)
      v.problem("duplicate event: {} is stored more than once (offsets {} and {})", row,
                r.integer(12), offset);
    // An id's events must be in offset order too: recovery reads by seq, queries
    // and projections by offset.
    else if (!r.is_null(12) && r.integer(12) > offset)
      v.problem("offsets: {} has offset {}, below the offset {} of the seq before it", row,
                offset, r.integer(12));
    auto version = r.integer(8);
    if (!r.is_integer(8) || version < 1 || version > UINT32_MAX)
      v.problem("damaged event: {}: version {} is not an integer in 1..{}", row, r.shown(8),
                UINT32_MAX);
    if (r.text(9).empty())
      v.problem("damaged event: {}: the manifest is empty", row);
    v.check_text(r, 9, "manifest", row);
    v.check_text(r, 10, "tags", row);
    v.check_text(r, 11, "writer", row);
    v.check_payload(r.blob(5), "event", fmt::format("{} offset {}", row, offset));
  }

  expected<void> snapshot_rows() {
    auto ok = s.each(sql_snapshot_rows, [&](const journal_row& r) {
      ++v.snapshots;
      auto seq = r.shown(1);
      if (r.integer(4) != 0) {
        v.problem("orphaned snapshot: seq {} belongs to persistence id row {}, which is "
                  "missing from persistence_ids",
                  seq, r.integer(3));
        return;
      }
      auto name = r.shown(0);
      auto h = v.highest[name];
      if (!r.is_integer(1) || r.integer(1) < 1)
        v.problem("damaged snapshot: '{}': seq {} is not an integer >= 1", name, seq);
      else if (h == 0)
        v.problem("orphaned snapshot: '{}' seq {}: the id has no events", name, seq);
      else if (r.integer(1) > h)
        v.problem("orphaned snapshot: '{}' seq {} is above the highest seq {} (recovery refuses "
                  "it)",
                  name, seq, h);
      auto row = fmt::format("'{}' seq {}", name, seq);
      auto version = r.integer(5);
      if (!r.is_integer(5) || version < 1 || version > UINT32_MAX)
        v.problem("damaged snapshot: {}: version {} is not an integer in 1..{}", row, r.shown(5),
                  UINT32_MAX);
      v.check_text(r, 6, "snapshot manifest", row);
      v.check_payload(r.blob(2), "snapshot", row);
    });
    if (!ok)
      return ok;
    return s.each(sql_duplicate_snapshots, [&](const journal_row& r) {
      v.problem("duplicate snapshot: '{}' seq {} stored {} times", r.shown(0), r.shown(1),
                r.integer(2));
    });
  }

  expected<void> offsets() {
    auto sql = s.dialect().offsets_beyond_highest;
    if (sql == nullptr)
      return {};
    auto beyond = s.scalar(sql);
    if (!beyond)
      return std::move(beyond).error();
    if (*beyond > 0)
      v.problem("offsets: {} events have an offset above the recorded highest offset (new "
                "events could reuse offsets)",
                *beyond);
    return {};
  }
};

} // namespace

expected<int> verify_journal(journal_source& s, std::FILE* out) {
  verify_report report;
  if (auto ok = s.store_checks(report); !ok)
    return std::move(ok).error();
  verifier v{s, report};
  for (auto step : {&verifier::ids, &verifier::event_rows, &verifier::snapshot_rows,
                    &verifier::offsets})
    if (auto ok = (v.*step)(); !ok)
      return std::move(ok).error();
  for (auto& p : report.problems)
    std::fprintf(out, "%s\n", p.c_str());
  auto name = persistence::escape_invalid_utf8(s.name());
  if (!report.problems.empty()) {
    std::fprintf(out, "verify: %zu problem(s) in '%s'\n", report.problems.size(), name.c_str());
    return 1;
  }
  std::fprintf(out, "verify: ok (%lld events, %zu persistence ids, %lld snapshots)\n",
               static_cast<long long>(report.events), report.highest.size(),
               static_cast<long long>(report.snapshots));
  return 0;
}

} // namespace troupe::tools
