// The SQLite journal's write path: one group-commit batch per transaction, stored in
// persistence id order, each write's fence and seqs checked in the transaction, its
// keys into recent_keys (merged by sqlite_merge.cpp); offsets; delete_events_to;
// advance_fence. (sqlite_journal.cpp has the rest.)
#include "sqlite_journal_impl.hpp"

#include <fmt/core.h>

namespace troupe::persistence {

using namespace sqlite;

const char* sqlite::sql_insert_events(std::size_t rows) {
  auto make = [](std::size_t n) {
    std::string sql = "INSERT INTO events(ordering, pid, seq, manifest, version, payload, tags, "
                      "writer, timestamp_ms) VALUES";
    for (std::size_t i = 0; i < n; ++i)
      sql += i == 0 ? "(?,?,?,?,?,?,?,?,?)" : ",(?,?,?,?,?,?,?,?,?)";
    return sql;
  };
  static const std::string one = make(1);
  static const std::string chunk = make(sqlite_journal::impl::events_per_insert);
  return rows == 1 ? one.c_str() : chunk.c_str();
}

namespace {

/// Binds `q`'s 9 parameters of one events row, from parameter `first` on. The
/// text/blob bindings point into the queued event, which outlives the step.
void bind_event(sq::statement& q, int first, const sqlite_journal::impl::queued_event& r) {
  auto& e = *r.e;
  q.bind(first, static_cast<std::int64_t>(r.offset));
  q.bind(first + 1, r.pid);
  q.bind(first + 2, to_db(e.seq));
  q.bind(first + 3, std::string_view{e.manifest});
  q.bind(first + 4, e.version);
  q.bind_blob(first + 5, e.payload);
  if (r.tags.empty())
    q.bind_null(first + 6);
  else
    q.bind(first + 6, std::string_view{r.tags});
  q.bind(first + 7, std::string_view{e.writer});
  q.bind(first + 8, r.timestamp_ms);
}

} // namespace

expected<void> sqlite_journal::impl::queue_event(std::int64_t pid, const std::string& name,
                                                 const event_record& e, offset_type offset,
                                                 std::int64_t ts) {
  auto& r = queued_events.emplace_back(
    queued_event{&name, &e, pid, offset, e.timestamp_ms != 0 ? e.timestamp_ms : ts, {}});
  join_tags(e.tags, r.tags);
  for (auto& tag : e.tags) {
    auto tag_id = resolve_tag(tag);
    if (!tag_id)
      return std::move(tag_id).error();
    auto s = writer->prepare(sql_insert_event_tag);
    if (!s)
      return std::move(s).error();
    sq::use q{**s};
    q->bind(1, *tag_id);
    q->bind(2, static_cast<std::int64_t>(offset));
    if (auto trc = q->step(); trc != SQLITE_DONE)
      return writer->fail_from(trc, fmt::format("cannot tag '{}' seq {}", name, e.seq));
  }
  return {};
}

expected<void> sqlite_journal::impl::insert_events() {
  // Every parameter is bound before each step, so a reset keeps the bindings.
  struct resetter {
    sq::statement& s;
    ~resetter() { s.reset_keep_bindings(); }
  };
  std::span<const queued_event> rows{queued_events};
  while (!rows.empty()) {
    auto n = rows.size() >= events_per_insert ? events_per_insert : std::size_t{1};
    auto s = writer->prepare(sql_insert_events(n));
    if (!s)
      return std::move(s).error();
    resetter guard{**s};
    for (std::size_t i = 0; i < n; ++i)
      bind_event(**s, static_cast<int>(1 + 9 * i), rows[i]);
    if (auto rc = (*s)->step(); rc != SQLITE_DONE)
      return writer->fail_from(
        rc, n == 1 ? fmt::format("cannot store '{}' seq {}", *rows[0].name, rows[0].e->seq)
                   : fmt::format("cannot store '{}' seq {} and the {} events after it",
                                 *rows[0].name, rows[0].e->seq, n - 1));
    rows = rows.subspan(n);
  }
  queued_events.clear();
  return {};
}

template <class What>
expected<write_result> sqlite_journal::impl::check_fence(const write_fence& f, What what,
                                                         bool& raise) {
  std::optional<std::int64_t> stored;
  {
    auto s = writer->prepare(sql_get_fence);
    if (!s)
      return std::move(s).error();
    sq::use q{**s};
    q->bind(1, std::string_view{f.key});
    auto rc = q->step();
    if (rc == SQLITE_ROW) {
      stored = int_in(*q, 0, 0, static_cast<std::int64_t>(max_fence_epoch));
      if (!stored)
        return damaged_fence(opts.path, f.key, *q);
    } else if (rc != SQLITE_DONE) {
      return writer->fail_from(rc, fmt::format("cannot read fence '{}'", f.key));
    }
  }
  if (stored && static_cast<std::uint64_t>(*stored) > f.epoch)
    return write_result{fenced_error(fmt::format("journal '{}'", opts.path), what(), f.key,
                                     static_cast<std::uint64_t>(*stored), f.epoch)};
  raise = !stored || static_cast<std::uint64_t>(*stored) < f.epoch;
  return write_result{};
}

expected<void> sqlite_journal::impl::raise_fence(const write_fence& f) {
  auto s = writer->prepare(sql_raise_fence);
  if (!s)
    return std::move(s).error();
  sq::use q{**s};
  q->bind(1, std::string_view{f.key});
  q->bind(2, static_cast<std::int64_t>(f.epoch));
  if (auto rc = q->step(); rc != SQLITE_DONE)
    return writer->fail_from(rc, fmt::format("cannot raise fence '{}' to epoch {}", f.key,
                                             f.epoch));
  return {};
}

expected<sequence_nr> sqlite_journal::impl::taken_seq(std::int64_t id, sequence_nr first,
                                                      sequence_nr last) {
  auto s = writer->prepare(sql_taken_seq);
  if (!s)
    return std::move(s).error();
  sq::use q{**s};
  q->bind(1, id);
  q->bind(2, to_db(first));
  q->bind(3, to_db(last));
  if (auto rc = q->step(); rc != SQLITE_ROW)
    return writer->fail_from(rc, fmt::format("cannot look up the stored seqs of persistence id "
                                             "row {}",
                                             id));
  sequence_nr taken = 0;
  for (int column : {0, 1})
    if (!q->is_null(column) && (taken == 0 || q->uint64(column) < taken))
      taken = q->uint64(column);
  return taken;
}

expected<sequence_nr> sqlite_journal::impl::check_seqs(id_info& id, sequence_nr first,
                                                       sequence_nr last) {
  if (id.keys_seen != key_view) {
    auto s = writer->prepare(sql_highest_key);
    if (!s)
      return std::move(s).error();
    sq::use q{**s};
    q->bind(1, id.id);
    if (auto rc = q->step(); rc != SQLITE_ROW)
      return writer->fail_from(rc, fmt::format("cannot look up the highest seq of persistence id "
                                               "row {}",
                                               id.id));
    id.highest_key = 0;
    for (int column : {0, 1}) {
      if (q->is_null(column))
        continue;
      // A damaged key (not an integer) leaves every write to the range lookup.
      auto seq = int_in(*q, column, 0, INT64_MAX);
      id.highest_key = std::max<sequence_nr>(id.highest_key, seq ? *seq : max_sequence_nr);
    }
    id.keys_seen = key_view;
  }
  if (first > id.highest_key)
    return sequence_nr{0};
  // This id's keys stored earlier in the batch must be in recent_keys for the
  // lookup. (The highest-key read above needs no such step: an id written earlier
  // in the batch was checked then, so its entry is current.)
  if (auto ok = store_queued(); !ok)
    return std::move(ok).error();
  return taken_seq(id.id, first, last);
}

expected<write_result> sqlite_journal::impl::store(const atomic_write& w, id_info* id,
                                                   offset_type& offset, std::int64_t ts) {
  auto first = w.events.front().seq;
  auto last = w.events.back().seq;
  auto conflict = [&](sequence_nr seq) {
    return write_result{
      error{errc::sequence_conflict,
            fmt::format("journal '{}': '{}' seq {} already exists (another writer?)", opts.path,
                        w.persistence_id, seq)}};
  };
  // The fence first: a fenced write is refused as fenced, whatever its seqs.
  bool raise = false;
  if (w.fence) {
    auto fenced = check_fence(
      *w.fence,
      [&] { return fmt::format("the write of '{}' seq {}..{}", w.persistence_id, first, last); },
      raise);
    if (!fenced || !*fenced)
      return fenced;
  }
  if (first <= id->deleted_to)
    return conflict(first);
  auto taken = check_seqs(*id, first, last);
  if (!taken)
    return std::move(taken).error();
  if (*taken != 0)
    return conflict(*taken);
  // Nothing refuses the write from here on: a failure below dooms the batch.
  if (raise)
    if (auto ok = raise_fence(*w.fence); !ok)
      return std::move(ok).error();
  for (auto& e : w.events) {
    if (auto ok = queue_event(id->id, w.persistence_id, e, offset + 1, ts); !ok)
      return std::move(ok).error();
    ++offset;
  }
  keys_to = offset;
  id->highest_key = std::max(id->highest_key, last);
  return write_result{};
}

expected<void> sqlite_journal::impl::store_queued() {
  if (auto ok = insert_events(); !ok)
    return ok;
  if (keys_to == keys_done)
    return {};
  auto s = writer->prepare(sql_insert_keys);
  if (!s)
    return std::move(s).error();
  sq::use q{**s};
  q->bind(1, static_cast<std::int64_t>(keys_done));
  q->bind(2, static_cast<std::int64_t>(keys_to));
  if (auto rc = q->step(); rc != SQLITE_DONE)
    return writer->fail_from(rc, fmt::format("cannot store the keys of the events at offsets "
                                             "{}..{}",
                                             keys_done + 1, keys_to));
  keys_done = keys_to;
  return {};
}

expected<offset_type> sqlite_journal::impl::read_offset() {
  auto s = writer->prepare(sql_get_offset);
  if (!s)
    return std::move(s).error();
  sq::use q{**s};
  if (auto rc = q->step(); rc != SQLITE_ROW)
    return writer->fail_from(rc, "cannot read the highest offset");
  return q->uint64(0);
}

expected<void> sqlite_journal::impl::plan_batch(std::span<const atomic_write> batch,
                                                const std::vector<write_result>& results) {
  plan.clear();
  bool fenced = false;
  for (std::size_t i = 0; i < batch.size(); ++i) {
    if (!results[i])
      continue;  // rejected by validation
    auto id = resolve_id(batch[i].persistence_id, true);
    if (!id)
      return std::move(id).error();
    plan.push_back(planned_write{*id, i});
    fenced = fenced || batch[i].fence.has_value();
  }
  if (!fenced)
    std::sort(plan.begin(), plan.end(), [](const planned_write& a, const planned_write& b) {
      return a.id->id != b.id->id ? a.id->id < b.id->id : a.index < b.index;
    });
  return {};
}

expected<void> sqlite_journal::impl::write_batch(std::span<const atomic_write> batch,
                                                 std::vector<write_result>& results) {
  auto offset = read_offset();
  if (!offset)
    return std::move(offset).error();
  if (committed_offset != *offset)
    ++key_view;  // another connection stored events (and keys) since our last commit
  if (auto ok = plan_batch(batch, results); !ok)
    return ok;
  auto next = *offset;
  keys_done = keys_to = next;
  queued_events.clear();
  auto ts = now_ms();
  for (auto& p : plan) {
    auto r = store(batch[p.index], p.id, next, ts);
    if (!r)
      return std::move(r).error();
    results[p.index] = std::move(*r);
  }
  if (next != *offset) {
    if (auto ok = store_queued(); !ok)
      return ok;
    if (auto ok = merge_keys(); !ok)
      return ok;
  }
  if (auto ok = run(sql_commit); !ok)
    return ok;
  committed_offset = next;
  return {};
}

std::vector<write_result> sqlite_journal::impl::write(std::span<const atomic_write> batch) {
  std::vector<write_result> results;
  results.reserve(batch.size());
  bool any = false;
  for (auto& w : batch) {
    results.push_back(opts.read_only ? write_result{read_only_error()} : validate_write(w));
    any = any || results.back().has_value();
  }
  if (!any)
    return results;
  if (auto ok = in_write_transaction([&] { return write_batch(batch, results); }); !ok) {
    auto failure = error{errc::journal_failure,
                         fmt::format("{}; nothing of this batch of {} writes was stored",
                                     ok.error().message(), batch.size())};
    for (auto& r : results)
      if (r || r.error().code() != errc::journal_rejected)
        r = failure;
    return results;
  }
  return results;
}

expected<void> sqlite_journal::impl::delete_events_to(const std::string& name, sequence_nr to) {
  if (opts.read_only)
    return read_only_error();
  return in_write_transaction([&] { return delete_in_transaction(name, to); });
}

expected<void> sqlite_journal::impl::delete_in_transaction(const std::string& name,
                                                           sequence_nr to) {
  auto id = resolve_id(name, false);
  if (!id)
    return std::move(id).error();
  if (*id == nullptr)
    return run(sql_commit);
  auto highest = highest_on(*writer, name);
  if (!highest)
    return std::move(highest).error();
  auto deleted_to = std::max((*id)->deleted_to, std::min(to, *highest));
  // Tag rows first, while the events still say which tags they carry.
  std::vector<std::pair<std::int64_t, std::string>> tagged;
  {
    auto s = writer->prepare(sql_tagged_to_delete);
    if (!s)
      return std::move(s).error();
    sq::use q{**s};
    q->bind(1, (*id)->id);
    q->bind(2, to_db(to));
    int rc;
    while ((rc = q->step()) == SQLITE_ROW)
      tagged.emplace_back(q->int64(0), std::string{q->text(1)});
    if (rc != SQLITE_DONE)
      return writer->fail_from(rc, fmt::format("cannot delete events of '{}'", name));
  }
  std::vector<std::string> names;
  for (auto& [ordering, text] : tagged) {
    names.clear();
    split_tags(text, names);
    for (auto& tag : names) {
      auto tag_id = resolve_tag(tag);
      if (!tag_id)
        return std::move(tag_id).error();
      auto s = writer->prepare(sql_delete_event_tag);
      if (!s)
        return std::move(s).error();
      sq::use q{**s};
      q->bind(1, *tag_id);
      q->bind(2, ordering);
      if (auto rc = q->step(); rc != SQLITE_DONE)
        return writer->fail_from(rc, fmt::format("cannot delete events of '{}'", name));
    }
  }
  if (auto ok = run(sql_keep_offset); !ok)
    return ok;
  // The events before their keys: the events are found through the keys.
  for (auto [sql, value] : {std::pair{sql_delete_events, to}, std::pair{sql_delete_merged_keys, to},
                            std::pair{sql_delete_recent_keys, to},
                            std::pair{sql_set_deleted_to, deleted_to}}) {
    auto s = writer->prepare(sql);
    if (!s)
      return std::move(s).error();
    sq::use q{**s};
    q->bind(1, (*id)->id);
    q->bind(2, to_db(value));
    if (auto rc = q->step(); rc != SQLITE_DONE)
      return writer->fail_from(rc, fmt::format("cannot delete events of '{}'", name));
  }
  if (auto ok = run(sql_commit); !ok)
    return ok;
  (*id)->deleted_to = deleted_to;
  return {};
}

expected<void> sqlite_journal::impl::advance_fence(const std::string& key, std::uint64_t epoch) {
  if (opts.read_only)
    return read_only_error();
  if (auto ok = validate_fence(key, epoch); !ok)
    return ok;
  return in_write_transaction([&]() -> expected<void> {
    write_fence f{key, epoch};
    bool raise = false;
    auto r = check_fence(f, [] { return std::string{"advance_fence"}; }, raise);
    if (!r)
      return std::move(r).error();
    if (!*r)
      return std::move(*r).error();
    if (raise)
      if (auto ok = raise_fence(f); !ok)
        return ok;
    return run(sql_commit);
  });
}

// -- sqlite_journal: the write members ----------------------------------------------------

std::vector<write_result> sqlite_journal::write(std::span<const atomic_write> batch) {
  return impl_->write(batch);
}

expected<void> sqlite_journal::delete_events_to(const std::string& persistence_id,
                                                sequence_nr to) {
  return impl_->delete_events_to(persistence_id, to);
}

expected<void> sqlite_journal::advance_fence(const std::string& key, std::uint64_t epoch) {
  return impl_->advance_fence(key, epoch);
}

} // namespace troupe::persistence
