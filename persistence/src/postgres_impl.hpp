// The PostgreSQL journal's internals, shared by postgres_schema.cpp (schema and
// migrations), postgres_write.cpp (the write path) and postgres_journal.cpp (the
// read path, snapshots and the connection pool).
#pragma once

#include "troupe/persistence/postgres_journal.hpp"

#include "lost_state.hpp"
#include "pg_connection.hpp"

#include <condition_variable>
#include <mutex>
#include <unordered_map>

namespace troupe::persistence {

namespace pg {

/// The schema version this build creates and reads.
inline constexpr int schema_version = 1;

struct schema_info {
  std::int64_t journal_id = 0;
  std::string synchronous_commit;
};

/// Creates or migrates the schema in the connection's current schema (under an
/// advisory lock, so nodes starting together do not race), or, read-only, checks
/// it. Refuses a newer version and a schema that holds other tables.
expected<schema_info> prepare_schema(connection& c, bool read_only);

/// A persistence id, manifest, writer, tag or fence key PostgreSQL can store as
/// text (valid UTF-8, no NUL); fails with journal_rejected naming the write.
expected<void> check_text(const atomic_write& w);

/// True for text PostgreSQL can store: valid UTF-8 without NUL bytes.
bool storable_text(std::string_view s);

/// An event's tags in the events.tags column: joined by \x1f (tags cannot hold
/// control characters); "" for none.
void join_tags(const std::vector<std::string>& tags, std::string& out);
void split_tags(std::string_view text, std::vector<std::string>& out);

std::int64_t to_db(std::uint64_t x);
std::int64_t limit_of(std::size_t n);

} // namespace pg

struct postgres_journal::impl {
  impl(postgres_options o, std::unique_ptr<pg::connection> w, pg::schema_info info);

  postgres_options opts;
  pg::connect_options reader_opts;
  const std::string server;
  const pg::schema_info info;

  // -- lost: the URI's schema is no longer this journal (journal_id changed) ----------
  lost_state loss;
  error mark_lost(error e) { return loss.mark(std::move(e)); }
  expected<void> check_not_lost() { return loss.check(); }

  // -- the writer (postgres_write.cpp), guarded by writer_mtx ---------------------------
  std::mutex writer_mtx;
  std::unique_ptr<pg::connection> writer;
  /// Name -> row id of persistence ids known to be committed (ids never change
  /// within one journal). Cleared by forget_cached() whenever the server the
  /// writer talks to may not be the one that committed them.
  std::unordered_map<std::string, std::int64_t> ids;
  /// Row id -> deleted_to, read in a write transaction, valid while the journal's
  /// delete counter (journal_meta 'deletes', raised by every delete_events_to under
  /// the offset lock) stays at `deletes_seen`; cleared when it moves.
  std::unordered_map<std::int64_t, std::int64_t> deleted_to;
  std::int64_t deletes_seen = -1;  // -1: unknown
  /// The highest offset the last write transaction read: a lower one later means
  /// the database went back in time (a restore, a failover that lost commits).
  std::int64_t offset_seen = 0;
  void forget_cached();

  std::vector<write_result> write(std::span<const atomic_write> batch);
  expected<void> delete_events_to(const std::string& name, sequence_nr to);
  expected<void> advance_fence(const std::string& key, std::uint64_t epoch);

  /// The writer connection, connected again if it was lost.
  expected<pg::connection*> writer_connection();
  /// Starts a write transaction holding the offset lock, checks the journal id;
  /// returns the highest offset and the delete counter.
  expected<std::pair<std::int64_t, std::int64_t>> begin_write(pg::connection& c);
  /// The frame of a delete or a fence change (postgres_write.cpp): under
  /// writer_mtx, the writer connection and begin_write, then `body(c)`, which ends
  /// with the commit; rolled back if any of it fails.
  template <class F>
  expected<void> in_write_transaction(F body);
  /// One attempt at a batch (postgres_write.cpp); `check_stored` also asks the
  /// database which writes' sequence numbers are stored already.
  expected<void> write_attempt(std::span<const atomic_write> batch,
                               std::vector<write_result>& results, bool check_stored,
                               std::vector<std::pair<std::string, std::int64_t>>& new_ids,
                               bool& committing);
  /// Row ids of the batch's names not in `ids`, created when missing (rolled back
  /// with the transaction); a name still missing fails the batch.
  expected<void> resolve_ids(pg::connection& c, std::span<const atomic_write> batch,
                             const std::vector<write_result>& results,
                             std::unordered_map<std::string, std::int64_t>& fresh);

  // -- the read pool (postgres_journal.cpp) ---------------------------------------------
  std::mutex pool_mtx;
  std::condition_variable pool_cv;
  std::vector<std::unique_ptr<pg::connection>> idle;  // guarded by pool_mtx
  std::size_t opened = 0;                             // guarded by pool_mtx

  /// How long reader() waits for a pooled connection: a lease lasts one statement
  /// (statement_timeout) plus a reconnect (connect timeout), so a longer wait
  /// means the pool is stuck or far too small.
  std::chrono::milliseconds pool_wait() const;

  /// A pooled connection, back in the pool when the lease ends.
  struct lease {
    impl* owner;
    std::unique_ptr<pg::connection> conn;
    lease(impl* o, std::unique_ptr<pg::connection> c) : owner(o), conn(std::move(c)) {}
    lease(lease&&) = default;
    lease& operator=(lease&&) = delete;
    ~lease();
  };
  expected<lease> reader();

  /// Runs `f(connection&)` on a pooled connection; once more on a fresh one when
  /// the connection was lost (reads are idempotent; a server restart costs a retry).
  template <class F>
  auto with_reader(F&& f) -> decltype(f(std::declval<pg::connection&>())) {
    for (int attempt = 0;; ++attempt) {
      auto c = reader();
      if (!c)
        return std::move(c).error();
      auto r = f(*c->conn);
      if (r || !c->conn->broken() || attempt > 0)
        return r;
    }
  }

  error read_only_error() const;
};

} // namespace troupe::persistence
