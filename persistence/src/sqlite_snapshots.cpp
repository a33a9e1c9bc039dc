// The SQLite snapshot store: snapshots live in the journal's file (table
// `snapshots`, keyed by the persistence id's row and the seq), written through the
// writer connection, read through the reader pool.
#include "sqlite_journal_impl.hpp"

#include "troupe/persistence/json_text.hpp"

#include <fmt/core.h>

namespace troupe::persistence {

using namespace sqlite;

namespace {

void bind_criteria(statement& s, const std::string& id, const snapshot_criteria& c) {
  s.bind(1, std::string_view{id});
  s.bind(2, to_db(c.min_seq));
  s.bind(3, to_db(c.max_seq));
  s.bind(4, c.min_timestamp_ms);
  s.bind(5, c.max_timestamp_ms);
}

} // namespace

// -- snapshots ---------------------------------------------------------------------------

expected<void> sqlite_journal::save(const snapshot_record& snapshot) {
  if (impl_->opts.read_only)
    return impl_->read_only_error();
  if (auto ok = validate_snapshot(snapshot); !ok)
    return ok;
  auto& p = *impl_;
  return p.in_write_transaction([&]() -> expected<void> {
    auto id = p.resolve_id(snapshot.persistence_id, true);
    if (!id)
      return std::move(id).error();
    auto s = p.writer->prepare(sql_save_snapshot);
    if (!s)
      return std::move(s).error();
    {
      sq::use q{**s};
      q->bind(1, (*id)->id);
      q->bind(2, to_db(snapshot.seq));
      q->bind(3, snapshot.timestamp_ms != 0 ? snapshot.timestamp_ms : now_ms());
      q->bind(4, std::string_view{snapshot.manifest});
      q->bind(5, snapshot.version);
      q->bind_blob(6, snapshot.payload);
      if (auto rc = q->step(); rc != SQLITE_DONE)
        return p.writer->fail_from(rc, fmt::format("cannot save the snapshot of '{}' at seq {}",
                                                   snapshot.persistence_id, snapshot.seq));
    }
    return p.run(sql_commit);
  });
}

expected<std::optional<snapshot_record>> sqlite_journal::load(const std::string& persistence_id,
                                                              const snapshot_criteria& criteria) {
  std::optional<snapshot_record> result;
  auto ok = impl_->query(
    sql_load_snapshot, fmt::format("cannot load the snapshot of '{}'", persistence_id),
    [&](sq::statement& s) { bind_criteria(s, persistence_id, criteria); },
    [&](sq::statement& s) -> expected<void> {
      auto seq = int_in(s, 0, 1, max_sequence_nr);
      auto version = int_in(s, 3, 1, UINT32_MAX);
      if (!seq || !version)
        return damaged_row(impl_->opts.path,
                           fmt::format("the snapshot of {}: the sequence nr or version ({}) is "
                                       "not an integer in range",
                                       row_name(s, persistence_id, 0, -1),
                                       escape_invalid_utf8(s.text(3))));
      auto& r = result.emplace();
      r.persistence_id = persistence_id;
      r.seq = static_cast<sequence_nr>(*seq);
      r.timestamp_ms = s.int64(1);
      r.manifest = s.text(2);
      r.version = static_cast<std::uint32_t>(*version);
      auto payload = s.blob(4);
      r.payload.assign(payload.begin(), payload.end());
      return {};
    });
  if (!ok)
    return std::move(ok).error();
  return result;
}

expected<void> sqlite_journal::delete_matching(const std::string& persistence_id,
                                               const snapshot_criteria& criteria) {
  if (impl_->opts.read_only)
    return impl_->read_only_error();
  auto& p = *impl_;
  return p.in_write_transaction([&]() -> expected<void> {
    auto s = p.writer->prepare(sql_delete_snapshots);
    if (!s)
      return std::move(s).error();
    {
      sq::use q{**s};
      bind_criteria(*q, persistence_id, criteria);
      if (auto rc = q->step(); rc != SQLITE_DONE)
        return p.writer->fail_from(rc,
                                   fmt::format("cannot delete snapshots of '{}'", persistence_id));
    }
    return p.run(sql_commit);
  });
}

} // namespace troupe::persistence
