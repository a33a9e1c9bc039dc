// postgres_journal: the journal + snapshot store on a PostgreSQL server (libpq),
// for clusters whose nodes do not share a disk. The same contracts as the SQLite
// backend (journal.hpp; the conformance suite runs on both):
//
// - one transaction per group-commit batch, its events inserted by one multi-row
//   statement; (id, seq) conflicts, rejections and fence refusals fail only their
//   own write (checked in the transaction before inserting);
// - offsets strictly increasing in commit order across every process writing the
//   database: each write transaction first locks the `highest_offset` row of
//   journal_meta (SELECT ... FOR UPDATE) and holds it until its commit, so
//   transactions number their events one after another and commit in that order
//   (a sequence alone would not be: see docs/persistence-storage.md, "PostgreSQL");
// - the schema is created or migrated at open (troupe_schema_version); a newer
//   schema than this build knows is refused (unsupported_version);
// - one writer connection; a pool of `pool_size` connections for reads and
//   snapshots. A lost connection is opened again on next use; a connection lost
//   during COMMIT fails the batch with journal_failure (the outcome is unknown).
//   Each write transaction re-reads the journal's id: a schema that is no longer
//   this journal marks it lost (on_lost) instead of writing into another one.
//
// Thread-safety: every member may be called concurrently.
#pragma once

#include "troupe/persistence/journal.hpp"

#include <chrono>
#include <memory>
#include <string>

namespace troupe::persistence {

struct postgres_options {
  /// A libpq connection URI, e.g. "postgresql://user:password@host:5432/db". Its
  /// parameters apply (sslmode, options=-csearch_path%3Dmyschema, ...): troupe's
  /// tables live in the connection's current schema.
  std::string uri;
  /// Connections for reads and snapshots (1..64); the writer has its own.
  std::size_t pool_size = 4;
  /// Seconds to wait for a connection, unless the URI sets connect_timeout.
  int connect_timeout_s = 10;
  /// Server-side limits for every connection (0: the server's setting). They go
  /// ahead of the URI's `options`, so `options=-clock_timeout%3D2s` overrides one.
  /// A write waiting longer than lock_timeout for the offset lock (another node's
  /// transaction stuck) fails with journal_failure instead of queueing forever; a
  /// connection idle inside a transaction (a hung client) is ended by the server,
  /// releasing that lock. docs/persistence-storage.md, "Timeouts".
  std::chrono::milliseconds lock_timeout{10000};
  std::chrono::milliseconds statement_timeout{60000};
  std::chrono::milliseconds idle_in_transaction_timeout{60000};
  /// Neither creates nor migrates the schema; every write fails (troupe journal).
  /// Its connections also run with default_transaction_read_only=on.
  bool read_only = false;
  /// A batch's events go to the server in insert statements of at most this many
  /// bytes (payloads, text and a small overhead per event; one larger event goes
  /// alone): a PostgreSQL message and a bytea[] value hold at most 1 GB.
  std::size_t max_statement_bytes = std::size_t{64} << 20;
  /// An event larger than this is rejected (journal_rejected, that write only):
  /// PostgreSQL cannot take a value over 1 GB. Tests lower both.
  std::size_t max_event_bytes = (std::size_t{1} << 30) - (std::size_t{1} << 20);
};

/// True for "postgresql://..." and "postgres://...": where a journal path is
/// expected (troupe-node --journal, troupe journal --db), such a value names a
/// PostgreSQL journal.
bool is_postgres_uri(std::string_view text) noexcept;

class postgres_journal final : public journal_backend, public snapshot_backend {
public:
  /// Connects, then creates or migrates the schema. Errors: io_error (server
  /// unreachable), unauthorized (credentials refused), not_found (no such
  /// database), invalid_config (a malformed URI, a schema holding other tables),
  /// unsupported_version (a newer troupe's schema).
  static expected<std::shared_ptr<postgres_journal>> open(postgres_options opts);
  ~postgres_journal() override;

  /// The journal's random id, created with the schema.
  std::int64_t journal_id() const noexcept;
  /// The server's synchronous_commit for the writer ("on": a commit is durable).
  const std::string& synchronous_commit() const noexcept;
  /// "postgresql://user@host:port/db", without the password.
  const std::string& server() const noexcept;

  std::vector<write_result> write(std::span<const atomic_write> batch) override;
  expected<void> advance_fence(const std::string& key, std::uint64_t epoch) override;
  expected<std::uint64_t> fence_epoch(const std::string& key) override;
  expected<std::vector<event_record>> read_events(const std::string& persistence_id,
                                                  sequence_nr from, sequence_nr to,
                                                  std::size_t max_events) override;
  expected<sequence_nr> highest_sequence_nr(const std::string& persistence_id) override;
  expected<void> delete_events_to(const std::string& persistence_id, sequence_nr to) override;
  expected<std::vector<event_record>> events_by_tag(const std::string& tag, offset_type after,
                                                    std::size_t max_events) override;
  expected<std::vector<std::string>> persistence_ids(const std::string& after,
                                                     std::size_t max) override;
  expected<offset_type> highest_offset() override;
  /// Called once when the schema the URI names is no longer this journal (its
  /// journal_id changed or vanished: dropped and recreated, another database after a
  /// failover or restore); every call fails from then on.
  void on_lost(std::function<void(const error&)> handler) override;

  expected<void> save(const snapshot_record& snapshot) override;
  expected<std::optional<snapshot_record>> load(const std::string& persistence_id,
                                                const snapshot_criteria& criteria) override;
  expected<void> delete_matching(const std::string& persistence_id,
                                 const snapshot_criteria& criteria) override;

  struct impl;

private:
  explicit postgres_journal(std::unique_ptr<impl> p);
  std::unique_ptr<impl> impl_;
};

} // namespace troupe::persistence
