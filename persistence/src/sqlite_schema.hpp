// Opening a troupe SQLite file: path checks, pragmas, schema creation and
// migration (internal; used by sqlite_journal, the offset store and the tools).
#pragma once

#include "sqlite_db.hpp"

#include "troupe/persistence/sqlite_journal.hpp"

namespace troupe::persistence::sqlite {

/// Checks the path (directory exists, file exists unless it may be created),
/// opens the connection used for writing, sets WAL + synchronous, and creates or
/// migrates the schema (or, read-only, checks that it is a troupe journal of a
/// known version). Errors name the path.
expected<std::unique_ptr<connection>> open_primary(const sqlite_options& opts);

/// Opens a further connection to a file open_primary() already prepared.
expected<std::unique_ptr<connection>> open_secondary(const sqlite_options& opts);

} // namespace troupe::persistence::sqlite
