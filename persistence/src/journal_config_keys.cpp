#include "troupe/actors/config.hpp"

#include <chrono>

namespace troupe::persistence::detail {

// Keys of the journal and snapshot store (persistence.journal.*); read by
// install_journal (install_journal.cpp). docs/persistence-storage.md explains them.
void add_journal_config_keys(config_schema& s) {
  using namespace std::chrono_literals;
  s.add("persistence.journal.backend", config_type::string, std::string{"sqlite"},
        "Journal + snapshot store: sqlite (one file, durable), postgres (a PostgreSQL server, "
        "for nodes on several machines) or memory (tests; lost at exit).",
        config_range::one_of({"sqlite", "postgres", "memory"}));
  s.add("persistence.journal.path", config_type::string, std::string{"troupe-journal.db"},
        "SQLite journal file; its directory must exist.");
  s.add("persistence.journal.create-if-missing", config_type::boolean, false,
        "Create a new, empty journal when the file does not exist or is empty (0 bytes, or "
        "a SQLite file without tables). Off: such a file is an error naming the path, so a "
        "deleted or truncated journal is never silently replaced by an empty one. Turn it on "
        "for the first start of a deployment only (or run `troupe journal create`).");
  s.add("persistence.journal.synchronous", config_type::string, std::string{"full"},
        "full: acknowledged writes survive power loss; normal: survive a process crash, "
        "power loss may lose the last commits; off: survive a process crash only, power loss "
        "may lose writes and corrupt the file.",
        config_range::one_of({"full", "normal", "off"}));
  s.add("persistence.journal.busy-timeout", config_type::duration, duration{5s},
        "How long a write waits for another process holding the journal's write lock.",
        config_range::of(0ms, 1h));
  s.add("persistence.journal.max-page-count", config_type::integer, std::int64_t{0},
        "Caps the journal file at this many pages (0: no cap); writes beyond it fail.",
        config_range::of(0, 4294967294));
  s.add("persistence.journal.max-batch-events", config_type::integer, std::int64_t{4096},
        "Most events the writer thread commits in one transaction (group commit).",
        config_range::of(1, 1 << 20));
  s.add("persistence.journal.max-queued-writes", config_type::integer, std::int64_t{65536},
        "Most writes waiting for the writer thread (the batch being committed does not "
        "count); a write that finds the queue full is refused with overloaded and entities "
        "retry it after a short backoff.",
        config_range::of(1, 1 << 24));
  s.add("persistence.journal.postgres.uri", config_type::string, std::string{},
        "The PostgreSQL journal's libpq connection URI, e.g. "
        "postgresql://user:password@host:5432/db (backend = postgres). troupe creates its "
        "tables in the connection's current schema.");
  s.add("persistence.journal.postgres.pool-size", config_type::integer, std::int64_t{4},
        "Connections of the PostgreSQL journal for replays, queries and snapshots; the writer "
        "has one more of its own.",
        config_range::of(1, 64));
  s.add("persistence.journal.postgres.connect-timeout", config_type::duration, duration{10s},
        "How long the PostgreSQL journal waits for a connection (unless the URI sets "
        "connect_timeout).",
        config_range::of(1s, 10min));
  s.add("persistence.journal.postgres.lock-timeout", config_type::duration, duration{10s},
        "How long a PostgreSQL journal statement waits for a lock (the offset lock another "
        "node's write holds) before failing with journal_failure; 0: no limit. The URI's "
        "options=-clock_timeout%3D... overrides it.",
        config_range::of(0ms, 1h));
  s.add("persistence.journal.postgres.statement-timeout", config_type::duration, duration{60s},
        "Longest PostgreSQL journal statement before the server cancels it; 0: no limit. The "
        "URI's options=-cstatement_timeout%3D... overrides it.",
        config_range::of(0ms, 1h));
  s.add("persistence.journal.postgres.idle-in-transaction-timeout", config_type::duration,
        duration{60s},
        "The server ends a PostgreSQL journal connection idle this long inside a transaction "
        "(a hung node), releasing the offset lock it held; 0: no limit. The URI's "
        "options=-cidle_in_transaction_session_timeout%3D... overrides it.",
        config_range::of(0ms, 1h));
  s.add("persistence.journal.reader-threads", config_type::integer, std::int64_t{2},
        "Threads serving replays, snapshot loads and queries.", config_range::of(1, 64));
}

} // namespace troupe::persistence::detail
