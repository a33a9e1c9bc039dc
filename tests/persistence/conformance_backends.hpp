// The backends the conformance suite runs against, and helpers to build events.
//
// A backend is a type with `static constexpr const char* name` and
// `static backend_under_test make()`. To hold a new backend to every contract, add
// its type to TROUPE_CONFORMANCE_BACKENDS.
#pragma once

#include "troupe/actors/log.hpp"
#include "troupe/persistence/journal.hpp"
#include "troupe/persistence/memory_journal.hpp"
#include "troupe/persistence/postgres_journal.hpp"
#include "troupe/persistence/sqlite_journal.hpp"

#include "support/temp_dir.hpp"

#include "pg_server.hpp"

#include <doctest/doctest.h>

#include <fmt/core.h>

#include <memory>
#include <string>
#include <vector>

namespace troupe::test {

struct backend_under_test {
  std::shared_ptr<persistence::journal_backend> journal;
  std::shared_ptr<persistence::snapshot_backend> snapshots;
  std::shared_ptr<void> keep_alive;  ///< e.g. the temp dir holding the file
};

struct memory_backend {
  static constexpr const char* name = "memory";
  static backend_under_test make() {
    auto j = std::make_shared<persistence::memory_journal>();
    return {j, j, nullptr};
  }
};

/// A fresh SQLite journal file in a temp dir. synchronous=OFF: the conformance
/// suite is about contracts, not durability (the crash and multi-process tests
/// use FULL).
struct sqlite_backend {
  static constexpr const char* name = "sqlite";
  static backend_under_test make() {
    auto dir = std::make_shared<temp_dir>();
    persistence::sqlite_options opts;
    opts.path = dir->file("journal.db");
    opts.synchronous = persistence::sync_mode::off;
    opts.create_if_missing = true;
    auto j = persistence::sqlite_journal::open(opts);
    REQUIRE(j);
    return {*j, *j, dir};
  }
};

/// A journal in a fresh schema on the test run's PostgreSQL server (pg_server.hpp),
/// dropped afterwards. The server's durability settings are the cluster's defaults
/// (synchronous_commit on).
struct postgres_backend {
  static constexpr const char* name = "postgres";
  static backend_under_test make() {
    auto schema = std::make_shared<pg_schema>();
    persistence::postgres_options opts;
    opts.uri = schema->uri();
    auto j = persistence::postgres_journal::open(opts);
    REQUIRE_MESSAGE(j, (j ? std::string{} : j.error().to_string()));
    return {*j, *j, schema};
  }
};

#define TROUPE_CONFORMANCE_BACKENDS                                                   \
  ::troupe::test::memory_backend, ::troupe::test::sqlite_backend,                     \
    ::troupe::test::postgres_backend

/// Writes a batch (one backend call) and returns its results.
inline std::vector<persistence::write_result> write_all(persistence::journal_backend& j,
                                                        std::vector<persistence::atomic_write> batch) {
  return j.write(std::span<const persistence::atomic_write>{batch});
}

/// "<prefix><n>", e.g. id_of("id-", 7) == "id-7". (Also avoids a false
/// -Wstringop-overflow of g++ 12 on `"literal" + std::to_string(n)`.)
inline std::string id_of(std::string_view prefix, long long n) {
  return fmt::format("{}{}", prefix, n);
}

/// One event of `id` at `seq` whose payload is the CBOR of `value`.
inline persistence::event_record make_event(const std::string& id, persistence::sequence_nr seq,
                                            std::int64_t value = 0,
                                            std::vector<std::string> tags = {}) {
  persistence::event_record e;
  e.persistence_id = id;
  e.seq = seq;
  e.manifest = "test.event";
  e.version = 1;
  e.payload = nlohmann::json::to_cbor(nlohmann::json{{"v", value}});
  e.tags = std::move(tags);
  e.writer = "writer-1";
  return e;
}

/// A snapshot of `id` at `seq` with a small CBOR payload.
inline persistence::snapshot_record make_snapshot(const std::string& id,
                                                  persistence::sequence_nr seq,
                                                  std::int64_t timestamp_ms = 0) {
  return persistence::snapshot_record{
    .persistence_id = id,
    .seq = seq,
    .timestamp_ms = timestamp_ms,
    .manifest = "test.state",
    .version = 1,
    .payload = nlohmann::json::to_cbor(nlohmann::json{{"seq", seq}}),
  };
}

/// An atomic write of `id` with events from..to (inclusive).
inline persistence::atomic_write make_write(const std::string& id, persistence::sequence_nr from,
                                            persistence::sequence_nr to,
                                            std::vector<std::string> tags = {}) {
  persistence::atomic_write w;
  w.persistence_id = id;
  for (auto s = from; s <= to; ++s)
    w.events.push_back(make_event(id, s, static_cast<std::int64_t>(s), tags));
  return w;
}

/// How many events of `id` the journal holds.
inline std::size_t stored(persistence::journal_backend& j, const std::string& id) {
  auto r = j.read_events(id, 1, persistence::max_sequence_nr, 100000);
  REQUIRE(r);
  return r->size();
}

/// Whether the error's message contains `text`.
inline bool mentions(const error& e, std::string_view text) {
  return e.message().find(text) != std::string::npos;
}

/// A logger that writes only errors (for tests that provoke warnings).
inline std::shared_ptr<logger> quiet_logger() {
  logger::options opts;
  opts.level = log_level::error;
  return *logger::make(opts);
}

} // namespace troupe::test
