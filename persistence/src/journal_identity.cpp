#include "journal_identity.hpp"

#include <fmt/core.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>

namespace troupe::persistence::sqlite {

namespace {

constexpr const char* sql_journal_id = "SELECT value FROM journal_meta WHERE key = 'journal_id'";

} // namespace

expected<std::optional<std::int64_t>> read_journal_id(connection& c) {
  auto s = c.prepare(sql_journal_id);
  if (!s)
    return std::move(s).error();
  use q{**s};
  auto rc = q->step();
  if (rc == SQLITE_ROW && sqlite3_column_type(q->handle(), 0) == SQLITE_INTEGER)
    return std::optional<std::int64_t>{q->int64(0)};
  if (rc == SQLITE_ROW || rc == SQLITE_DONE)
    return std::optional<std::int64_t>{};
  return c.fail_from(rc, "cannot read the journal id");
}

expected<journal_identity> journal_identity::capture(connection& c) {
  struct stat st{};
  if (::stat(c.path().c_str(), &st) != 0)
    return error{errc::io_error, fmt::format("journal '{}': cannot stat the file: {}", c.path(),
                                             std::strerror(errno))};
  auto id = read_journal_id(c);
  if (!id)
    return std::move(id).error();
  if (!*id)
    return error{errc::invalid_config,
                 fmt::format("journal '{}': its journal id (journal_meta 'journal_id') is "
                             "missing or not an integer: the file was damaged",
                             c.path())};
  return journal_identity{c.path(), st.st_dev, st.st_ino, **id};
}

error journal_identity::lost(std::string_view what) const {
  return error{errc::journal_failure,
               fmt::format("journal '{}' is lost: {}. The node stopped writing to it; nothing "
                           "more is acknowledged. Keep the node running and copy the open file "
                           "back (docs/persistence-storage.md, 'A journal lost while open'), "
                           "then restart it",
                           path_, what)};
}

expected<void> journal_identity::check(connection& c, bool* lost_now) const {
  *lost_now = true;
  struct stat st{};
  if (::stat(path_.c_str(), &st) != 0) {
    if (errno == ENOENT || errno == ENOTDIR)
      return lost("the file was deleted or renamed while open");
    *lost_now = false;  // e.g. EIO or EACCES: not known to be gone
    return error{errc::journal_failure, fmt::format("journal '{}': cannot check the file: {}",
                                                    path_, std::strerror(errno))};
  }
  if (st.st_dev != dev_ || st.st_ino != ino_)
    return lost("the path now names another file (it was replaced while open)");
  auto id = read_journal_id(c);
  if (!id) {
    *lost_now = false;
    return std::move(id).error();
  }
  if (!*id)
    return lost("its journal id is missing (the file was overwritten or damaged while open)");
  if (**id != id_)
    return lost(fmt::format("the file now holds journal id {}, not {} (it was overwritten "
                            "while open)",
                            **id, id_));
  *lost_now = false;
  return {};
}

} // namespace troupe::persistence::sqlite
