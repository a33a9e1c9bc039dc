// The PostgreSQL journal's write path: group-commit batches, deletes, fences.
//
// Every transaction that changes events or fences starts with begin_write: it
// locks the `highest_offset` row of journal_meta (SELECT ... FOR UPDATE) and keeps
// the lock until COMMIT. Only that row: locking two rows in one statement takes
// them in plan order, which can differ between sessions (a deadlock, 40P01). The
// delete counter and journal id are read by the next statement, which under READ
// COMMITTED (pinned: a server default of REPEATABLE READ would make the first
// statement's snapshot the transaction's) sees everything committed before the
// lock was granted; the counter only changes under the lock. That one lock is what makes offsets commit-ordered across
// processes: a transaction reads the highest offset only after the previous
// holder committed (PostgreSQL re-reads a row locked by a transaction that then
// commits), numbers its events after it, and commits before the next one can
// read it. A sequence (nextval) would hand out numbers at insert time, and two
// transactions could commit in the other order: a tag query could then read
// offset 11, move on, and never see offset 10 commit later. The same lock makes
// the checks below race-free, so no savepoint is needed: within it, no other
// writer can insert, delete or raise a fence between a check and the insert.
//
// Conflicts: a deleted sequence number (<= deleted_to) is checked against values
// cached per id and refreshed whenever the journal's delete counter moved; a
// stored one is left to the unique (pid, seq) index, the fast path. When the
// insert hits it (a writer broke the single-writer rule, rare), the transaction is
// rolled back and the batch runs again with a pre-check of every write against
// the stored events, so the conflicting write fails alone.
//
// Durability: with synchronous_commit=off a COMMIT is acknowledged, and its offset
// visible to readers, before its WAL is flushed; after a server crash the offset
// would be handed out again to other events. So a write transaction turns it on
// for itself when the session has it off (stronger settings are left alone).
//
// Identity: every write transaction reads the journal id; when the schema the URI
// reaches is no longer this journal, the journal is lost (on_lost), because the
// cached row ids (events.pid has no foreign key) would file events under another
// entity. A reconnect or an offset lower than seen before (a restore, a failover
// that lost commits) clears the caches.
#include "postgres_impl.hpp"

#include <fmt/core.h>

#include <charconv>
#include <map>
#include <set>

namespace troupe::persistence {

namespace {

// One round trip (a simple query of several statements, each with its own
// snapshot): see the top.
constexpr const char* sql_begin_write =
  "BEGIN ISOLATION LEVEL READ COMMITTED; "
  "SELECT set_config('synchronous_commit', 'on', true) "
  "WHERE current_setting('synchronous_commit') = 'off'; "
  "SELECT 1 FROM journal_meta WHERE key = 'highest_offset' FOR UPDATE; "
  "SELECT (SELECT value FROM journal_meta WHERE key = 'highest_offset'), "
  "coalesce((SELECT value FROM journal_meta WHERE key = 'deletes'), 0), "
  "(SELECT value FROM journal_meta WHERE key = 'journal_id')";
constexpr const char* sql_count_delete =
  "INSERT INTO journal_meta(key, value) VALUES('deletes', 1) "
  "ON CONFLICT (key) DO UPDATE SET value = journal_meta.value + 1";
constexpr const char* sql_deleted_to =
  "SELECT id, deleted_to FROM persistence_ids WHERE id = ANY($1::int8[])";
constexpr const char* sql_set_offset =
  "UPDATE journal_meta SET value = $1 WHERE key = 'highest_offset'";
// Ids created here roll back with the transaction; the caller caches only
// committed ones. (Inserted rows are not visible to the second SELECT of the same
// statement, so each name comes back once.)
constexpr const char* sql_resolve_ids =
  "WITH n AS (SELECT DISTINCT unnest($1::text[]) AS name), "
  "ins AS (INSERT INTO persistence_ids(name) SELECT name FROM n "
  "        ON CONFLICT (name) DO NOTHING RETURNING id, name) "
  "SELECT id, name FROM ins UNION ALL "
  "SELECT p.id, p.name FROM persistence_ids p JOIN n ON p.name = n.name";
// The writes (by index) whose range of sequence numbers is stored already.
constexpr const char* sql_conflicts =
  "SELECT w.i FROM unnest($1::int8[], $2::int8[], $3::int8[], $4::int8[]) AS w(i, pid, lo, hi) "
  "WHERE EXISTS (SELECT 1 FROM events e WHERE e.pid = w.pid AND e.seq BETWEEN w.lo AND w.hi)";
constexpr const char* sql_get_fences = "SELECT key, epoch FROM fences WHERE key = ANY($1::text[])";
constexpr const char* sql_raise_fences =
  "INSERT INTO fences(key, epoch) SELECT * FROM unnest($1::text[], $2::int8[]) "
  "ON CONFLICT (key) DO UPDATE SET epoch = excluded.epoch WHERE excluded.epoch > fences.epoch";
constexpr const char* sql_insert_events =
  "INSERT INTO events(ordering, pid, seq, manifest, version, payload, tags, writer, timestamp_ms) "
  "SELECT * FROM unnest($1::int8[], $2::int8[], $3::int8[], $4::text[], $5::int8[], "
  "$6::bytea[], $7::text[], $8::text[], $9::int8[])";
constexpr const char* sql_insert_tags =
  "INSERT INTO event_tags(tag, ordering) SELECT * FROM unnest($1::text[], $2::int8[])";
constexpr const char* sql_find_id = "SELECT id FROM persistence_ids WHERE name = $1";
constexpr const char* sql_delete_tags =
  "DELETE FROM event_tags t USING events e WHERE e.pid = $1 AND e.seq <= $2 "
  "AND e.tags IS NOT NULL AND t.ordering = e.ordering "
  "AND t.tag = ANY(string_to_array(e.tags, E'\\x1f'))";
constexpr const char* sql_delete_events = "DELETE FROM events WHERE pid = $1 AND seq <= $2";
constexpr const char* sql_set_deleted_to =
  "UPDATE persistence_ids SET deleted_to = greatest(deleted_to, least($2::int8, $3::int8)) "
  "WHERE id = $1";
constexpr const char* sql_highest_of =
  "SELECT greatest(coalesce((SELECT max(seq) FROM events WHERE pid = $1), 0), "
  "(SELECT deleted_to FROM persistence_ids WHERE id = $1))";

/// A text-format bigint (sql_begin_write's results); nullopt for NULL or garbage.
std::optional<std::int64_t> text_int8(const pg::result& r, int col) {
  if (r.rows() != 1 || r.is_null(0, col))
    return std::nullopt;
  auto t = r.text(0, col);
  std::int64_t x = 0;
  auto [end, ec] = std::from_chars(t.data(), t.data() + t.size(), x);
  if (ec != std::errc{} || end != t.data() + t.size())
    return std::nullopt;
  return x;
}

/// One insert statement's events (at most max_statement_bytes of them) and tags.
struct event_rows {
  pg::array_param ord{pg::int8_oid}, pid{pg::int8_oid}, seq{pg::int8_oid},
    manifest{pg::text_oid}, version{pg::int8_oid}, payload{pg::bytea_oid},
    tags{pg::text_oid}, writer{pg::text_oid}, ts{pg::int8_oid};
  pg::array_param tag_names{pg::text_oid}, tag_ords{pg::int8_oid};
  std::size_t bytes = 0;
};

/// The bytes an event adds to an insert statement (the arrays' length words and
/// fixed-size columns included, roughly).
std::size_t event_bytes(const event_record& e) {
  std::size_t n = 96 + e.payload.size() + e.manifest.size() + e.writer.size();
  for (auto& t : e.tags)
    n += 2 * t.size() + 24;
  return n;
}

/// What the batch decided for one write, in batch order.
struct plan {
  std::vector<std::int64_t> pid;      // per write, 0 when not a candidate
  std::vector<bool> store;            // per write: insert its events
  std::map<std::string, std::int64_t> raised;  // fence key -> epoch to store
};

std::string write_name(const atomic_write& w) {
  return fmt::format("the write of '{}' seq {}..{}", w.persistence_id, w.events.front().seq,
                     w.events.back().seq);
}

/// An event PostgreSQL cannot take in one value fails its own write, not the batch.
write_result check_size(const atomic_write& w, std::size_t max_event_bytes) {
  for (auto& e : w.events)
    if (auto bytes = event_bytes(e); bytes > max_event_bytes)
      return error{errc::journal_rejected,
                   fmt::format("journal: write of '{}' seq {} rejected: the event is {} bytes, "
                               "more than the PostgreSQL journal stores in one event ({})",
                               w.persistence_id, e.seq, bytes, max_event_bytes)};
  return {};
}

} // namespace

void postgres_journal::impl::forget_cached() {
  ids.clear();
  deleted_to.clear();
  deletes_seen = -1;
}

expected<pg::connection*> postgres_journal::impl::writer_connection() {
  if (writer->broken()) {
    // The server answering the new connection may not be the one that committed
    // what the caches hold (a failover, a restore): begin_write checks the journal
    // id, and the caches are filled again from this server.
    forget_cached();
    if (auto ok = writer->reconnect(); !ok)
      return error{errc::journal_failure, ok.error().message()};
  }
  return writer.get();
}

expected<std::pair<std::int64_t, std::int64_t>>
postgres_journal::impl::begin_write(pg::connection& c) {
  if (auto ok = check_not_lost(); !ok)
    return std::move(ok).error();
  auto r = c.query(sql_begin_write, "cannot lock the highest offset");
  if (!r)
    return std::move(r).error();
  auto offset = text_int8(*r, 0), deletes = text_int8(*r, 1), id = text_int8(*r, 2);
  if (id != info.journal_id) {
    c.rollback_if_open();
    auto now = id ? fmt::format("its journal id is {} now, {} when it was opened", *id,
                                info.journal_id)
                  : std::string{"its journal id is gone"};
    return mark_lost(error{
      errc::journal_failure,
      fmt::format("postgres journal {}: the schema no longer holds the journal this node opened "
                  "({}: it was dropped and created again, or the URI reaches another database "
                  "after a failover or restore); nothing more is written to or read from it: "
                  "restart the node to open the journal the URI names now",
                  server, now)});
  }
  if (!offset || !deletes)
    return error{errc::journal_failure,
                 fmt::format("postgres journal {}: journal_meta 'highest_offset' is missing or "
                             "damaged (troupe never writes such a row)",
                             server)};
  if (*offset < offset_seen)
    forget_cached();  // the database went back in time: ids may be reused
  offset_seen = *offset;
  return std::pair{*offset, *deletes};
}

expected<void> postgres_journal::impl::resolve_ids(
  pg::connection& c, std::span<const atomic_write> batch, const std::vector<write_result>& results,
  std::unordered_map<std::string, std::int64_t>& fresh) {
  // A name whose row a concurrent snapshot save committed after this statement's
  // snapshot is neither inserted nor seen by it: the next statement sees it.
  for (int round = 0;; ++round) {
    pg::array_param unknown{pg::text_oid};
    for (std::size_t i = 0; i < batch.size(); ++i)
      if (results[i] && !ids.contains(batch[i].persistence_id)
          && !fresh.contains(batch[i].persistence_id))
        unknown.add_text(batch[i].persistence_id);
    if (unknown.size() == 0)
      return {};
    if (round == 2)
      return error{errc::journal_failure,
                   fmt::format("postgres journal {}: cannot record persistence ids: {} of them "
                               "were neither created nor found",
                               server, unknown.size())};
    auto r = c.exec(sql_resolve_ids, pg::params{}.array(unknown), "cannot record persistence ids");
    if (!r)
      return std::move(r).error();
    for (int row = 0; row < r->rows(); ++row)
      fresh.emplace(std::string{r->text(row, 1)}, r->int8(row, 0));
  }
}

expected<void> postgres_journal::impl::write_attempt(
  std::span<const atomic_write> batch, std::vector<write_result>& results, bool check_stored,
  std::vector<std::pair<std::string, std::int64_t>>& new_ids, bool& committing) {
  auto conn = writer_connection();
  if (!conn)
    return std::move(conn).error();
  auto& c = **conn;
  c.clear_sqlstate();  // write() reads it after this attempt only
  auto offset = begin_write(c);
  if (!offset)
    return std::move(offset).error();
  plan p;
  p.pid.assign(batch.size(), 0);
  p.store.assign(batch.size(), false);
  // 1. Row ids of the batch's persistence ids (one statement for the new ones).
  std::unordered_map<std::string, std::int64_t> fresh;
  if (auto ok = resolve_ids(c, batch, results, fresh); !ok)
    return ok;
  // 2. Deleted (and, checking, stored) sequence numbers, the fences' epochs.
  if (offset->second != deletes_seen) {
    deleted_to.clear();
    deletes_seen = offset->second;
  }
  pg::array_param idx{pg::int8_oid}, pids{pg::int8_oid}, los{pg::int8_oid}, his{pg::int8_oid};
  pg::array_param keys{pg::text_oid}, uncached{pg::int8_oid};
  for (std::size_t i = 0; i < batch.size(); ++i) {
    if (!results[i])
      continue;
    auto& w = batch[i];
    auto known = ids.find(w.persistence_id);
    p.pid[i] = known != ids.end() ? known->second : fresh.find(w.persistence_id)->second;
    idx.add_int8(static_cast<std::int64_t>(i));
    pids.add_int8(p.pid[i]);
    los.add_int8(pg::to_db(w.events.front().seq));
    his.add_int8(pg::to_db(w.events.back().seq));
    if (w.fence)
      keys.add_text(w.fence->key);
    if (!deleted_to.contains(p.pid[i]))
      uncached.add_int8(p.pid[i]);
  }
  if (uncached.size() > 0) {
    auto r = c.exec(sql_deleted_to, pg::params{}.array(uncached),
                    "cannot read the batch's deleted sequence numbers");
    if (!r)
      return std::move(r).error();
    for (int row = 0; row < r->rows(); ++row)
      deleted_to[r->int8(row, 0)] = r->int8(row, 1);
  }
  std::set<std::size_t> taken;
  if (check_stored) {
    auto r = c.exec(sql_conflicts, pg::params{}.array(idx).array(pids).array(los).array(his),
                    "cannot check the batch for sequence conflicts");
    if (!r)
      return std::move(r).error();
    for (int row = 0; row < r->rows(); ++row)
      taken.insert(static_cast<std::size_t>(r->int8(row, 0)));
  }
  std::map<std::string, std::int64_t> epochs;
  if (keys.size() > 0) {
    auto f = c.exec(sql_get_fences, pg::params{}.array(keys), "cannot read the batch's fences");
    if (!f)
      return std::move(f).error();
    for (int row = 0; row < f->rows(); ++row)
      epochs.emplace(std::string{f->text(row, 0)}, f->int8(row, 1));
  }
  // 3. Decide in batch order: a fence raised by an earlier write counts for a
  //    later one, and an earlier write of the same id takes its numbers.
  // Per id, the span of the numbers its earlier writes in this batch took: a range
  // outside it is free (the usual case, one lookup); inside it, the earlier
  // writes are compared one by one.
  std::unordered_map<std::int64_t, std::pair<sequence_nr, sequence_nr>> claimed;
  claimed.reserve(batch.size());
  auto overlaps = [&](std::size_t i, sequence_nr lo, sequence_nr hi) {
    auto span = claimed.find(p.pid[i]);
    if (span == claimed.end() || hi < span->second.first || span->second.second < lo)
      return false;
    for (std::size_t j = 0; j < i; ++j)
      if (p.store[j] && p.pid[j] == p.pid[i] && lo <= batch[j].events.back().seq
          && batch[j].events.front().seq <= hi)
        return true;
    return false;
  };
  for (std::size_t i = 0; i < batch.size(); ++i) {
    if (!results[i])
      continue;
    auto& w = batch[i];
    auto lo = w.events.front().seq, hi = w.events.back().seq;
    if (w.fence) {
      auto stored = epochs.contains(w.fence->key) ? epochs[w.fence->key] : 0;
      if (static_cast<std::uint64_t>(stored) > w.fence->epoch) {
        results[i] = fenced_error("postgres journal", write_name(w), w.fence->key,
                                  static_cast<std::uint64_t>(stored), w.fence->epoch);
        continue;
      }
    }
    auto deleted = deleted_to.find(p.pid[i]);
    if (taken.contains(i) || overlaps(i, lo, hi)
        || (deleted != deleted_to.end() && pg::to_db(lo) <= deleted->second)) {
      results[i] = error{errc::sequence_conflict,
                         fmt::format("postgres journal: {} conflicts with stored events "
                                     "(another writer of '{}'?); nothing of it was stored",
                                     write_name(w), w.persistence_id)};
      continue;
    }
    auto [span, added] = claimed.try_emplace(p.pid[i], lo, hi);
    if (!added)
      span->second = {std::min(span->second.first, lo), std::max(span->second.second, hi)};
    p.store[i] = true;
    if (w.fence) {
      auto epoch = static_cast<std::int64_t>(w.fence->epoch);
      auto& e = epochs[w.fence->key];
      if (epoch > e) {
        e = epoch;
        p.raised[w.fence->key] = epoch;
      }
    }
  }
  // 4. Multi-row inserts of the stored events and their tags, one pair per
  //    max_statement_bytes of events (one statement for a usual batch).
  event_rows rows;
  std::string joined;
  std::size_t in_statement = 0, total = 0;
  auto flush = [&]() -> expected<void> {
    if (in_statement == 0)
      return {};
    auto ins = c.exec(sql_insert_events,
                      pg::params{}.array(rows.ord).array(rows.pid).array(rows.seq)
                        .array(rows.manifest).array(rows.version).array(rows.payload)
                        .array(rows.tags).array(rows.writer).array(rows.ts),
                      fmt::format("cannot insert the batch's {} events", in_statement));
    if (!ins)
      return std::move(ins).error();
    if (rows.tag_names.size() > 0)
      if (auto t = c.exec(sql_insert_tags, pg::params{}.array(rows.tag_names).array(rows.tag_ords),
                          "cannot insert the batch's tags");
          !t)
        return std::move(t).error();
    rows = event_rows{};
    in_statement = 0;
    return {};
  };
  auto next = offset->first;
  auto now = now_ms();
  for (std::size_t i = 0; i < batch.size(); ++i) {
    if (!p.store[i])
      continue;
    for (auto& e : batch[i].events) {
      auto bytes = event_bytes(e);
      if (in_statement > 0 && rows.bytes + bytes > opts.max_statement_bytes)
        if (auto ok = flush(); !ok)
          return ok;
      rows.bytes += bytes;
      ++in_statement, ++total, ++next;
      rows.ord.add_int8(next);
      rows.pid.add_int8(p.pid[i]);
      rows.seq.add_int8(pg::to_db(e.seq));
      rows.manifest.add_text(e.manifest);
      rows.version.add_int8(e.version);
      rows.payload.add_bytes(e.payload);
      pg::join_tags(e.tags, joined);
      rows.tags.add_text(joined);  // "" for none: read back as no tags
      rows.writer.add_text(e.writer);
      rows.ts.add_int8(e.timestamp_ms != 0 ? e.timestamp_ms : now);
      for (auto& t : e.tags) {
        rows.tag_names.add_text(t);
        rows.tag_ords.add_int8(next);
      }
    }
  }
  if (auto ok = flush(); !ok)
    return ok;
  if (total > 0)
    if (auto o = c.exec(sql_set_offset, pg::params{}.int8(next), "cannot store the offset"); !o)
      return std::move(o).error();
  if (!p.raised.empty()) {
    pg::array_param fk{pg::text_oid}, fe{pg::int8_oid};
    for (auto& [k, e] : p.raised) {
      fk.add_text(k);
      fe.add_int8(e);
    }
    if (auto f = c.exec(sql_raise_fences, pg::params{}.array(fk).array(fe),
                        "cannot raise the batch's fences");
        !f)
      return std::move(f).error();
  }
  for (auto& [name, id] : fresh)
    new_ids.emplace_back(name, id);
  committing = true;
  return c.commit();
}

std::vector<write_result> postgres_journal::impl::write(std::span<const atomic_write> batch) {
  std::vector<write_result> results;
  results.reserve(batch.size());
  bool any = false;
  for (auto& w : batch) {
    write_result r = opts.read_only ? write_result{read_only_error()} : validate_write(w);
    if (r)
      r = pg::check_text(w);
    if (r)
      r = check_size(w, opts.max_event_bytes);
    any = any || r.has_value();
    results.push_back(std::move(r));
  }
  if (!any)
    return results;
  std::lock_guard<std::mutex> guard{writer_mtx};
  std::vector<std::pair<std::string, std::int64_t>> new_ids;
  bool committing = false;
  auto initial = results;
  auto ok = write_attempt(batch, results, false, new_ids, committing);
  if (!ok && pg::is_unique_violation(writer->last_sqlstate()) && !committing) {
    // A stored sequence number: once more, with the pre-check (see the top).
    writer->rollback_if_open();
    results = std::move(initial);
    new_ids.clear();
    ok = write_attempt(batch, results, true, new_ids, committing);
  }
  if (!ok) {
    writer->rollback_if_open();
    auto lost = writer->broken();
    auto failure = error{
      errc::journal_failure,
      committing && lost
        ? fmt::format("{}; the connection was lost during COMMIT, so the outcome of this batch of "
                      "{} writes is unknown: all of it or none of it is stored",
                      ok.error().message(), batch.size())
        : fmt::format("{}; nothing of this batch of {} writes was stored", ok.error().message(),
                      batch.size())};
    for (auto& r : results)
      if (r || (r.error().code() != errc::journal_rejected))
        r = failure;
    return results;
  }
  for (auto& [name, id] : new_ids)
    ids.emplace(std::move(name), id);
  return results;
}

template <class F>
expected<void> postgres_journal::impl::in_write_transaction(F body) {
  std::lock_guard<std::mutex> guard{writer_mtx};
  auto ok = [&]() -> expected<void> {
    auto conn = writer_connection();
    if (!conn)
      return std::move(conn).error();
    if (auto begun = begin_write(**conn); !begun)
      return std::move(begun).error();
    return body(**conn);
  }();
  if (!ok)
    writer->rollback_if_open();
  return ok;
}

expected<void> postgres_journal::impl::delete_events_to(const std::string& name, sequence_nr to) {
  if (opts.read_only)
    return read_only_error();
  return in_write_transaction([&](pg::connection& c) -> expected<void> {
    auto what = fmt::format("cannot delete events of '{}' up to seq {}", name, to);
    auto id = c.exec(sql_find_id, pg::params{}.text(name), what);
    if (!id)
      return std::move(id).error();
    if (id->rows() == 0)
      return c.commit();
    auto pid = id->int8(0, 0);
    // deleted_to = max(deleted_to, min(to, highest)): computed before the delete.
    auto highest = c.exec(sql_highest_of, pg::params{}.int8(pid), what);
    if (!highest)
      return std::move(highest).error();
    auto args = pg::params{}.int8(pid).int8(pg::to_db(to));
    for (auto sql : {sql_delete_tags, sql_delete_events})
      if (auto ok = c.exec(sql, args, what); !ok)
        return std::move(ok).error();
    auto set = pg::params{}.int8(pid).int8(pg::to_db(to)).int8(highest->int8(0, 0));
    if (auto ok = c.exec(sql_set_deleted_to, set, what); !ok)
      return std::move(ok).error();
    if (auto ok = c.exec(sql_count_delete, {}, what); !ok)
      return std::move(ok).error();
    return c.commit();
  });
}

expected<void> postgres_journal::impl::advance_fence(const std::string& key, std::uint64_t epoch) {
  if (opts.read_only)
    return read_only_error();
  if (auto ok = validate_fence(key, epoch); !ok)
    return ok;
  return in_write_transaction([&](pg::connection& c) -> expected<void> {
    pg::array_param k{pg::text_oid}, e{pg::int8_oid};
    k.add_text(key);
    e.add_int8(static_cast<std::int64_t>(epoch));
    auto stored = c.exec(sql_get_fences, pg::params{}.array(k), "cannot read the fence");
    if (!stored)
      return std::move(stored).error();
    auto current = stored->rows() == 1 ? static_cast<std::uint64_t>(stored->int8(0, 1)) : 0;
    if (current > epoch)
      return fenced_error("postgres journal", "advance_fence", key, current, epoch);
    if (current < epoch || stored->rows() == 0)
      if (auto ok = c.exec(sql_raise_fences, pg::params{}.array(k).array(e),
                           fmt::format("cannot advance fence '{}' to epoch {}", key, epoch));
          !ok)
        return std::move(ok).error();
    return c.commit();
  });
}

} // namespace troupe::persistence
