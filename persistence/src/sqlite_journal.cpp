#include "troupe/persistence/sqlite_journal.hpp"

#include "troupe/persistence/json_text.hpp"

#include "journal_identity.hpp"
#include "sqlite_db.hpp"
#include "sqlite_schema.hpp"

#include <fmt/core.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstdint>
#include <mutex>
#include <optional>
#include <type_traits>
#include <unordered_map>

namespace troupe::persistence {

namespace sq = sqlite;

namespace {

constexpr char tag_separator = '\x1f';  // tags cannot contain control characters

// -- statements (static storage: the connection caches by address) ----------------------

constexpr const char* sql_begin = "BEGIN IMMEDIATE";
constexpr const char* sql_commit = "COMMIT";
constexpr const char* sql_savepoint = "SAVEPOINT w";
constexpr const char* sql_release = "RELEASE w";
constexpr const char* sql_rollback_to = "ROLLBACK TO w";
constexpr const char* sql_get_offset =
  "SELECT value FROM journal_meta WHERE key = 'highest_offset'";
constexpr const char* sql_set_offset =
  "UPDATE journal_meta SET value = ?1 WHERE key = 'highest_offset'";
constexpr const char* sql_add_id =
  "INSERT INTO persistence_ids(name) VALUES(?1) ON CONFLICT(name) DO NOTHING";
constexpr const char* sql_find_id = "SELECT id, deleted_to FROM persistence_ids WHERE name = ?1";
constexpr const char* sql_add_tag = "INSERT INTO tags(name) VALUES(?1) ON CONFLICT(name) DO NOTHING";
constexpr const char* sql_find_tag = "SELECT id FROM tags WHERE name = ?1";
constexpr const char* sql_insert_event =
  "INSERT INTO events(ordering, pid, seq, manifest, version, payload, tags, writer, timestamp_ms) "
  "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)";
constexpr const char* sql_insert_event_tag = "INSERT INTO event_tags(tag, ordering) VALUES(?1, ?2)";
constexpr const char* sql_get_fence = "SELECT epoch FROM fences WHERE key = ?1";
constexpr const char* sql_raise_fence =
  "INSERT INTO fences(key, epoch) VALUES(?1, ?2) "
  "ON CONFLICT(key) DO UPDATE SET epoch = excluded.epoch WHERE excluded.epoch > fences.epoch";

// Event columns in the order row_to_event reads them.
#define TROUPE_EVENT_COLUMNS \
  "e.seq, e.manifest, e.version, e.payload, e.tags, e.writer, e.timestamp_ms, e.ordering"

constexpr const char* sql_read_events =
  "SELECT " TROUPE_EVENT_COLUMNS " FROM events e "
  "WHERE e.pid = (SELECT id FROM persistence_ids WHERE name = ?1) "
  "AND e.seq >= ?2 AND e.seq <= ?3 ORDER BY e.seq LIMIT ?4";
constexpr const char* sql_events_by_tag =
  "SELECT " TROUPE_EVENT_COLUMNS ", p.name FROM event_tags t "
  "JOIN events e ON e.ordering = t.ordering JOIN persistence_ids p ON p.id = e.pid "
  "WHERE t.tag = (SELECT id FROM tags WHERE name = ?1) AND t.ordering > ?2 "
  "ORDER BY t.ordering LIMIT ?3";
constexpr const char* sql_highest_seq =
  "SELECT max(coalesce((SELECT max(seq) FROM events WHERE pid = p.id), 0), p.deleted_to) "
  "FROM persistence_ids p WHERE p.name = ?1";
constexpr const char* sql_persistence_ids =
  "SELECT p.name FROM persistence_ids p WHERE p.name > ?1 "
  "AND (p.deleted_to > 0 OR EXISTS (SELECT 1 FROM events e WHERE e.pid = p.id)) "
  "ORDER BY p.name LIMIT ?2";
constexpr const char* sql_tagged_to_delete =
  "SELECT ordering, tags FROM events WHERE pid = ?1 AND seq <= ?2 AND tags IS NOT NULL";
constexpr const char* sql_delete_event_tag = "DELETE FROM event_tags WHERE tag = ?1 AND ordering = ?2";
constexpr const char* sql_delete_events = "DELETE FROM events WHERE pid = ?1 AND seq <= ?2";
constexpr const char* sql_set_deleted_to = "UPDATE persistence_ids SET deleted_to = ?2 WHERE id = ?1";
constexpr const char* sql_save_snapshot =
  "INSERT OR REPLACE INTO snapshots(pid, seq, timestamp_ms, manifest, version, payload) "
  "VALUES(?1, ?2, ?3, ?4, ?5, ?6)";
constexpr const char* sql_load_snapshot =
  "SELECT seq, timestamp_ms, manifest, version, payload FROM snapshots "
  "WHERE pid = (SELECT id FROM persistence_ids WHERE name = ?1) "
  "AND seq >= ?2 AND seq <= ?3 AND timestamp_ms >= ?4 AND timestamp_ms <= ?5 "
  "ORDER BY seq DESC LIMIT 1";
constexpr const char* sql_delete_snapshots =
  "DELETE FROM snapshots WHERE pid = (SELECT id FROM persistence_ids WHERE name = ?1) "
  "AND seq >= ?2 AND seq <= ?3 AND timestamp_ms >= ?4 AND timestamp_ms <= ?5";

std::int64_t to_db(std::uint64_t x) {
  return static_cast<std::int64_t>(std::min<std::uint64_t>(x, max_sequence_nr));
}

std::int64_t limit_of(std::size_t n) {
  return static_cast<std::int64_t>(std::min<std::size_t>(n, INT64_MAX));
}

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
std::optional<std::int64_t> int_in(const sq::statement& s, int column, std::int64_t lo,
                                   std::int64_t hi) {
  if (sqlite3_column_type(s.handle(), column) != SQLITE_INTEGER)
    return std::nullopt;
  auto x = s.int64(column);
  if (x < lo || x > hi)
    return std::nullopt;
  return x;
}

/// "'<pid>' seq <s> (offset <o>)" for messages about a damaged row.
std::string row_name(const sq::statement& s, std::string_view pid, int seq_col, int offset_col) {
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
error damaged_fence(const std::string& path, const std::string& key, const sq::statement& s) {
  return damaged_row(path, fmt::format("fence '{}': epoch {} is not an integer in 0..{}",
                                       escape_invalid_utf8(key), escape_invalid_utf8(s.text(0)),
                                       max_fence_epoch));
}

/// Reads TROUPE_EVENT_COLUMNS starting at column 0 into `e` (whose persistence_id
/// is set). A value troupe never writes (a sequence nr or version that is not an
/// integer in range) is an error naming the row, never a silently cast number.
expected<void> row_to_event(const sq::statement& s, event_record& e, const std::string& path) {
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
  if (!s.is_null(4))
    split_tags(s.text(4), e.tags);
  e.writer = s.text(5);
  e.timestamp_ms = s.int64(6);
  e.offset = s.uint64(7);
  return {};
}

/// The unique (pid, seq) index refused the row. (A clash of the rowid, i.e. the
/// offset, would mean a damaged journal_meta and is a failure, not a conflict.)
bool is_conflict(int rc) {
  return rc == SQLITE_CONSTRAINT_UNIQUE;
}

void bind_criteria(sq::statement& s, const std::string& id, const snapshot_criteria& c) {
  s.bind(1, std::string_view{id});
  s.bind(2, to_db(c.min_seq));
  s.bind(3, to_db(c.max_seq));
  s.bind(4, c.min_timestamp_ms);
  s.bind(5, c.max_timestamp_ms);
}

} // namespace

struct sqlite_journal::impl {
  impl(sqlite_options o, std::unique_ptr<sq::connection> w,
       std::optional<sq::journal_identity> id)
    : opts(std::move(o)), identity(std::move(id)), writer(std::move(w)) {
  }

  sqlite_options opts;
  /// The file opened and its journal id; none when opened read-only.
  const std::optional<sq::journal_identity> identity;

  // -- lost: the file is no longer the journal (journal_identity.hpp) -------------------
  std::atomic<bool> is_lost{false};
  std::mutex lost_mtx;
  error lost_error;                                 // guarded by lost_mtx
  std::function<void(const error&)> lost_handler;  // guarded by lost_mtx

  /// Records the loss (once) and tells the handler; returns the error.
  error mark_lost(error e) {
    std::function<void(const error&)> handler;
    {
      std::lock_guard<std::mutex> guard{lost_mtx};
      if (is_lost.load())
        return lost_error;
      lost_error = e;
      is_lost.store(true);
      handler = lost_handler;
    }
    if (handler)
      handler(e);
    return e;
  }

  expected<void> check_not_lost() {
    if (!is_lost.load(std::memory_order_acquire))
      return {};
    std::lock_guard<std::mutex> guard{lost_mtx};
    return lost_error;
  }

  /// The identity check on a connection (a no-op read-only); a permanent mismatch
  /// marks the journal lost.
  expected<void> check_identity(sq::connection& c) {
    if (!identity)
      return {};
    bool lost = false;
    auto ok = identity->check(c, &lost);
    if (!ok && lost)
      return mark_lost(std::move(ok).error());
    return ok;
  }

  // -- the writer connection and its caches, guarded by writer_mtx ----------------------
  struct id_info {
    std::int64_t id;
    sequence_nr deleted_to;
  };
  std::mutex writer_mtx;
  std::unique_ptr<sq::connection> writer;
  // Name -> row id. Ids never change once created, so entries stay valid; entries
  // made inside a transaction that rolls back are removed again (`provisional`).
  // deleted_to is what this process last saw (see delete_events_to).
  std::unordered_map<std::string, id_info> ids;
  std::unordered_map<std::string, std::int64_t> tag_ids;
  std::vector<std::string> provisional_ids;
  std::vector<std::string> provisional_tags;
  std::string tags_text;  // reused buffer
  struct planned_write {
    id_info* id;        // into `ids` (node-based: stable while the entry lives)
    std::size_t index;  // in the batch
  };
  std::vector<planned_write> plan;  // reused: write_batch's storage order

  // -- reader connections ---------------------------------------------------------------
  std::mutex pool_mtx;
  std::vector<std::unique_ptr<sq::connection>> idle_readers;

  /// A reader connection, returned to the pool when the lease ends.
  struct reader_lease {
    reader_lease(impl* o, std::unique_ptr<sq::connection> c) : owner(o), conn(std::move(c)) {}
    reader_lease(reader_lease&&) = default;
    reader_lease& operator=(reader_lease&&) = delete;
    impl* owner;
    std::unique_ptr<sq::connection> conn;
    ~reader_lease() {
      if (conn) {
        std::lock_guard<std::mutex> guard{owner->pool_mtx};
        owner->idle_readers.push_back(std::move(conn));
      }
    }
    sq::connection* operator->() { return conn.get(); }
  };

  expected<reader_lease> reader() {
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

  // -- write path -----------------------------------------------------------------------

  error read_only_error() const {
    return error{errc::journal_rejected,
                 fmt::format("journal '{}' is open read-only", opts.path)};
  }

  /// Starts a write transaction (taking the write lock) on the file that is still
  /// the journal: every write, delete and snapshot save begins here.
  expected<void> begin_write() {
    if (auto ok = check_not_lost(); !ok)
      return ok;
    if (auto ok = run(sql_begin); !ok)
      return ok;
    return check_identity(*writer);
  }

  /// Runs a cached statement without results.
  expected<void> run(const char* sql) {
    auto s = writer->prepare(sql);
    if (!s)
      return std::move(s).error();
    sq::use q{**s};
    auto rc = q->step();
    if (rc != SQLITE_DONE && rc != SQLITE_ROW)
      return writer->fail_from(rc, sql);
    return {};
  }

  /// The row id of a persistence id, creating it (provisionally) if needed.
  expected<id_info*> resolve_id(const std::string& name, bool create) {
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

  expected<std::int64_t> resolve_tag(const std::string& name) {
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

  /// Forgets cache entries made by a transaction that did not commit.
  void forget_provisional() {
    for (auto& n : provisional_ids)
      ids.erase(n);
    for (auto& n : provisional_tags)
      tag_ids.erase(n);
    provisional_ids.clear();
    provisional_tags.clear();
  }

  void keep_provisional() {
    provisional_ids.clear();
    provisional_tags.clear();
  }

  /// Inserts one event (and its tag rows) at `offset`. Returns the SQLite result
  /// of the event insert (SQLITE_DONE on success), or an error for a failure that
  /// dooms the whole transaction.
  expected<int> insert_event(sq::statement& ins, std::int64_t pid, const std::string& name,
                             const event_record& e, offset_type offset, std::int64_t ts) {
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

  /// The fence check, inside the open write transaction (of a write or of
  /// advance_fence): refuses `f` with fenced when the key's stored epoch is newer,
  /// else raises the stored epoch to f.epoch. `what` names the refused operation.
  /// Returns the refusal as the inner result, or an error (the outer expected) that
  /// dooms the transaction.
  template <class What>
  expected<write_result> check_fence(const write_fence& f, What what) {
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

  /// Stores one validated atomic write of the persistence id `id` inside the open
  /// transaction. Returns the write's own result, or an error (as the outer
  /// expected) that dooms the batch.
  expected<write_result> store(const atomic_write& w, id_info* id, offset_type& offset,
                               std::int64_t ts) {
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

  expected<offset_type> read_offset() {
    auto s = writer->prepare(sql_get_offset);
    if (!s)
      return std::move(s).error();
    sq::use q{**s};
    if (auto rc = q->step(); rc != SQLITE_ROW)
      return writer->fail_from(rc, "cannot read the highest offset");
    return q->uint64(0);
  }

  expected<void> write_offset(offset_type offset) {
    auto s = writer->prepare(sql_set_offset);
    if (!s)
      return std::move(s).error();
    sq::use q{**s};
    q->bind(1, static_cast<std::int64_t>(offset));
    if (auto rc = q->step(); rc != SQLITE_DONE)
      return writer->fail_from(rc, "cannot record the highest offset");
    return {};
  }

  /// The order in which write_batch stores the batch's valid writes: by persistence
  /// id row, then batch position. The (pid, seq) index is then updated in key order,
  /// each insert next to the previous one in the b-tree (as a writer that goes round
  /// its entities would), instead of at random. Offsets follow this order; the batch
  /// commits as a whole, so no reader can tell, and one id's writes keep their order.
  /// A batch with a fenced write keeps its submission order: a fence key spans many
  /// ids (a shard), and which of two writes under one key is refused depends on
  /// their order.
  expected<void> plan_batch(std::span<const atomic_write> batch,
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

  /// The batch inside one transaction; an error means nothing was stored.
  expected<void> write_batch(std::span<const atomic_write> batch, std::vector<write_result>& results) {
    if (auto ok = begin_write(); !ok)
      return ok;
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

  std::vector<write_result> write(std::span<const atomic_write> batch) {
    std::vector<write_result> results;
    results.reserve(batch.size());
    bool any = false;
    for (auto& w : batch) {
      results.push_back(opts.read_only ? write_result{read_only_error()} : validate_write(w));
      any = any || results.back().has_value();
    }
    if (!any)
      return results;
    std::lock_guard<std::mutex> guard{writer_mtx};
    if (auto ok = write_batch(batch, results); !ok) {
      writer->rollback_if_open();
      forget_provisional();
      auto failure = error{errc::journal_failure,
                           fmt::format("{}; nothing of this batch of {} writes was stored",
                                       ok.error().message(), batch.size())};
      for (auto& r : results)
        if (r || r.error().code() != errc::journal_rejected)
          r = failure;
      return results;
    }
    keep_provisional();
    return results;
  }

  expected<void> delete_events_to(const std::string& name, sequence_nr to) {
    if (opts.read_only)
      return read_only_error();
    std::lock_guard<std::mutex> guard{writer_mtx};
    auto ok = delete_in_transaction(name, to);
    if (!ok) {
      writer->rollback_if_open();
      forget_provisional();
      return ok;
    }
    keep_provisional();
    return {};
  }

  expected<void> delete_in_transaction(const std::string& name, sequence_nr to) {
    if (auto ok = begin_write(); !ok)
      return ok;
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

  expected<void> advance_fence(const std::string& key, std::uint64_t epoch) {
    if (opts.read_only)
      return read_only_error();
    if (auto ok = validate_fence(key, epoch); !ok)
      return ok;
    std::lock_guard<std::mutex> guard{writer_mtx};
    auto body = [&]() -> expected<void> {
      if (auto ok = begin_write(); !ok)
        return ok;
      auto r = check_fence(write_fence{key, epoch}, [] { return std::string{"advance_fence"}; });
      if (!r)
        return std::move(r).error();
      if (!*r)
        return std::move(*r).error();
      return run(sql_commit);
    };
    auto ok = body();
    if (!ok)
      writer->rollback_if_open();
    return ok;
  }

  // -- read path ------------------------------------------------------------------------

  static expected<sequence_nr> highest_on(sq::connection& c, const std::string& name) {
    auto s = c.prepare(sql_highest_seq);
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

  /// Runs a cached query on a reader connection; `bind` binds the parameters and
  /// `row` consumes each result row.
  template <class Bind, class Row>
  expected<void> query(const char* sql, std::string_view what, Bind bind, Row row) {
    auto c = reader();
    if (!c)
      return std::move(c).error();
    auto s = (*c)->prepare(sql);
    if (!s)
      return std::move(s).error();
    sq::use q{**s};
    bind(*q);
    int rc;
    while ((rc = q->step()) == SQLITE_ROW) {
      if constexpr (std::is_void_v<decltype(row(*q))>) {
        row(*q);
      } else {
        if (auto ok = row(*q); !ok)
          return ok;
      }
    }
    if (rc != SQLITE_DONE)
      return (*c)->fail_from(rc, what);
    return {};
  }
};

// -- sqlite_journal ----------------------------------------------------------------------

expected<std::shared_ptr<sqlite_journal>> sqlite_journal::open(sqlite_options opts) {
  auto c = sq::open_primary(opts);
  if (!c)
    return std::move(c).error();
  std::optional<sq::journal_identity> identity;
  if (!opts.read_only) {
    auto id = sq::journal_identity::capture(**c);
    if (!id)
      return std::move(id).error();
    identity = std::move(*id);
  }
  auto p = std::make_unique<impl>(std::move(opts), std::move(*c), std::move(identity));
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
  std::lock_guard<std::mutex> guard{impl_->lost_mtx};
  impl_->lost_handler = std::move(handler);
}

sqlite_journal::sqlite_journal(std::unique_ptr<impl> p) : impl_(std::move(p)) {
}

sqlite_journal::~sqlite_journal() = default;

const sqlite_options& sqlite_journal::options() const noexcept {
  return impl_->opts;
}

std::vector<write_result> sqlite_journal::write(std::span<const atomic_write> batch) {
  return impl_->write(batch);
}

expected<std::vector<event_record>> sqlite_journal::read_events(const std::string& persistence_id,
                                                                sequence_nr from, sequence_nr to,
                                                                std::size_t max_events) {
  std::vector<event_record> result;
  if (to >= from)
    result.reserve(std::min<std::uint64_t>({max_events, to - from + 1, 4096}));
  auto ok = impl_->query(
    sql_read_events, fmt::format("cannot read events of '{}' from seq {}", persistence_id, from),
    [&](sq::statement& s) {
      s.bind(1, std::string_view{persistence_id});
      s.bind(2, to_db(from));
      s.bind(3, to_db(to));
      s.bind(4, limit_of(max_events));
    },
    [&](sq::statement& s) {
      auto& e = result.emplace_back();
      e.persistence_id = persistence_id;
      return row_to_event(s, e, impl_->opts.path);
    });
  if (!ok)
    return std::move(ok).error();
  return result;
}

expected<sequence_nr> sqlite_journal::highest_sequence_nr(const std::string& persistence_id) {
  auto c = impl_->reader();
  if (!c)
    return std::move(c).error();
  return impl::highest_on(*c->conn, persistence_id);
}

expected<void> sqlite_journal::delete_events_to(const std::string& persistence_id,
                                                sequence_nr to) {
  return impl_->delete_events_to(persistence_id, to);
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
    sql_persistence_ids, "cannot list persistence ids",
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

expected<void> sqlite_journal::advance_fence(const std::string& key, std::uint64_t epoch) {
  return impl_->advance_fence(key, epoch);
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

// -- snapshots ---------------------------------------------------------------------------

expected<void> sqlite_journal::save(const snapshot_record& snapshot) {
  if (impl_->opts.read_only)
    return impl_->read_only_error();
  if (snapshot.persistence_id.empty() || snapshot.seq == 0)
    return error{errc::invalid_argument,
                 fmt::format("snapshot store: a snapshot needs a persistence id and a seq >= 1 "
                             "(got '{}' seq {})",
                             snapshot.persistence_id, snapshot.seq)};
  auto& p = *impl_;
  std::lock_guard<std::mutex> guard{p.writer_mtx};
  auto body = [&]() -> expected<void> {
    if (auto ok = p.begin_write(); !ok)
      return ok;
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
  };
  auto ok = body();
  if (!ok) {
    p.writer->rollback_if_open();
    p.forget_provisional();
    return ok;
  }
  p.keep_provisional();
  return {};
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
  std::lock_guard<std::mutex> guard{p.writer_mtx};
  auto body = [&]() -> expected<void> {
    if (auto ok = p.begin_write(); !ok)
      return ok;
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
  };
  auto ok = body();
  if (!ok)
    p.writer->rollback_if_open();
  return ok;
}

} // namespace troupe::persistence
