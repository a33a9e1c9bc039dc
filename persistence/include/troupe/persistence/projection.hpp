// Projections: feed the events of a tag, in offset order, to a handler that builds
// a read model, and remember how far it got in an offset store.
//
// - The offset store is the table projection_offsets(projection, key, offset,
//   last_updated_ms) in a troupe SQLite file (normally the journal itself).
// - Exactly-once (SQLite): the handler gets a projection_session, i.e. the
//   projection's connection inside an open transaction. Its writes and the new
//   offset commit in that one transaction, per batch of events. A handler error
//   (or a crash) rolls back both, so after a restart every event's effect is in
//   the read model exactly once. The read model's tables must live in the same
//   SQLite file as the offset store.
// - At-least-once: the handler runs outside any transaction; the offset is saved
//   every `save_every` events or `save_interval`, whichever comes first, and on
//   stop(). After a crash, the events since the last saved offset are delivered
//   again: the handler must be idempotent.
//
// A projection stops at the first handler or storage error: failure() says why,
// offset() is where a new run resumes (both modes load the stored offset first).
//
// Thread-safety: a projection runs on its own thread (the handler is called
// there, one event at a time); its members may be called from any thread.
#pragma once

#include "troupe/persistence/query.hpp"
#include "troupe/persistence/sqlite_journal.hpp"

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

struct sqlite3;

namespace troupe::persistence {

class sqlite_offset_store {
public:
  /// Opens (and creates/migrates) the troupe SQLite file at opts.path.
  static expected<std::shared_ptr<sqlite_offset_store>> open(sqlite_options opts);
  ~sqlite_offset_store();

  /// The stored offset, or nullopt if the projection never saved one.
  expected<std::optional<offset_type>> load(const std::string& projection, const std::string& key);
  expected<void> save(const std::string& projection, const std::string& key, offset_type offset);

  struct impl;

private:
  explicit sqlite_offset_store(std::unique_ptr<impl> p);
  std::unique_ptr<impl> impl_;
};

using sql_value = std::variant<std::nullptr_t, std::int64_t, double, std::string>;

/// The exactly-once handler's view of the open transaction.
class projection_session {
public:
  explicit projection_session(sqlite3* db, std::string path) : db_(db), path_(std::move(path)) {}

  /// Runs one SQL statement with positional parameters (?1, ?2, ...). Errors name
  /// the file and the statement.
  expected<void> exec(const std::string& sql, const std::vector<sql_value>& params = {});
  /// The raw connection, for anything exec() cannot do. Do not commit or roll
  /// back: the projection owns the transaction.
  sqlite3* handle() const noexcept { return db_; }

private:
  sqlite3* db_;
  std::string path_;
};

using exactly_once_handler = std::function<expected<void>(projection_session&, const event_record&)>;
using at_least_once_handler = std::function<expected<void>(const event_record&)>;

struct projection_options {
  std::string name;  ///< the projection's name in the offset store
  std::string tag;   ///< the events it consumes (the offset store key)
  /// Events per transaction (exactly-once) or per fetch (at-least-once).
  std::size_t batch_size = 64;
  duration refresh_interval = std::chrono::milliseconds{100};
  /// At-least-once: save the offset after this many events ...
  std::size_t save_every = 100;
  /// ... or when this much time passed since the last save.
  duration save_interval = std::chrono::milliseconds{500};
};

class projection {
public:
  virtual ~projection() = default;
  /// Stops after the event being handled (saving the offset in at-least-once
  /// mode). Idempotent; do not call from the handler.
  virtual void stop() = 0;
  virtual bool running() const = 0;
  /// The offset of the last event whose effect is committed (exactly-once) or
  /// handled (at-least-once).
  virtual offset_type offset() const = 0;
  /// Why the projection stopped by itself, if it did.
  virtual std::optional<error> failure() const = 0;
};

/// Starts an exactly-once projection over `source` (events_by_tag(opts.tag)),
/// with its read model and offsets in the SQLite file `db`.
expected<std::unique_ptr<projection>> run_exactly_once(std::shared_ptr<journal_backend> source,
                                                       sqlite_options db, projection_options opts,
                                                       exactly_once_handler handler);

/// Starts an at-least-once projection with batched offset saves to `store`.
expected<std::unique_ptr<projection>> run_at_least_once(std::shared_ptr<journal_backend> source,
                                                        std::shared_ptr<sqlite_offset_store> store,
                                                        projection_options opts,
                                                        at_least_once_handler handler);

} // namespace troupe::persistence
