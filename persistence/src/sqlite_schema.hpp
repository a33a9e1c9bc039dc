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

/// Opens a further connection to a file open_primary() already prepared.
expected<std::unique_ptr<connection>> open_secondary(const sqlite_options& opts);

} // namespace troupe::persistence::sqlite
