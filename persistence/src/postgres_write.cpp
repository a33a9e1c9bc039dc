// The PostgreSQL journal's write path: group-commit batches, deletes, fences.
//
// Every transaction that changes events or fences starts with begin_write: it
// locks the `highest_offset` row of journal_meta (SELECT ... FOR UPDATE) and keeps
// the lock until COMMIT. That one lock is what makes offsets commit-ordered across
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
#include "postgres_impl.hpp"

#include <fmt/core.h>

#include <map>
#include <set>

namespace troupe::persistence {

namespace {

constexpr const char* sql_lock_offset =
  "SELECT key, value FROM journal_meta WHERE key IN ('highest_offset', 'deletes') FOR UPDATE";
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

} // namespace

expected<pg::connection*> postgres_journal::impl::writer_connection() {
  if (writer->broken())
    if (auto ok = writer->reconnect(); !ok)
      return error{errc::journal_failure, ok.error().message()};
  return writer.get();
}

expected<std::pair<std::int64_t, std::int64_t>>
postgres_journal::impl::begin_write(pg::connection& c) {
  if (auto ok = c.run("BEGIN"); !ok)
    return std::move(ok).error();
  auto r = c.exec(sql_lock_offset, {}, "cannot lock the highest offset");
  if (!r)
    return std::move(r).error();
  std::pair<std::int64_t, std::int64_t> result{0, 0};
  for (int row = 0; row < r->rows(); ++row)
    (r->text(row, 0) == "deletes" ? result.second : result.first) = r->int8(row, 1);
  return result;
}

expected<void> postgres_journal::impl::write_attempt(
  std::span<const atomic_write> batch, std::vector<write_result>& results, bool check_stored,
  std::vector<std::pair<std::string, std::int64_t>>& new_ids, bool& committing) {
  auto conn = writer_connection();
  if (!conn)
    return std::move(conn).error();
  auto& c = **conn;
  auto offset = begin_write(c);
  if (!offset)
    return std::move(offset).error();
  plan p;
  p.pid.assign(batch.size(), 0);
  p.store.assign(batch.size(), false);
  // 1. Row ids of the batch's persistence ids (one statement for the new ones).
  pg::array_param unknown{pg::text_oid};
  for (std::size_t i = 0; i < batch.size(); ++i)
    if (results[i] && !ids.contains(batch[i].persistence_id))
      unknown.add_text(batch[i].persistence_id);
  std::unordered_map<std::string, std::int64_t> fresh;
  if (unknown.size() > 0) {
    auto r = c.exec(sql_resolve_ids, pg::params{}.array(unknown), "cannot record persistence ids");
    if (!r)
      return std::move(r).error();
    for (int row = 0; row < r->rows(); ++row)
      fresh.emplace(std::string{r->text(row, 1)}, r->int8(row, 0));
  }
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
    p.pid[i] = known != ids.end() ? known->second : fresh.at(w.persistence_id);
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
  // 4. One multi-row insert for every stored event, one for their tags.
  pg::array_param ord{pg::int8_oid}, pid{pg::int8_oid}, seq{pg::int8_oid},
    manifest{pg::text_oid}, version{pg::int8_oid}, payload{pg::bytea_oid},
    tags{pg::text_oid}, writer_ids{pg::text_oid}, ts{pg::int8_oid};
  pg::array_param tag_names{pg::text_oid}, tag_ords{pg::int8_oid};
  std::string joined;
  auto next = offset->first;
  auto now = now_ms();
  for (std::size_t i = 0; i < batch.size(); ++i) {
    if (!p.store[i])
      continue;
    for (auto& e : batch[i].events) {
      ++next;
      ord.add_int8(next);
      pid.add_int8(p.pid[i]);
      seq.add_int8(pg::to_db(e.seq));
      manifest.add_text(e.manifest);
      version.add_int8(e.version);
      payload.add_bytes(e.payload);
      pg::join_tags(e.tags, joined);
      tags.add_text(joined);  // "" for none: read back as no tags
      writer_ids.add_text(e.writer);
      ts.add_int8(e.timestamp_ms != 0 ? e.timestamp_ms : now);
      for (auto& t : e.tags) {
        tag_names.add_text(t);
        tag_ords.add_int8(next);
      }
    }
  }
  if (ord.size() > 0) {
    auto ins = c.exec(sql_insert_events,
                      pg::params{}.array(ord).array(pid).array(seq).array(manifest)
                        .array(version).array(payload).array(tags).array(writer_ids).array(ts),
                      fmt::format("cannot insert the batch's {} events", ord.size()));
    if (!ins)
      return std::move(ins).error();
    if (tag_names.size() > 0)
      if (auto t = c.exec(sql_insert_tags, pg::params{}.array(tag_names).array(tag_ords),
                          "cannot insert the batch's tags");
          !t)
        return std::move(t).error();
    if (auto o = c.exec(sql_set_offset, pg::params{}.int8(next), "cannot store the offset"); !o)
      return std::move(o).error();
  }
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
  return c.run("COMMIT");
}

std::vector<write_result> postgres_journal::impl::write(std::span<const atomic_write> batch) {
  std::vector<write_result> results;
  results.reserve(batch.size());
  bool any = false;
  for (auto& w : batch) {
    write_result r = opts.read_only ? write_result{read_only_error()} : validate_write(w);
    if (r)
      r = pg::check_text(w);
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

expected<void> postgres_journal::impl::delete_events_to(const std::string& name, sequence_nr to) {
  if (opts.read_only)
    return read_only_error();
  std::lock_guard<std::mutex> guard{writer_mtx};
  auto body = [&]() -> expected<void> {
    auto conn = writer_connection();
    if (!conn)
      return std::move(conn).error();
    auto& c = **conn;
    if (auto ok = begin_write(c); !ok)
      return std::move(ok).error();
    auto what = fmt::format("cannot delete events of '{}' up to seq {}", name, to);
    auto id = c.exec(sql_find_id, pg::params{}.text(name), what);
    if (!id)
      return std::move(id).error();
    if (id->rows() == 0)
      return c.run("COMMIT");
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
    return c.run("COMMIT");
  };
  auto ok = body();
  if (!ok)
    writer->rollback_if_open();
  return ok;
}

expected<void> postgres_journal::impl::advance_fence(const std::string& key, std::uint64_t epoch) {
  if (opts.read_only)
    return read_only_error();
  if (auto ok = validate_fence(key, epoch); !ok)
    return ok;
  std::lock_guard<std::mutex> guard{writer_mtx};
  auto body = [&]() -> expected<void> {
    auto conn = writer_connection();
    if (!conn)
      return std::move(conn).error();
    auto& c = **conn;
    if (auto ok = begin_write(c); !ok)
      return std::move(ok).error();
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
    return c.run("COMMIT");
  };
  auto ok = body();
  if (!ok)
    writer->rollback_if_open();
  return ok;
}

} // namespace troupe::persistence
