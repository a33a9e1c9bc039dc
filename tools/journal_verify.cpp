// `troupe journal verify`: everything in a journal that recovery, queries or other
// readers would trip on, each problem named by its row.
#include "journal_db.hpp"

#include <climits>
#include <map>
#include <set>

namespace troupe::tools {

namespace {

using persistence::escape_invalid_utf8;
using persistence::is_valid_utf8;

struct verifier {
  journal_db& d;
  std::vector<std::string> problems;
  std::int64_t events = 0;
  std::int64_t snapshots = 0;
  std::map<std::string, std::int64_t> highest;  // by escaped name

  template <class... Ts>
  void problem(fmt::format_string<Ts...> f, Ts&&... xs) {
    problems.push_back(fmt::format(f, std::forward<Ts>(xs)...));
  }

  /// Text columns other readers expect as UTF-8 (JSON, CBOR text, other languages).
  void check_text(sqlite3_stmt* s, int column, std::string_view what, const std::string& row) {
    if (sqlite3_column_type(s, column) == SQLITE_TEXT
        && !is_valid_utf8(journal_db::column_text(s, column)))
      problem("invalid UTF-8: {} {} is not valid UTF-8: '{}'", row, what,
              journal_db::shown(s, column));
  }

  /// The payload is CBOR, and its strings are UTF-8.
  void check_payload(byte_span payload, std::string_view kind, const std::string& row) {
    auto doc = codec_registry::cbor_to_json(payload);
    if (!doc)
      problem("undecodable {}: {}: payload is not CBOR ({})", kind, row,
              journal_db::hex(payload, 8));
    else if (persistence::has_invalid_utf8(*doc))
      problem("invalid UTF-8: {} {}: the payload holds a string that is not valid UTF-8 "
              "(shown with \\xNN escapes by `troupe journal events`)",
              kind, row);
  }

  expected<void> integrity() {
    return d.each("PRAGMA quick_check", [&](sqlite3_stmt* s) {
      auto r = journal_db::column_text(s, 0);
      if (r != "ok")
        problems.push_back("integrity: " + r);
    });
  }

  expected<void> meta() {
    return d.each(
      "SELECT (SELECT typeof(value) FROM journal_meta WHERE key = 'highest_offset'), "
      "(SELECT typeof(value) FROM journal_meta WHERE key = 'journal_id'), "
      "(SELECT max(version) FROM schema_version)",
      [&](sqlite3_stmt* s) {
        if (journal_db::column_text(s, 0) != "integer")
          problem("metadata: journal_meta 'highest_offset' is missing or not an integer");
        if (sqlite3_column_int64(s, 2) >= 2 && journal_db::column_text(s, 1) != "integer")
          problem("metadata: journal_meta 'journal_id' is missing or not an integer");
      });
  }

  expected<void> ids() {
    return d.each(sql_ids, [&](sqlite3_stmt* s) {
      auto name = journal_db::shown(s, 0);
      highest[name] = sqlite3_column_int64(s, 2);
      check_text(s, 0, "persistence id", fmt::format("'{}'", name));
    });
  }

  /// One pass over the events in (pid, seq) order.
  expected<void> event_rows() {
    std::map<std::int64_t, std::tuple<std::int64_t, std::string, std::string>> orphans;
    auto ok = d.each(
      "SELECT p.name, e.seq, LAG(e.seq) OVER (PARTITION BY e.pid ORDER BY e.seq), "
      "p.deleted_to, e.ordering, e.payload, e.pid, p.id IS NULL, e.version, e.manifest, e.tags, "
      "e.writer FROM events e LEFT JOIN persistence_ids p ON p.id = e.pid ORDER BY e.pid, e.seq",
      [&](sqlite3_stmt* s) {
        ++events;
        if (sqlite3_column_int64(s, 7) != 0) {  // no persistence id row
          auto& [count, first, last] = orphans[sqlite3_column_int64(s, 6)];
          if (count++ == 0)
            first = journal_db::shown(s, 1);
          last = journal_db::shown(s, 1);
          return;
        }
        auto row = fmt::format("'{}' seq {}", journal_db::shown(s, 0), journal_db::shown(s, 1));
        event_row(s, row);
      });
    for (auto& [pid, o] : orphans) {
      auto& [count, first, last] = o;
      problem("orphaned events: {} event(s), seq {}..{}, belong to persistence id row {}, "
              "which is missing from persistence_ids: that entity recovers without them",
              count, first, last, pid);
    }
    return ok;
  }

  void event_row(sqlite3_stmt* s, const std::string& row) {
    auto offset = sqlite3_column_int64(s, 4);
    if (!journal_db::is_integer(s, 1) || sqlite3_column_int64(s, 1) < 1) {
      problem("damaged event: '{}' offset {}: seq {} is not an integer >= 1",
              journal_db::shown(s, 0), offset, journal_db::shown(s, 1));
      return;
    }
    auto seq = sqlite3_column_int64(s, 1);
    // The seq after the previous one (or after the deleted prefix); stored values
    // may be anything, so no signed overflow at INT64_MAX.
    auto previous = sqlite3_column_int64(s, sqlite3_column_type(s, 2) == SQLITE_NULL ? 3 : 2);
    auto expected_seq = previous == INT64_MAX ? INT64_MAX : previous + 1;
    if (seq > expected_seq)
      problem("gap: '{}' seq {}..{} missing (not deleted)", journal_db::shown(s, 0),
              expected_seq, seq - 1);
    auto version = sqlite3_column_int64(s, 8);
    if (!journal_db::is_integer(s, 8) || version < 1 || version > UINT32_MAX)
      problem("damaged event: {}: version {} is not an integer in 1..{}", row,
              journal_db::shown(s, 8), UINT32_MAX);
    if (journal_db::column_text(s, 9).empty())
      problem("damaged event: {}: the manifest is empty", row);
    check_text(s, 9, "manifest", row);
    check_text(s, 10, "tags", row);
    check_text(s, 11, "writer", row);
    check_payload(journal_db::column_blob(s, 5), "event",
                  fmt::format("{} offset {}", row, offset));
  }

  expected<void> snapshot_rows() {
    auto ok = d.each(
      "SELECT p.name, s.seq, s.payload, s.pid, p.id IS NULL, s.version, s.manifest "
      "FROM snapshots s LEFT JOIN persistence_ids p ON p.id = s.pid ORDER BY p.name, s.seq",
      [&](sqlite3_stmt* s) {
        ++snapshots;
        auto seq = journal_db::shown(s, 1);
        if (sqlite3_column_int64(s, 4) != 0) {
          problem("orphaned snapshot: seq {} belongs to persistence id row {}, which is "
                  "missing from persistence_ids",
                  seq, sqlite3_column_int64(s, 3));
          return;
        }
        auto name = journal_db::shown(s, 0);
        auto h = highest[name];
        if (!journal_db::is_integer(s, 1) || sqlite3_column_int64(s, 1) < 1)
          problem("damaged snapshot: '{}': seq {} is not an integer >= 1", name, seq);
        else if (h == 0)
          problem("orphaned snapshot: '{}' seq {}: the id has no events", name, seq);
        else if (sqlite3_column_int64(s, 1) > h)
          problem("orphaned snapshot: '{}' seq {} is above the highest seq {} (recovery refuses "
                  "it)",
                  name, seq, h);
        auto row = fmt::format("'{}' seq {}", name, seq);
        auto version = sqlite3_column_int64(s, 5);
        if (!journal_db::is_integer(s, 5) || version < 1 || version > UINT32_MAX)
          problem("damaged snapshot: {}: version {} is not an integer in 1..{}", row,
                  journal_db::shown(s, 5), UINT32_MAX);
        check_text(s, 6, "snapshot manifest", row);
        check_payload(journal_db::column_blob(s, 2), "snapshot", row);
      });
    if (!ok)
      return ok;
    return d.each("SELECT p.name, s.seq, count(*) FROM snapshots s JOIN persistence_ids p ON "
                  "p.id = s.pid GROUP BY s.pid, s.seq HAVING count(*) > 1",
                  [&](sqlite3_stmt* s) {
                    problem("duplicate snapshot: '{}' seq {} stored {} times",
                            journal_db::shown(s, 0), journal_db::shown(s, 1),
                            sqlite3_column_int64(s, 2));
                  });
  }

  expected<void> offsets_and_tags() {
    auto beyond = d.scalar("SELECT count(*) FROM events WHERE ordering > "
                           "(SELECT value FROM journal_meta WHERE key = 'highest_offset')");
    if (!beyond)
      return std::move(beyond).error();
    if (*beyond > 0)
      problem("offsets: {} events have an offset above the recorded highest offset (new events "
              "could reuse offsets)",
              *beyond);
    return d.each(
      "SELECT t.tag, count(*), g.id IS NULL FROM event_tags t LEFT JOIN tags g ON g.id = t.tag "
      "WHERE g.id IS NULL OR NOT EXISTS (SELECT 1 FROM events e WHERE e.ordering = t.ordering) "
      "GROUP BY t.tag",
      [&](sqlite3_stmt* s) {
        problem("orphaned tag rows: {} event_tags row(s) of tag row {} point to {}",
                sqlite3_column_int64(s, 1), sqlite3_column_int64(s, 0),
                sqlite3_column_int64(s, 2) != 0 ? "a missing tag" : "missing events");
      });
  }
};

} // namespace

expected<int> verify_journal(journal_db& d, std::FILE* out) {
  verifier v{d, {}, 0, 0, {}};
  for (auto step : {&verifier::integrity, &verifier::meta, &verifier::ids, &verifier::event_rows,
                    &verifier::snapshot_rows, &verifier::offsets_and_tags})
    if (auto ok = (v.*step)(); !ok)
      return std::move(ok).error();
  for (auto& p : v.problems)
    std::fprintf(out, "%s\n", p.c_str());
  auto path = escape_invalid_utf8(d.path());
  if (!v.problems.empty()) {
    std::fprintf(out, "verify: %zu problem(s) in '%s'\n", v.problems.size(), path.c_str());
    return 1;
  }
  std::fprintf(out, "verify: ok (%lld events, %zu persistence ids, %lld snapshots)\n",
               static_cast<long long>(v.events), v.highest.size(),
               static_cast<long long>(v.snapshots));
  return 0;
}

} // namespace troupe::tools
