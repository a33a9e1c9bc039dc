// The SQLite journal's write path: one group-commit batch per transaction, stored in
// persistence id order, each write's fence checked in the transaction; offsets;
// delete_events_to; advance_fence. (sqlite_journal.cpp has the rest.)
#include "sqlite_journal_impl.hpp"

#include <fmt/core.h>

namespace troupe::persistence {

using namespace sqlite;

expected<int> sqlite_journal::impl::insert_event(sq::statement& ins, std::int64_t pid,
                                                 const std::string& name, const event_record& e,
                                                 offset_type offset, std::int64_t ts) {
  join_tags(e.tags, tags_text);
  int rc;
  {
    // Every parameter is bound below; the text/blob bindings point into `e`,
    // which outlives the statement's next reset.
    struct resetter {
      sq::statement& s;
      ~resetter() { s.reset_keep_bindings(); }
      sq::statement* operator->() { return &s; }
    } q{ins};
    q->bind(1, static_cast<std::int64_t>(offset));
    q->bind(2, pid);
    q->bind(3, to_db(e.seq));
    q->bind(4, std::string_view{e.manifest});
    q->bind(5, e.version);
    q->bind_blob(6, e.payload);
    if (tags_text.empty())
      q->bind_null(7);
    else
      q->bind(7, std::string_view{tags_text});
    q->bind(8, std::string_view{e.writer});
    q->bind(9, e.timestamp_ms != 0 ? e.timestamp_ms : ts);
    rc = q->step();
  }
  if (rc != SQLITE_DONE)
    return rc;
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
  return rc;
}

template <class What>
expected<write_result> sqlite_journal::impl::check_fence(const write_fence& f, What what) {
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
  if (stored && static_cast<std::uint64_t>(*stored) == f.epoch)
    return write_result{};
  auto s = writer->prepare(sql_raise_fence);
  if (!s)
    return std::move(s).error();
  sq::use q{**s};
  q->bind(1, std::string_view{f.key});
  q->bind(2, static_cast<std::int64_t>(f.epoch));
  if (auto rc = q->step(); rc != SQLITE_DONE)
    return writer->fail_from(rc, fmt::format("cannot raise fence '{}' to epoch {}", f.key,
                                             f.epoch));
  return write_result{};
}

expected<write_result> sqlite_journal::impl::store(const atomic_write& w, id_info* id,
                                                   offset_type& offset, std::int64_t ts) {
  auto first = w.events.front().seq;
  auto conflict = [&](sequence_nr seq) {
    return write_result{
      error{errc::sequence_conflict,
            fmt::format("journal '{}': '{}' seq {} already exists (another writer?)", opts.path,
                        w.persistence_id, seq)}};
  };
  auto ins = writer->prepare(sql_insert_event);
  if (!ins)
    return std::move(ins).error();
  // A failing INSERT undoes itself; a savepoint is only needed to undo the
  // earlier events of a multi-event write, or a fence raised for events that
  // then conflict.
  bool multi = w.events.size() > 1 || w.fence;
  if (multi)
    if (auto ok = run(sql_savepoint); !ok)
      return std::move(ok).error();
  auto undo = [&]() -> expected<void> {
    if (!multi)
      return {};
    if (auto ok = run(sql_rollback_to); !ok)
      return ok;
    return run(sql_release);
  };
  if (w.fence) {
    auto fenced = check_fence(*w.fence, [&] {
      return fmt::format("the write of '{}' seq {}..{}", w.persistence_id, first,
                         w.events.back().seq);
    });
    if (!fenced || !*fenced) {
      if (auto ok = undo(); !ok)
        return std::move(ok).error();
      return fenced;
    }
  }
  if (first <= id->deleted_to) {
    if (auto ok = undo(); !ok)
      return std::move(ok).error();
    return conflict(first);
  }
  auto start = offset;
  for (auto& e : w.events) {
    auto rc = insert_event(**ins, id->id, w.persistence_id, e, offset + 1, ts);
    if (!rc)
      return std::move(rc).error();
    if (*rc == SQLITE_DONE) {
      ++offset;
      continue;
    }
    if (!is_conflict(*rc))
      return writer->fail_from(*rc, fmt::format("cannot store '{}' seq {}", w.persistence_id,
                                                e.seq));
    offset = start;
    if (auto ok = undo(); !ok)
      return std::move(ok).error();
    return conflict(e.seq);
  }
  if (multi)
    if (auto ok = run(sql_release); !ok)
      return std::move(ok).error();
  return write_result{};
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

expected<void> sqlite_journal::impl::write_offset(offset_type offset) {
  auto s = writer->prepare(sql_set_offset);
  if (!s)
    return std::move(s).error();
  sq::use q{**s};
  q->bind(1, static_cast<std::int64_t>(offset));
  if (auto rc = q->step(); rc != SQLITE_DONE)
    return writer->fail_from(rc, "cannot record the highest offset");
  return {};
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
  if (auto ok = plan_batch(batch, results); !ok)
    return ok;
  auto next = *offset;
  auto ts = now_ms();
  for (auto& p : plan) {
    auto r = store(batch[p.index], p.id, next, ts);
    if (!r)
      return std::move(r).error();
    results[p.index] = std::move(*r);
  }
  if (next != *offset)
    if (auto ok = write_offset(next); !ok)
      return ok;
  return run(sql_commit);
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
  for (auto [sql, value] : {std::pair{sql_delete_events, to}, std::pair{sql_set_deleted_to, deleted_to}}) {
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
    auto r = check_fence(write_fence{key, epoch}, [] { return std::string{"advance_fence"}; });
    if (!r)
      return std::move(r).error();
    if (!*r)
      return std::move(*r).error();
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
