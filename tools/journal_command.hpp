// `troupe journal ...`: inspects any troupe journal without the user's types: a
// SQLite file, or a PostgreSQL schema when --db is a postgres:// or postgresql://
// URI. Every command but `create` (SQLite only) reads the journal read-only and
// never creates, migrates or writes it: a SQLite file on read-only storage is
// opened in SQLite's immutable mode (said so), a PostgreSQL journal is read in
// one read-only transaction. Output goes to `out` (stdout), notes and errors to `err`
// (stderr). Exit codes: 0 ok, 1 problems found (verify) or failure, 2 usage error.
#pragma once

#include <cstdio>
#include <string>
#include <vector>

namespace troupe::tools {

int journal_command(const std::vector<std::string>& args, std::FILE* out = stdout,
                    std::FILE* err = stderr);

} // namespace troupe::tools
