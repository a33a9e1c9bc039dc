// A thin, exception-free layer over libpq for the PostgreSQL journal: one
// connection, statements with binary parameters and binary results, and errors
// that name the server (never the password) and say what failed.
//
// Binary both ways: no escaping of text, bytea or arrays, and multi-row inserts
// pass one array per column (`INSERT ... SELECT * FROM unnest($1::int8[], ...)`),
// so a group commit of N events is one statement, not N.
//
// Thread-safety: a connection is used by one thread at a time (the caller locks).
#pragma once

#include "troupe/actors/expected.hpp"

#include <libpq-fe.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace troupe::persistence::pg {

// Type oids (pg_type.h, stable across releases).
inline constexpr Oid int4_oid = 23;
inline constexpr Oid int8_oid = 20;
inline constexpr Oid text_oid = 25;
inline constexpr Oid bytea_oid = 17;

/// A one-dimensional array parameter in PostgreSQL's binary array format.
class array_param {
public:
  explicit array_param(Oid element) : element_(element) {}
  void add_int8(std::int64_t x);
  void add_bytes(std::span<const std::uint8_t> x);
  void add_text(std::string_view x) {
    add_bytes({reinterpret_cast<const std::uint8_t*>(x.data()), x.size()});
  }
  std::size_t size() const noexcept { return count_; }
  void clear() noexcept { body_.clear(), count_ = 0; }
  /// The encoded array (header + elements).
  std::string encode() const;
  Oid array_oid() const;

private:
  Oid element_;
  std::string body_;
  std::size_t count_ = 0;
};

/// The parameters of one statement, all binary.
class params {
public:
  params& int8(std::int64_t x);
  params& text(std::string_view x);
  params& bytea(std::span<const std::uint8_t> x);
  params& array(const array_param& a);
  int count() const noexcept { return static_cast<int>(values_.size()); }
  const Oid* types() const noexcept { return types_.data(); }
  std::vector<const char*> pointers() const;
  std::vector<int> lengths() const;

private:
  std::vector<std::string> values_;
  std::vector<Oid> types_;
};

/// A statement's result rows (binary format).
class result {
public:
  explicit result(PGresult* r) : r_(r, &PQclear) {}
  int rows() const noexcept { return PQntuples(r_.get()); }
  bool is_null(int row, int col) const noexcept { return PQgetisnull(r_.get(), row, col) != 0; }
  /// An int2/int4/int8 column, whatever its width.
  std::int64_t int8(int row, int col) const noexcept;
  std::string_view text(int row, int col) const noexcept;
  std::span<const std::uint8_t> bytes(int row, int col) const noexcept;
  /// Rows changed by an INSERT/UPDATE/DELETE.
  std::int64_t affected() const noexcept;
  PGresult* raw() const noexcept { return r_.get(); }

private:
  std::unique_ptr<PGresult, void (*)(PGresult*)> r_;
};

struct connect_options {
  std::string uri;               ///< a libpq connection URI or key=value string
  std::string application_name;  ///< shown in pg_stat_activity
  int connect_timeout_s = 10;    ///< unless the URI sets connect_timeout
  // Server-side limits, sent in the startup packet's `options` ahead of the URI's
  // own (so `options=-clock_timeout%3D...` in the URI wins) and kept by reconnect();
  // 0 leaves the server's setting. TCP keepalives (30 s idle, 10 s interval, 3
  // probes) and tcp_user_timeout (30 s) are always asked for unless the URI sets them.
  int lock_timeout_ms = 0;                  ///< lock_timeout
  int statement_timeout_ms = 0;             ///< statement_timeout
  int idle_in_transaction_timeout_ms = 0;   ///< idle_in_transaction_session_timeout
  bool read_only = false;                   ///< default_transaction_read_only=on
};

/// "postgresql://user@host:port/db": the URI without its password, for messages.
std::string describe(const std::string& uri);

class connection {
public:
  /// Connects; a clear error when the server is unreachable (io_error), refuses
  /// the credentials (unauthorized) or the URI is malformed (invalid_config).
  static expected<std::unique_ptr<connection>> open(const connect_options& opts);
  ~connection();
  connection(const connection&) = delete;
  connection& operator=(const connection&) = delete;

  /// Runs one statement with binary parameters and results; `what` names it in
  /// the error ("cannot read events of 'a'").
  expected<result> exec(const char* sql, const params& p, std::string_view what);
  /// Runs one or more statements without parameters (BEGIN, COMMIT, DDL).
  expected<void> run(const char* sql);
  /// Like run(), returning the last statement's rows in text format.
  expected<result> query(const char* sql, std::string_view what);
  /// COMMIT, checking that the server committed: a transaction with a failed
  /// statement answers COMMIT with ROLLBACK (and no error).
  expected<void> commit();
  /// ROLLBACK when a transaction is open and the connection is alive.
  void rollback_if_open();

  /// The connection was lost (the server stopped or killed it, the network broke).
  /// Also after the server said it ends the session (SQLSTATE 57P01 terminated by
  /// an administrator, 57P02/57P03 shutting down, 08xxx connection errors), before
  /// libpq has seen the socket close.
  bool broken() const noexcept { return ended_ || PQstatus(conn_) != CONNECTION_OK; }
  /// Connects again after broken(); the same errors as open(). Within 100 ms of a
  /// failed attempt it fails at once with that attempt's error: a writer retrying
  /// against a stopped server does not hammer it (or the port) with connects.
  expected<void> reconnect();
  /// The SQLSTATE of the last failed statement ("" for none / a lost connection).
  const std::string& last_sqlstate() const noexcept { return sqlstate_; }
  void clear_sqlstate() noexcept { sqlstate_.clear(); }
  const std::string& server() const noexcept { return server_; }
  int backend_pid() const noexcept { return PQbackendPID(conn_); }

private:
  connection(PGconn* c, connect_options opts);
  error fail(const PGresult* r, std::string_view what);

  PGconn* conn_;
  connect_options opts_;
  std::string server_;  // describe(uri)
  std::string sqlstate_;
  bool ended_ = false;
  std::chrono::steady_clock::time_point last_failed_{};
  error last_error_;
};

/// SQLSTATE 23505: a unique index refused a row.
inline bool is_unique_violation(const std::string& sqlstate) {
  return sqlstate == "23505";
}

} // namespace troupe::persistence::pg
