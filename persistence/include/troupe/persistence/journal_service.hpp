// journal_service: the asynchronous front of a journal + snapshot backend.
//
// - Writes go to one dedicated writer thread (outside CAF's scheduler). It takes
//   every write queued since its last round (up to max_batch events) and hands them
//   to the backend as one batch, i.e. one durable transaction: group commit. Each
//   write's callback runs after that commit, with its own result, in commit order,
//   on the service's completion thread while the writer starts the next batch (a
//   batch of a few writes is acknowledged on the writer thread itself when no
//   earlier callback is pending: no thread hop for one write at a time).
// - Reads (replay pages, highest sequence nr, snapshots, queries) run on reader
//   threads and never wait behind a write batch.
// - Callbacks run on the service's threads: they must be short and must not block
//   (send a CAF message, set a promise), and must not call stop(). They run exactly
//   once, also when the service stops (with errc::shutting_down for work never
//   started). A call made after stop() fails at once, on the caller's thread.
// - highest_sequence_nr(id) first waits until every write submitted before it has
//   completed, so a restarted entity never reuses a sequence nr of a write that was
//   still in flight. Read the highest sequence nr first, then replay up to it.
// - Snapshot saves/deletes and delete_events_to run on the writer thread between
//   batches (their callbacks after those of the batches before them); loads and
//   queries run on the reader threads.
//
// Writes of one persistence id are stored in the order they were submitted. An
// entity submits its next write only after the previous one was acknowledged.
//
// Backpressure: at most max_queued_writes writes wait for the writer (the batch
// being committed does not count). A write that finds the queue full is not
// queued: its callback gets `overloaded` at once, on the caller's thread, and
// nothing of it is stored. Entities keep such a command stashed and retry it
// after a short backoff (docs/persistence.md).
//
// Fences: a write carries its atomic_write's fence to the backend (journal.hpp);
// advance_fence runs on the writer thread between batches. From an actor, use
// the journal actor's advance_fence request (journal_actor.hpp).
//
// Thread-safety: every member function may be called concurrently from any thread.
#pragma once

#include "troupe/actors/config.hpp"
#include "troupe/actors/expected.hpp"
#include "troupe/persistence/journal.hpp"

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace troupe {
class node;
class logger;
class metrics_registry;
} // namespace troupe

namespace troupe::persistence {

template <class T>
using callback = std::function<void(expected<T>)>;

class journal_service {
public:
  struct options {
    std::size_t max_batch_events = 4096;  ///< events per group commit, at most
    std::size_t reader_threads = 2;
    std::size_t max_queued_writes = 65536;  ///< writes waiting for the writer, at most
  };

  /// Starts the writer and reader threads. `log` and `metrics` must outlive the
  /// service (they belong to the node).
  static std::shared_ptr<journal_service> start(std::shared_ptr<journal_backend> journal,
                                                std::shared_ptr<snapshot_backend> snapshots,
                                                options opts, logger& log,
                                                metrics_registry& metrics);

  virtual ~journal_service() = default;

  /// Finishes queued writes, fails queued reads with shutting_down, joins threads.
  /// Idempotent.
  virtual void stop() = 0;

  // -- journal -----------------------------------------------------------------------
  virtual void write(atomic_write w, callback<void> done) = 0;
  virtual void read_events(std::string persistence_id, sequence_nr from, sequence_nr to,
                           std::size_t max_events,
                           callback<std::vector<event_record>> done) = 0;
  /// Hands back a page read_events delivered, once the caller is done with it: a
  /// later read refills it in place, and its buffers are neither freed on the
  /// caller's thread nor allocated again on a reader's (a replay's pages cost no
  /// allocation per event). Optional: a page not handed back is simply destroyed.
  /// Keeps a few pages of bounded size; `page` is destroyed here if it does not fit.
  virtual void recycle(std::vector<event_record> page) = 0;
  virtual void highest_sequence_nr(std::string persistence_id, callback<sequence_nr> done) = 0;
  virtual void delete_events_to(std::string persistence_id, sequence_nr to,
                                callback<void> done) = 0;

  // -- fences (journal.hpp, write_fence) -----------------------------------------------
  /// journal_backend::advance_fence, on the writer thread between batches.
  virtual void advance_fence(std::string key, std::uint64_t epoch, callback<void> done) = 0;
  /// journal_backend::fence_epoch, on a reader thread.
  virtual void fence_epoch(std::string key, callback<std::uint64_t> done) = 0;

  // -- snapshots ---------------------------------------------------------------------
  virtual void save_snapshot(snapshot_record snapshot, callback<void> done) = 0;
  virtual void load_snapshot(std::string persistence_id, snapshot_criteria criteria,
                             callback<std::optional<snapshot_record>> done) = 0;
  virtual void delete_snapshots(std::string persistence_id, snapshot_criteria criteria,
                                callback<void> done) = 0;

  // -- queries -----------------------------------------------------------------------
  virtual void events_by_tag(std::string tag, offset_type after, std::size_t max_events,
                             callback<std::vector<event_record>> done) = 0;
  virtual void persistence_ids(std::string after, std::size_t max,
                               callback<std::vector<std::string>> done) = 0;
  virtual void highest_offset(callback<offset_type> done) = 0;

  /// The backends, for synchronous use by tools, queries and tests.
  virtual journal_backend& journal() = 0;
  virtual snapshot_backend& snapshots() = 0;
  /// The journal backend as a shared pointer, for objects that outlive a call
  /// (live queries, projections).
  virtual std::shared_ptr<journal_backend> journal_ptr() = 0;
};

/// Adds the persistence layer's keys (persistence.*) to a schema.
void add_config_keys(config_schema& schema);

/// Opens the journal the node's config describes (persistence.journal.*), starts a
/// journal_service, registers it as the node extension `journal_service` and adds a
/// stop hook. Errors name the path (missing directory, read-only file, ...).
expected<std::shared_ptr<journal_service>> install_journal(node& n);

/// Same with given backends (e.g. a memory_journal with fault injection in tests);
/// the service options still come from the config.
expected<std::shared_ptr<journal_service>>
install_journal(node& n, std::shared_ptr<journal_backend> journal,
                std::shared_ptr<snapshot_backend> snapshots);

/// The service install_journal registered on the node, or nullptr.
std::shared_ptr<journal_service> find_journal(node& n);

} // namespace troupe::persistence
