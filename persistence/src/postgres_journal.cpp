// The PostgreSQL journal: opening, the read pool, the read path and snapshots.
// The write path is in postgres_write.cpp, the schema in postgres_schema.cpp.
#include "postgres_impl.hpp"

#include "troupe/persistence/json_text.hpp"

#include <fmt/core.h>

#include <algorithm>
#include <climits>

namespace troupe::persistence {

namespace {

// Event columns in the order row_to_event reads them.
#define TROUPE_PG_EVENT_COLUMNS \
  "e.seq, e.manifest, e.version, e.payload, e.tags, e.writer, e.timestamp_ms, e.ordering"

constexpr const char* sql_read_events =
  "SELECT " TROUPE_PG_EVENT_COLUMNS " FROM events e "
  "WHERE e.pid = (SELECT id FROM persistence_ids WHERE name = $1) "
  "AND e.seq >= $2 AND e.seq <= $3 ORDER BY e.seq LIMIT $4";
constexpr const char* sql_events_by_tag =
  "SELECT " TROUPE_PG_EVENT_COLUMNS ", p.name FROM event_tags t "
  "JOIN events e ON e.ordering = t.ordering JOIN persistence_ids p ON p.id = e.pid "
  "WHERE t.tag = $1 AND t.ordering > $2 ORDER BY t.ordering LIMIT $3";
constexpr const char* sql_highest_seq =
  "SELECT greatest(coalesce((SELECT max(seq) FROM events WHERE pid = p.id), 0), p.deleted_to) "
  "FROM persistence_ids p WHERE p.name = $1";
constexpr const char* sql_persistence_ids =
  "SELECT p.name FROM persistence_ids p WHERE p.name > $1 "
  "AND (p.deleted_to > 0 OR EXISTS (SELECT 1 FROM events e WHERE e.pid = p.id)) "
  "ORDER BY p.name LIMIT $2";
constexpr const char* sql_highest_offset =
  "SELECT value FROM journal_meta WHERE key = 'highest_offset'";
constexpr const char* sql_fence_epoch = "SELECT epoch FROM fences WHERE key = $1";
// The id row may be created by a concurrent writer between the INSERT's check and
// the SELECT (both see the statement's snapshot); save() retries once then.
constexpr const char* sql_save_snapshot =
  "WITH ins AS (INSERT INTO persistence_ids(name) VALUES($1) ON CONFLICT (name) DO NOTHING "
  "             RETURNING id), "
  "pid AS (SELECT id FROM ins UNION ALL SELECT id FROM persistence_ids WHERE name = $1) "
  "INSERT INTO snapshots(pid, seq, timestamp_ms, manifest, version, payload) "
  "SELECT id, $2, $3, $4, $5, $6 FROM pid "
  "ON CONFLICT (pid, seq) DO UPDATE SET timestamp_ms = excluded.timestamp_ms, "
  "manifest = excluded.manifest, version = excluded.version, payload = excluded.payload";
#define TROUPE_PG_SNAPSHOT_WHERE \
  "pid = (SELECT id FROM persistence_ids WHERE name = $1) " \
  "AND seq >= $2 AND seq <= $3 AND timestamp_ms >= $4 AND timestamp_ms <= $5"
constexpr const char* sql_load_snapshot =
  "SELECT seq, timestamp_ms, manifest, version, payload FROM snapshots WHERE "
  TROUPE_PG_SNAPSHOT_WHERE " ORDER BY seq DESC LIMIT 1";
constexpr const char* sql_delete_snapshots =
  "DELETE FROM snapshots WHERE " TROUPE_PG_SNAPSHOT_WHERE;

error damaged_row(const std::string& server, std::string what) {
  return error{errc::decode_failed,
               fmt::format("postgres journal {}: {}: the row is damaged (troupe never writes such "
                           "a row)",
                           server, std::move(what))};
}

/// Reads TROUPE_PG_EVENT_COLUMNS of `row` into `e` (whose persistence_id is set).
expected<void> row_to_event(const pg::result& r, int row, event_record& e,
                            const std::string& server) {
  auto seq = r.int8(row, 0);
  auto version = r.int8(row, 2);
  if (seq < 1 || version < 1 || version > UINT32_MAX)
    return damaged_row(server, fmt::format("'{}' seq {} (offset {}): version {}",
                                           e.persistence_id, seq, r.int8(row, 7), version));
  e.seq = static_cast<sequence_nr>(seq);
  e.manifest = r.text(row, 1);
  e.version = static_cast<std::uint32_t>(version);
  auto payload = r.bytes(row, 3);
  e.payload.assign(payload.begin(), payload.end());
  if (!r.is_null(row, 4))
    pg::split_tags(r.text(row, 4), e.tags);
  e.writer = r.text(row, 5);
  e.timestamp_ms = r.int8(row, 6);
  e.offset = static_cast<offset_type>(r.int8(row, 7));
  return {};
}

pg::params criteria_params(const std::string& id, const snapshot_criteria& c) {
  pg::params p;
  p.text(id).int8(pg::to_db(c.min_seq)).int8(pg::to_db(c.max_seq)).int8(c.min_timestamp_ms)
    .int8(c.max_timestamp_ms);
  return p;
}

/// The options of the journal's connections (postgres_options' limits included).
pg::connect_options connect_options_of(const postgres_options& o, std::string application_name) {
  auto ms = [](std::chrono::milliseconds d) {
    return static_cast<int>(std::clamp<std::int64_t>(d.count(), 0, INT_MAX));
  };
  pg::connect_options c{o.uri, std::move(application_name), o.connect_timeout_s};
  c.lock_timeout_ms = ms(o.lock_timeout);
  c.statement_timeout_ms = ms(o.statement_timeout);
  c.idle_in_transaction_timeout_ms = ms(o.idle_in_transaction_timeout);
  c.read_only = o.read_only;
  return c;
}

} // namespace

// -- impl: the pool --------------------------------------------------------

postgres_journal::impl::impl(postgres_options o, std::unique_ptr<pg::connection> w,
                             pg::schema_info i)
  : opts(std::move(o)), server(w->server()), info(std::move(i)), writer(std::move(w)) {
  reader_opts = connect_options_of(opts, "troupe-journal-reader");
}

std::chrono::milliseconds postgres_journal::impl::pool_wait() const {
  auto statement = opts.statement_timeout.count() > 0 ? opts.statement_timeout
                                                      : std::chrono::milliseconds{60000};
  return statement + std::chrono::seconds{opts.connect_timeout_s} + std::chrono::seconds{5};
}

postgres_journal::impl::lease::~lease() {
  if (!conn)
    return;
  {
    std::lock_guard<std::mutex> guard{owner->pool_mtx};
    owner->idle.push_back(std::move(conn));
  }
  owner->pool_cv.notify_one();
}

expected<postgres_journal::impl::lease> postgres_journal::impl::reader() {
  if (auto ok = check_not_lost(); !ok)
    return std::move(ok).error();
  std::unique_ptr<pg::connection> c;
  {
    std::unique_lock<std::mutex> guard{pool_mtx};
    if (!pool_cv.wait_for(guard, pool_wait(),
                          [&] { return !idle.empty() || opened < opts.pool_size; }))
      return error{errc::journal_failure,
                   fmt::format("postgres journal {}: all {} read connections stayed busy for {} "
                               "ms (persistence.journal.postgres.pool-size)",
                               server, opts.pool_size, pool_wait().count())};
    if (!idle.empty()) {
      c = std::move(idle.back());
      idle.pop_back();
    } else {
      ++opened;
    }
  }
  if (!c) {
    auto fresh = pg::connection::open(reader_opts);
    if (!fresh) {
      {
        std::lock_guard<std::mutex> guard{pool_mtx};
        --opened;
      }
      pool_cv.notify_one();
      return error{errc::journal_failure, fresh.error().message()};
    }
    c = std::move(*fresh);
  }
  lease l{this, std::move(c)};
  if (l.conn->broken())
    if (auto ok = l.conn->reconnect(); !ok)
      return error{errc::journal_failure, ok.error().message()};
  return l;
}

error postgres_journal::impl::read_only_error() const {
  return error{errc::journal_rejected,
               fmt::format("postgres journal {} is open read-only", server)};
}

// -- postgres_journal ----------------------------------------------------------------------

bool is_postgres_uri(std::string_view text) noexcept {
  return text.starts_with("postgresql://") || text.starts_with("postgres://");
}

expected<std::shared_ptr<postgres_journal>> postgres_journal::open(postgres_options opts) {
  if (opts.pool_size < 1 || opts.pool_size > 64)
    return error{errc::invalid_config,
                 fmt::format("postgres journal: pool size must be 1..64 (got {})", opts.pool_size)};
  auto c = pg::connection::open(connect_options_of(opts, "troupe-journal-writer"));
  if (!c)
    return std::move(c).error();
  auto info = pg::prepare_schema(**c, opts.read_only);
  if (!info)
    return std::move(info).error();
  auto p = std::make_unique<impl>(std::move(opts), std::move(*c), std::move(*info));
  return std::shared_ptr<postgres_journal>{new postgres_journal(std::move(p))};
}

postgres_journal::postgres_journal(std::unique_ptr<impl> p) : impl_(std::move(p)) {
}

postgres_journal::~postgres_journal() = default;

std::int64_t postgres_journal::journal_id() const noexcept {
  return impl_->info.journal_id;
}

const std::string& postgres_journal::synchronous_commit() const noexcept {
  return impl_->info.synchronous_commit;
}

const std::string& postgres_journal::server() const noexcept {
  return impl_->server;
}

void postgres_journal::on_lost(std::function<void(const error&)> handler) {
  impl_->loss.set_handler(std::move(handler));
}

std::vector<write_result> postgres_journal::write(std::span<const atomic_write> batch) {
  return impl_->write(batch);
}

expected<void> postgres_journal::advance_fence(const std::string& key, std::uint64_t epoch) {
  return impl_->advance_fence(key, epoch);
}

expected<void> postgres_journal::delete_events_to(const std::string& persistence_id,
                                                  sequence_nr to) {
  return impl_->delete_events_to(persistence_id, to);
}

expected<std::uint64_t> postgres_journal::fence_epoch(const std::string& key) {
  return impl_->with_reader([&](pg::connection& c) -> expected<std::uint64_t> {
    auto r = c.exec(sql_fence_epoch, pg::params{}.text(key),
                    fmt::format("cannot read fence '{}'", key));
    if (!r)
      return std::move(r).error();
    return r->rows() == 0 ? 0 : static_cast<std::uint64_t>(r->int8(0, 0));
  });
}

expected<std::vector<event_record>> postgres_journal::read_events(const std::string& persistence_id,
                                                                  sequence_nr from, sequence_nr to,
                                                                  std::size_t max_events) {
  return impl_->with_reader([&](pg::connection& c) -> expected<std::vector<event_record>> {
    auto r = c.exec(sql_read_events,
                    pg::params{}.text(persistence_id).int8(pg::to_db(from)).int8(pg::to_db(to))
                      .int8(pg::limit_of(max_events)),
                    fmt::format("cannot read events of '{}' from seq {}", persistence_id, from));
    if (!r)
      return std::move(r).error();
    std::vector<event_record> result(static_cast<std::size_t>(r->rows()));
    for (int row = 0; row < r->rows(); ++row) {
      auto& e = result[static_cast<std::size_t>(row)];
      e.persistence_id = persistence_id;
      if (auto ok = row_to_event(*r, row, e, impl_->server); !ok)
        return std::move(ok).error();
    }
    return result;
  });
}

expected<sequence_nr> postgres_journal::highest_sequence_nr(const std::string& persistence_id) {
  return impl_->with_reader([&](pg::connection& c) -> expected<sequence_nr> {
    auto r = c.exec(sql_highest_seq, pg::params{}.text(persistence_id),
                    fmt::format("cannot read the highest sequence nr of '{}'", persistence_id));
    if (!r)
      return std::move(r).error();
    return r->rows() == 0 ? 0 : static_cast<sequence_nr>(r->int8(0, 0));
  });
}

expected<std::vector<event_record>> postgres_journal::events_by_tag(const std::string& tag,
                                                                    offset_type after,
                                                                    std::size_t max_events) {
  return impl_->with_reader([&](pg::connection& c) -> expected<std::vector<event_record>> {
    auto r = c.exec(sql_events_by_tag,
                    pg::params{}.text(tag).int8(pg::to_db(after)).int8(pg::limit_of(max_events)),
                    fmt::format("cannot read events tagged '{}' after offset {}", tag, after));
    if (!r)
      return std::move(r).error();
    std::vector<event_record> result(static_cast<std::size_t>(r->rows()));
    for (int row = 0; row < r->rows(); ++row) {
      auto& e = result[static_cast<std::size_t>(row)];
      e.persistence_id = r->text(row, 8);
      if (auto ok = row_to_event(*r, row, e, impl_->server); !ok)
        return std::move(ok).error();
    }
    return result;
  });
}

expected<std::vector<std::string>> postgres_journal::persistence_ids(const std::string& after,
                                                                     std::size_t max) {
  return impl_->with_reader([&](pg::connection& c) -> expected<std::vector<std::string>> {
    auto r = c.exec(sql_persistence_ids, pg::params{}.text(after).int8(pg::limit_of(max)),
                    "cannot list persistence ids");
    if (!r)
      return std::move(r).error();
    std::vector<std::string> result;
    for (int row = 0; row < r->rows(); ++row)
      result.emplace_back(r->text(row, 0));
    return result;
  });
}

expected<offset_type> postgres_journal::highest_offset() {
  return impl_->with_reader([&](pg::connection& c) -> expected<offset_type> {
    auto r = c.exec(sql_highest_offset, {}, "cannot read the highest offset");
    if (!r)
      return std::move(r).error();
    return r->rows() == 0 ? 0 : static_cast<offset_type>(r->int8(0, 0));
  });
}

// -- snapshots -----------------------------------------------------------------------------

expected<void> postgres_journal::save(const snapshot_record& snapshot) {
  if (impl_->opts.read_only)
    return impl_->read_only_error();
  if (auto ok = validate_snapshot(snapshot); !ok)
    return ok;
  if (!pg::storable_text(snapshot.persistence_id) || !pg::storable_text(snapshot.manifest))
    return error{errc::invalid_argument,
                 fmt::format("snapshot store: the snapshot of '{}' seq {}: its persistence id or "
                             "manifest is not valid UTF-8 or holds a NUL byte, which PostgreSQL "
                             "text cannot store",
                             escape_invalid_utf8(snapshot.persistence_id), snapshot.seq)};
  return impl_->with_reader([&](pg::connection& c) -> expected<void> {
    auto p = pg::params{};
    p.text(snapshot.persistence_id).int8(pg::to_db(snapshot.seq))
      .int8(snapshot.timestamp_ms != 0 ? snapshot.timestamp_ms : now_ms())
      .text(snapshot.manifest).int8(snapshot.version).bytea(snapshot.payload);
    auto what = fmt::format("cannot save the snapshot of '{}' at seq {}", snapshot.persistence_id,
                            snapshot.seq);
    for (int attempt = 0; attempt < 2; ++attempt) {
      auto r = c.exec(sql_save_snapshot, p, what);
      if (!r)
        return std::move(r).error();
      if (r->affected() == 1)
        return {};
    }
    return error{errc::journal_failure, fmt::format("postgres journal {}: {}: the persistence id "
                                                    "row was not found after it was created",
                                                    impl_->server, what)};
  });
}

expected<std::optional<snapshot_record>> postgres_journal::load(const std::string& persistence_id,
                                                                const snapshot_criteria& criteria) {
  return impl_->with_reader([&](pg::connection& c) -> expected<std::optional<snapshot_record>> {
    auto r = c.exec(sql_load_snapshot, criteria_params(persistence_id, criteria),
                    fmt::format("cannot load the snapshot of '{}'", persistence_id));
    if (!r)
      return std::move(r).error();
    std::optional<snapshot_record> result;
    if (r->rows() == 0)
      return result;
    auto seq = r->int8(0, 0);
    auto version = r->int8(0, 3);
    if (seq < 1 || version < 1 || version > UINT32_MAX)
      return damaged_row(impl_->server, fmt::format("the snapshot of '{}' at seq {}: version {}",
                                                    persistence_id, seq, version));
    auto& s = result.emplace();
    s.persistence_id = persistence_id;
    s.seq = static_cast<sequence_nr>(seq);
    s.timestamp_ms = r->int8(0, 1);
    s.manifest = r->text(0, 2);
    s.version = static_cast<std::uint32_t>(version);
    auto payload = r->bytes(0, 4);
    s.payload.assign(payload.begin(), payload.end());
    return result;
  });
}

expected<void> postgres_journal::delete_matching(const std::string& persistence_id,
                                                 const snapshot_criteria& criteria) {
  if (impl_->opts.read_only)
    return impl_->read_only_error();
  return impl_->with_reader([&](pg::connection& c) -> expected<void> {
    auto r = c.exec(sql_delete_snapshots, criteria_params(persistence_id, criteria),
                    fmt::format("cannot delete snapshots of '{}'", persistence_id));
    if (!r)
      return std::move(r).error();
    return {};
  });
}

} // namespace troupe::persistence
