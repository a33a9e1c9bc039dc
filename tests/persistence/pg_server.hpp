// The PostgreSQL server the PostgreSQL journal's tests run against: a real one,
// never a mock.
//
// - `./run test` starts a throwaway cluster for the whole run
//   (scripts/pg-throwaway.sh) and passes its URI in TEST_PG_URI.
// - Without it (a test binary run by hand), the first test that needs a server
//   starts a private cluster for this process the same way, destroyed at exit.
// - When no server can be had (TEST_PG_ERROR, or the script fails), the
//   test FAILS naming the reason: PostgreSQL tests are never skipped.
//
// Each journal under test gets a fresh schema (pg_schema: CREATE SCHEMA, and a URI
// whose search_path names it), dropped at the end; tests that stop or reconfigure
// the server start a private cluster (pg_cluster).
#pragma once

#include "support/temp_dir.hpp"

#include <doctest/doctest.h>
#include <fmt/core.h>
#include <libpq-fe.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <random>
#include <string>

namespace troupe::test {

inline std::string pg_script() {
  auto root = std::filesystem::path{__FILE__}.parent_path().parent_path().parent_path();
  return (root / "scripts" / "pg-throwaway.sh").string();
}

/// Runs `scripts/pg-throwaway.sh <what> <dir>`; its stdout, or nullopt when it failed.
inline std::optional<std::string> pg_script_run(const std::string& what, const std::string& dir) {
  auto cmd = fmt::format("'{}' {} '{}' 2>&1", pg_script(), what, dir);
  auto pipe = ::popen(cmd.c_str(), "r");
  if (!pipe)
    return std::nullopt;
  std::string out;
  char buf[512];
  while (auto n = std::fread(buf, 1, sizeof buf, pipe))
    out.append(buf, n);
  auto status = ::pclose(pipe);
  while (!out.empty() && out.back() == '\n')
    out.pop_back();
  if (status != 0) {
    MESSAGE(fmt::format("{} failed: {}", cmd, out));
    return std::nullopt;
  }
  return out;
}

/// A throwaway cluster in a temp dir: started by the constructor, destroyed with
/// the object. stop()/kill()/start() restart it on the same port and URI.
class pg_cluster {
public:
  pg_cluster() {
    auto u = pg_script_run("start", dir_.path().string());
    REQUIRE_MESSAGE(u.has_value(), "scripts/pg-throwaway.sh could not start a PostgreSQL server "
                                   "(see the message above); the PostgreSQL tests need one");
    uri_ = *u;
  }
  ~pg_cluster() { pg_script_run("destroy", dir_.path().string()); }
  pg_cluster(const pg_cluster&) = delete;
  pg_cluster& operator=(const pg_cluster&) = delete;

  const std::string& uri() const { return uri_; }
  bool stop() { return pg_script_run("stop", dir_.path().string()).has_value(); }
  /// Stops the server the way a crash would (immediate shutdown).
  bool kill() { return pg_script_run("kill", dir_.path().string()).has_value(); }
  bool start() { return pg_script_run("start", dir_.path().string()).has_value(); }

private:
  temp_dir dir_;
  std::string uri_;
};

/// The URI of the server shared by this run's tests (see the file comment).
inline const std::string& pg_uri() {
  static const std::unique_ptr<pg_cluster> own = [] {
    if (auto e = std::getenv("TEST_PG_ERROR"); e && *e)
      FAIL(fmt::format("no PostgreSQL server for the PostgreSQL journal's tests: {}", e));
    auto u = std::getenv("TEST_PG_URI");
    return u && *u ? nullptr : std::make_unique<pg_cluster>();
  }();
  static const std::string uri = own ? own->uri() : std::string{std::getenv("TEST_PG_URI")};
  return uri;
}

/// A libpq connection for a test's own SQL (setup, inspection, sabotage).
class pg_session {
public:
  explicit pg_session(const std::string& uri) : c_(PQconnectdb(uri.c_str())) {
    REQUIRE_MESSAGE(PQstatus(c_) == CONNECTION_OK,
                    fmt::format("cannot connect to PostgreSQL: {}", PQerrorMessage(c_)));
  }
  ~pg_session() { PQfinish(c_); }
  pg_session(const pg_session&) = delete;
  pg_session& operator=(const pg_session&) = delete;

  /// Runs SQL; the first column of the first row ("" for none). REQUIREs success.
  std::string sql(const std::string& text) {
    auto r = PQexec(c_, text.c_str());
    auto status = PQresultStatus(r);
    std::string value = status == PGRES_TUPLES_OK && PQntuples(r) > 0 ? PQgetvalue(r, 0, 0) : "";
    std::string message = PQresultErrorMessage(r);
    PQclear(r);
    REQUIRE_MESSAGE((status == PGRES_TUPLES_OK || status == PGRES_COMMAND_OK),
                    fmt::format("'{}' failed: {}", text, message));
    return value;
  }
  int pid() const { return PQbackendPID(c_); }

private:
  PGconn* c_;
};

/// `uri` with a libpq parameter added (`key=value`, already URI-encoded).
inline std::string with_param(const std::string& uri, const std::string& param) {
  return uri + (uri.find('?') == std::string::npos ? "?" : "&") + param;
}

/// A fresh schema on the shared server, dropped with the object; uri() connects
/// with it as the search_path, so a journal opened there starts empty.
class pg_schema {
public:
  explicit pg_schema(const std::string& server_uri = pg_uri()) : server_(server_uri) {
    std::random_device rd;
    name_ = fmt::format("troupe_test_{:08x}{:08x}", rd(), rd());
    pg_session{server_}.sql(fmt::format("CREATE SCHEMA {}", name_));
    uri_ = with_param(server_, fmt::format("options=-csearch_path%3D{}", name_));
  }
  ~pg_schema() {
    auto c = PQconnectdb(server_.c_str());
    PQsetNoticeProcessor(c, [](void*, const char*) {}, nullptr);  // "drop cascades to ..."
    PQclear(PQexec(c, fmt::format("DROP SCHEMA IF EXISTS {} CASCADE", name_).c_str()));
    PQfinish(c);
  }
  pg_schema(const pg_schema&) = delete;
  pg_schema& operator=(const pg_schema&) = delete;

  const std::string& uri() const { return uri_; }
  const std::string& name() const { return name_; }

private:
  std::string server_;
  std::string name_;
  std::string uri_;
};

} // namespace troupe::test
