// Helpers of the PostgreSQL journal's own tests (postgres_journal_test.cpp,
// postgres_journal_safety_test.cpp): opening journals on a pg_schema, waiting for
// a backend to block, and joining threads or releasing row locks however a test
// ends (a failed REQUIRE unwinds past them).
#pragma once

#include "conformance_backends.hpp"

#include "support/wait.hpp"

#include <doctest/doctest.h>

#include <atomic>
#include <functional>
#include <thread>

namespace troupe::test {

inline std::shared_ptr<persistence::postgres_journal>
open_journal(persistence::postgres_options opts) {
  auto j = persistence::postgres_journal::open(opts);
  REQUIRE_MESSAGE(j, (j ? std::string{} : j.error().to_string()));
  return *j;
}

inline std::shared_ptr<persistence::postgres_journal> open_journal(const std::string& uri) {
  persistence::postgres_options opts;
  opts.uri = uri;
  return open_journal(opts);
}

/// Waits until the session sees a backend matching the pg_stat_activity condition
/// `where` and returns its pid, "" on timeout.
inline std::string wait_for_backend(pg_session& s, const std::string& where) {
  std::string pid;
  wait_until(
    [&] {
      pid = s.sql("SELECT pid FROM pg_stat_activity WHERE " + where + " LIMIT 1");
      return !pid.empty();
    },
    std::chrono::seconds{30});
  return pid;
}

/// Stops and joins threads however the test ends (a joinable std::thread
/// destroyed would terminate the process).
struct joined_threads {
  std::atomic<bool>& stop;
  std::vector<std::thread> threads;
  ~joined_threads() {
    stop = true;
    for (auto& t : threads)
      if (t.joinable())
        t.join();
  }
};

/// Runs `f` when the scope ends, however it ends (e.g. ROLLBACK of a session that
/// holds the offset lock, so a failed REQUIRE cannot leave a writer blocked).
class at_scope_exit {
public:
  explicit at_scope_exit(std::function<void()> f) : f_(std::move(f)) {}
  ~at_scope_exit() {
    if (f_)
      f_();
  }
  at_scope_exit(const at_scope_exit&) = delete;
  at_scope_exit& operator=(const at_scope_exit&) = delete;

private:
  std::function<void()> f_;
};

/// Runs `sql` on a new connection, ignoring failures: for clean-ups that may run
/// while a failed REQUIRE unwinds (where another REQUIRE would terminate).
inline void pg_exec_quiet(const std::string& uri, const char* sql) {
  auto c = PQconnectdb(uri.c_str());
  if (PQstatus(c) == CONNECTION_OK)
    PQclear(PQexec(c, sql));
  PQfinish(c);
}

/// A session holding the offset lock (the `highest_offset` row) until release()
/// or the end of its scope (never REQUIREs there: it may run while unwinding).
class offset_lock_holder {
public:
  explicit offset_lock_holder(const std::string& uri) : c_(PQconnectdb(uri.c_str())) {
    REQUIRE_MESSAGE(PQstatus(c_) == CONNECTION_OK, PQerrorMessage(c_));
    for (auto sql : {"BEGIN",
                     "SELECT value FROM journal_meta WHERE key = 'highest_offset' FOR UPDATE"}) {
      auto r = PQexec(c_, sql);
      auto ok = PQresultStatus(r) == PGRES_TUPLES_OK || PQresultStatus(r) == PGRES_COMMAND_OK;
      PQclear(r);
      REQUIRE_MESSAGE(ok, sql);
    }
  }
  ~offset_lock_holder() {
    release();
    PQfinish(c_);
  }
  offset_lock_holder(const offset_lock_holder&) = delete;
  offset_lock_holder& operator=(const offset_lock_holder&) = delete;
  void release() {
    if (PQtransactionStatus(c_) != PQTRANS_IDLE)
      PQclear(PQexec(c_, "ROLLBACK"));
  }
  int pid() const { return PQbackendPID(c_); }

private:
  PGconn* c_;
};

} // namespace troupe::test
