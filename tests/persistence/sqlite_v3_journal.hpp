// A SQLite journal file as a build that knew only schema version 3 left it: the
// schema made by the journal's own migration steps 1 to 3 (released steps are
// never edited), and rows as that build's writer stored them.
#pragma once

#include "raw_sql.hpp"
#include "sqlite_schema.hpp"  // persistence/src: create_older_schema

#include <doctest/doctest.h>

#include <string>

namespace troupe::test {

/// Writes a version 3 journal at `path` (WAL mode, as troupe opens it) holding:
/// 'acct|a' seq 1..5 with 1..2 deleted (offsets 3..5, tagged 'acct'), 'acct|b'
/// seq 1..3 (offsets 6..8), a snapshot of each, and fence 'shard-1' at epoch 3.
/// Payloads are the CBOR of {"v": seq}.
inline void write_version_3_journal(const std::string& path) {
  {
    auto c = persistence::sqlite::connection::open(path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
                                                   std::chrono::seconds{5});
    REQUIRE(c);
    REQUIRE((*c)->exec("PRAGMA journal_mode=WAL"));
    auto ok = persistence::sqlite::create_older_schema(**c, 3);
    REQUIRE_MESSAGE(ok, (ok ? std::string{} : ok.error().to_string()));
  }
  raw_exec(path, R"sql(
BEGIN;
INSERT INTO persistence_ids(id, name, deleted_to) VALUES(1, 'acct|a', 2), (2, 'acct|b', 0);
INSERT INTO tags(id, name) VALUES(1, 'acct');
INSERT INTO events VALUES
  (3, 1, 3, 'test.event', 1, x'a1617603', 'acct', 'writer-1', 1000),
  (4, 1, 4, 'test.event', 1, x'a1617604', 'acct', 'writer-1', 1000),
  (5, 1, 5, 'test.event', 1, x'a1617605', 'acct', 'writer-1', 1000),
  (6, 2, 1, 'test.event', 1, x'a1617601', NULL, 'writer-1', 1000),
  (7, 2, 2, 'test.event', 1, x'a1617602', NULL, 'writer-1', 1000),
  (8, 2, 3, 'test.event', 1, x'a1617603', NULL, 'writer-1', 1000);
INSERT INTO event_tags VALUES(1, 3), (1, 4), (1, 5);
UPDATE journal_meta SET value = 8 WHERE key = 'highest_offset';
INSERT INTO snapshots VALUES(1, 4, 1000, 'test.state', 1, x'a1637365710a'),
                            (2, 3, 1000, 'test.state', 1, x'a1637365710a');
INSERT INTO fences VALUES('shard-1', 3);
COMMIT;
)sql");
}

} // namespace troupe::test
