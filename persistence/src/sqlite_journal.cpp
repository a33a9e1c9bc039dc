// The SQLite journal (sqlite_journal.hpp): opening, the lost-file check, the
// connections and id caches, and the read path. The write path is in
// sqlite_journal_write.cpp, snapshots in sqlite_snapshots.cpp; the state and the
// statements they share in sqlite_journal_impl.hpp.
#include "sqlite_journal_impl.hpp"

#include "troupe/persistence/json_text.hpp"

#include "sqlite_schema.hpp"

#include <fmt/core.h>

namespace troupe::persistence::sqlite {

namespace {

constexpr char tag_separator = '\x1f';  // tags cannot contain control characters

} // namespace

/// Joins tags with the separator into `out`; empty when there are none.
void join_tags(const std::vector<std::string>& tags, std::string& out) {
  out.clear();
  for (auto& t : tags) {
    if (!out.empty())
      out += tag_separator;
    out += t;
  }
}

void split_tags(std::string_view text, std::vector<std::string>& out) {
  while (!text.empty()) {
    auto end = text.find(tag_separator);
    out.emplace_back(text.substr(0, end));
    if (end == std::string_view::npos)
      break;
    text.remove_prefix(end + 1);
  }
}

/// An integer column in lo..hi, or nullopt (text, NULL, a blob or out of range).
std::optional<std::int64_t> int_in(const statement& s, int column, std::int64_t lo,
                                   std::int64_t hi) {
  if (sqlite3_column_type(s.handle(), column) != SQLITE_INTEGER)
    return std::nullopt;
  auto x = s.int64(column);
  if (x < lo || x > hi)
    return std::nullopt;
  return x;
}

/// "'<pid>' seq <s> (offset <o>)" for messages about a damaged row.
std::string row_name(const statement& s, std::string_view pid, int seq_col, int offset_col) {
  return fmt::format("'{}' seq {} (offset {})", escape_invalid_utf8(pid),
                     escape_invalid_utf8(s.text(seq_col)),
                     offset_col < 0 ? std::string{"-"} : std::string{s.text(offset_col)});
}

error damaged_row(const std::string& path, std::string what) {
  return error{errc::decode_failed,
               fmt::format("journal '{}': {}: the row is damaged (troupe never writes such a "
                           "row; `troupe journal verify` lists it)",
                           path, std::move(what))};
}

/// A fence row whose epoch (column 0) is not an integer in 0..max_fence_epoch.
error damaged_fence(const std::string& path, const std::string& key, const statement& s) {
  return damaged_row(path, fmt::format("fence '{}': epoch {} is not an integer in 0..{}",
                                       escape_invalid_utf8(key), escape_invalid_utf8(s.text(0)),
                                       max_fence_epoch));
}

/// Reads TROUPE_EVENT_COLUMNS starting at column 0 into `e` (whose persistence_id
/// is set). A value troupe never writes (a sequence nr or version that is not an
/// integer in range) is an error naming the row, never a silently cast number.
expected<void> row_to_event(const statement& s, event_record& e, const std::string& path) {
  auto seq = int_in(s, 0, 1, max_sequence_nr);
  if (!seq)
    return damaged_row(path, row_name(s, e.persistence_id, 0, 7) + ": the sequence nr is not "
                                                                   "an integer >= 1");
  auto version = int_in(s, 2, 1, UINT32_MAX);
  if (!version)
    return damaged_row(path, fmt::format("{}: version {} is not an integer in 1..{}",
                                         row_name(s, e.persistence_id, 0, 7),
                                         escape_invalid_utf8(s.text(2)), UINT32_MAX));
  e.seq = static_cast<sequence_nr>(*seq);
  e.manifest = s.text(1);
  e.version = static_cast<std::uint32_t>(*version);
  auto payload = s.blob(3);
  e.payload.assign(payload.begin(), payload.end());
  e.tags.clear();
  if (!s.is_null(4))
    split_tags(s.text(4), e.tags);
  e.writer = s.text(5);
  e.timestamp_ms = s.int64(6);
  e.offset = s.uint64(7);
  return {};
}

} // namespace troupe::persistence::sqlite

namespace troupe::persistence {

using namespace sqlite;

// -- sqlite_journal::impl: the lost-file check, connections, caches -----------------------

expected<void> sqlite_journal::impl::check_identity(sq::connection& c) {
  if (!identity)
    return {};
  bool lost = false;
  auto ok = identity->check(c, &lost);
  if (!ok && lost)
    return mark_lost(std::move(ok).error());
  return ok;
}

expected<sqlite_journal::impl::reader_lease> sqlite_journal::impl::reader() {
  if (auto ok = check_not_lost(); !ok)
    return std::move(ok).error();
  {
    std::lock_guard<std::mutex> guard{pool_mtx};
    if (!idle_readers.empty()) {
      reader_lease lease{this, std::move(idle_readers.back())};
      idle_readers.pop_back();
      return lease;
    }
  }
  auto c = sq::open_secondary(opts);
  if (!c)
    return std::move(c).error();
  // A new connection opens whatever the path names now.
  if (auto ok = check_identity(**c); !ok)
    return std::move(ok).error();
  return reader_lease{this, std::move(*c)};
}

error sqlite_journal::impl::read_only_error() const {
  return error{errc::journal_rejected,
               fmt::format("journal '{}' is open read-only", opts.path)};
}

expected<void> sqlite_journal::impl::begin_write() {
  if (auto ok = check_not_lost(); !ok)
    return ok;
  if (auto ok = run(sql_begin); !ok)
    return ok;
  return check_identity(*writer);
}

expected<void> sqlite_journal::impl::run(const char* sql) {
  auto s = writer->prepare(sql);
  if (!s)
    return std::move(s).error();
  sq::use q{**s};
  auto rc = q->step();
  if (rc != SQLITE_DONE && rc != SQLITE_ROW)
    return writer->fail_from(rc, sql);
  return {};
}

expected<sqlite_journal::impl::id_info*> sqlite_journal::impl::resolve_id(const std::string& name,
                                                                         bool create) {
  if (auto i = ids.find(name); i != ids.end())
    return &i->second;
  if (create) {
    auto add = writer->prepare(sql_add_id);
    if (!add)
      return std::move(add).error();
    sq::use q{**add};
    q->bind(1, std::string_view{name});
    if (auto rc = q->step(); rc != SQLITE_DONE)
      return writer->fail_from(rc, fmt::format("cannot record persistence id '{}'", name));
  }
  auto find = writer->prepare(sql_find_id);
  if (!find)
    return std::move(find).error();
  sq::use q{**find};
  q->bind(1, std::string_view{name});
  auto rc = q->step();
  if (rc == SQLITE_DONE)
    return static_cast<id_info*>(nullptr);
  if (rc != SQLITE_ROW)
    return writer->fail_from(rc, fmt::format("cannot look up persistence id '{}'", name));
  auto [i, _] = ids.emplace(name, id_info{q->int64(0), q->uint64(1)});
  provisional_ids.push_back(name);
  return &i->second;
}

expected<std::int64_t> sqlite_journal::impl::resolve_tag(const std::string& name) {
  if (auto i = tag_ids.find(name); i != tag_ids.end())
    return i->second;
  auto add = writer->prepare(sql_add_tag);
  if (!add)
    return std::move(add).error();
  {
    sq::use q{**add};
    q->bind(1, std::string_view{name});
    if (auto rc = q->step(); rc != SQLITE_DONE)
      return writer->fail_from(rc, fmt::format("cannot record tag '{}'", name));
  }
  auto find = writer->prepare(sql_find_tag);
  if (!find)
    return std::move(find).error();
  sq::use q{**find};
  q->bind(1, std::string_view{name});
  if (auto rc = q->step(); rc != SQLITE_ROW)
    return writer->fail_from(rc, fmt::format("cannot look up tag '{}'", name));
  auto id = q->int64(0);
  tag_ids.emplace(name, id);
  provisional_tags.push_back(name);
  return id;
}

void sqlite_journal::impl::forget_provisional() {
  for (auto& n : provisional_ids)
    ids.erase(n);
  for (auto& n : provisional_tags)
    tag_ids.erase(n);
  provisional_ids.clear();
  provisional_tags.clear();
}

void sqlite_journal::impl::keep_provisional() {
  provisional_ids.clear();
  provisional_tags.clear();
}

expected<sequence_nr> sqlite_journal::impl::highest_on(sq::connection& c, const std::string& name) {
  auto s = c.prepare(reads->highest_seq);
  if (!s)
    return std::move(s).error();
  sq::use q{**s};
  q->bind(1, std::string_view{name});
  auto rc = q->step();
  if (rc == SQLITE_DONE)
    return sequence_nr{0};
  if (rc != SQLITE_ROW)
    return c.fail_from(rc, fmt::format("cannot read the highest sequence nr of '{}'", name));
  if (!int_in(*q, 0, 0, max_sequence_nr))
    return damaged_row(c.path(), fmt::format("'{}': the highest sequence nr is {}, not an "
                                             "integer (a damaged seq or deleted_to value)",
                                             escape_invalid_utf8(name),
                                             escape_invalid_utf8(q->text(0))));
  return q->uint64(0);
}

// -- sqlite_journal ----------------------------------------------------------------------

expected<std::shared_ptr<sqlite_journal>> sqlite_journal::open(sqlite_options opts) {
  auto c = sq::open_primary(opts);
  if (!c)
    return std::move(c).error();
  std::optional<sq::journal_identity> identity;
  const key_reads* reads = &v4_reads;
  if (!opts.read_only) {
    auto id = sq::journal_identity::capture(**c);
    if (!id)
      return std::move(id).error();
    identity = std::move(*id);
  } else {
    // Read-only, an older file is read as it is (a writable open migrates it).
    auto version = sq::stored_schema_version(**c);
    if (!version)
      return std::move(version).error();
    if (*version < 4)
      reads = &v3_reads;
  }
  auto p = std::make_unique<impl>(std::move(opts), std::move(*c), std::move(identity), reads);
  return std::shared_ptr<sqlite_journal>{new sqlite_journal(std::move(p))};
}

std::int64_t sqlite_journal::journal_id() const noexcept {
  if (impl_->identity)
    return impl_->identity->id();
  std::lock_guard<std::mutex> guard{impl_->writer_mtx};
  auto id = sq::read_journal_id(*impl_->writer);
  return id && *id ? **id : 0;
}

void sqlite_journal::on_lost(std::function<void(const error&)> handler) {
  impl_->loss.set_handler(std::move(handler));
}

sqlite_journal::sqlite_journal(std::unique_ptr<impl> p) : impl_(std::move(p)) {
}

sqlite_journal::~sqlite_journal() = default;

const sqlite_options& sqlite_journal::options() const noexcept {
  return impl_->opts;
}

expected<std::vector<event_record>> sqlite_journal::read_events(const std::string& persistence_id,
                                                                sequence_nr from, sequence_nr to,
                                                                std::size_t max_events) {
  std::vector<event_record> result;
  if (to >= from)
    result.reserve(std::min<std::uint64_t>({max_events, to - from + 1, 4096}));
  if (auto ok = read_events_into(persistence_id, from, to, max_events, result); !ok)
    return std::move(ok).error();
  return result;
}

expected<void> sqlite_journal::read_events_into(const std::string& persistence_id,
                                                sequence_nr from, sequence_nr to,
                                                std::size_t max_events,
                                                std::vector<event_record>& out) {
  // Refills the records `out` already holds (no allocation for the buffers that
  // fit), appends beyond them, and drops the rest at the end.
  std::size_t n = 0;
  auto ok = impl_->query(
    impl_->reads->read_events,
    fmt::format("cannot read events of '{}' from seq {}", persistence_id, from),
    [&](sq::statement& s) {
      s.bind(1, std::string_view{persistence_id});
      s.bind(2, to_db(from));
      s.bind(3, to_db(to));
      s.bind(4, limit_of(max_events));
    },
    [&](sq::statement& s) {
      auto& e = n < out.size() ? out[n] : out.emplace_back();
      ++n;
      e.persistence_id = persistence_id;
      return row_to_event(s, e, impl_->opts.path);
    });
  if (!ok)
    return ok;
  out.resize(n);
  return {};
}

expected<sequence_nr> sqlite_journal::highest_sequence_nr(const std::string& persistence_id) {
  auto c = impl_->reader();
  if (!c)
    return std::move(c).error();
  return impl_->highest_on(*c->conn, persistence_id);
}

expected<std::vector<event_record>> sqlite_journal::events_by_tag(const std::string& tag,
                                                                  offset_type after,
                                                                  std::size_t max_events) {
  std::vector<event_record> result;
  auto ok = impl_->query(
    sql_events_by_tag, fmt::format("cannot read events tagged '{}' after offset {}", tag, after),
    [&](sq::statement& s) {
      s.bind(1, std::string_view{tag});
      s.bind(2, to_db(after));
      s.bind(3, limit_of(max_events));
    },
    [&](sq::statement& s) {
      auto& e = result.emplace_back();
      e.persistence_id = s.text(8);
      return row_to_event(s, e, impl_->opts.path);
    });
  if (!ok)
    return std::move(ok).error();
  return result;
}

expected<std::vector<std::string>> sqlite_journal::persistence_ids(const std::string& after,
                                                                   std::size_t max) {
  std::vector<std::string> result;
  auto ok = impl_->query(
    impl_->reads->persistence_ids, "cannot list persistence ids",
    [&](sq::statement& s) {
      s.bind(1, std::string_view{after});
      s.bind(2, limit_of(max));
    },
    [&](sq::statement& s) { result.emplace_back(s.text(0)); });
  if (!ok)
    return std::move(ok).error();
  return result;
}

expected<offset_type> sqlite_journal::highest_offset() {
  offset_type result = 0;
  auto ok = impl_->query(
    sql_get_offset, "cannot read the highest offset", [](sq::statement&) {},
    [&](sq::statement& s) { result = s.uint64(0); });
  if (!ok)
    return std::move(ok).error();
  return result;
}

expected<std::uint64_t> sqlite_journal::fence_epoch(const std::string& key) {
  std::uint64_t result = 0;
  auto ok = impl_->query(
    sql_get_fence, fmt::format("cannot read fence '{}'", key),
    [&](sq::statement& s) { s.bind(1, std::string_view{key}); },
    [&](sq::statement& s) -> expected<void> {
      auto epoch = int_in(s, 0, 0, static_cast<std::int64_t>(max_fence_epoch));
      if (!epoch)
        return damaged_fence(impl_->opts.path, key, s);
      result = static_cast<std::uint64_t>(*epoch);
      return {};
    });
  if (!ok)
    return std::move(ok).error();
  return result;
}

} // namespace troupe::persistence
