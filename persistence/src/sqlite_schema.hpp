// Opening a troupe SQLite file: path checks, pragmas, schema creation and
// migration (internal; used by sqlite_journal, the offset store and the tools).
#pragma once

#include "sqlite_db.hpp"

#include "troupe/persistence/sqlite_journal.hpp"

namespace troupe::persistence::sqlite {

/// Checks the path (directory exists and is writable, file exists and is not empty
/// unless it may be created, file writable), opens the connection used for
/// writing, sets WAL + synchronous, and creates or migrates the schema. Read-only,
/// it checks that the file is a troupe journal of a known version, falling back to
/// immutable mode on read-only storage (then sets `opts.immutable`). Errors name
/// the path.
expected<std::unique_ptr<connection>> open_primary(sqlite_options& opts);

/// The schema version stored in a file open_primary() accepted (read-only, it may
/// be older than sqlite_schema_version: a read-only open never migrates).
expected<int> stored_schema_version(connection& c);

/// Creates the schema of an older `version` (1..sqlite_schema_version) in an empty
/// database, as a build that knew only that version did (tests of migrations).
expected<void> create_older_schema(connection& c, int version);

/// Opens a further connection to a file open_primary() already prepared.
expected<std::unique_ptr<connection>> open_secondary(const sqlite_options& opts);

} // namespace troupe::persistence::sqlite
