#include "pg_connection.hpp"

#include <fmt/core.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <endian.h>

namespace troupe::persistence::pg {

namespace {

void put_be32(std::string& out, std::uint32_t x) {
  x = htobe32(x);
  out.append(reinterpret_cast<const char*>(&x), 4);
}

void put_be64(std::string& out, std::uint64_t x) {
  x = htobe64(x);
  out.append(reinterpret_cast<const char*>(&x), 8);
}

bool contains(std::string_view text, std::string_view part) {
  return text.find(part) != std::string_view::npos;
}

/// libpq's messages end with a newline and sometimes carry a "FATAL:  " prefix.
std::string trimmed(const char* message) {
  std::string s = message ? message : "";
  while (!s.empty() && (s.back() == '\n' || s.back() == ' '))
    s.pop_back();
  for (auto& c : s)
    if (c == '\n')
      c = ' ';
  return s;
}

/// Why a connection attempt failed, as a troupe error naming the server.
error connect_error(const std::string& server, const std::string& message) {
  if (contains(message, "password authentication failed") || contains(message, "no password supplied")
      || contains(message, "no pg_hba.conf entry") || contains(message, "role \""))
    return error{errc::unauthorized,
                 fmt::format("postgres journal {}: the server refused the credentials ({}); check "
                             "the user and password in persistence.journal.postgres.uri",
                             server, message)};
  if (contains(message, "database \"") && contains(message, "does not exist"))
    return error{errc::not_found,
                 fmt::format("postgres journal {}: {}; create the database first (CREATE "
                             "DATABASE), troupe creates only its tables",
                             server, message)};
  return error{errc::io_error,
               fmt::format("postgres journal {}: cannot reach the server ({}); is it running and "
                           "does persistence.journal.postgres.uri name it?",
                           server, message)};
}

std::string percent_decoded(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size()) {
      out += static_cast<char>(std::strtol(std::string{s.substr(i + 1, 2)}.c_str(), nullptr, 16));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

/// `message` without the password `uri` carries (the URI's user:password@, or a
/// password= parameter), raw or percent-decoded: libpq quotes a malformed URI whole.
std::string redacted(std::string message, const std::string& uri) {
  std::vector<std::string> secrets;
  if (auto scheme = uri.find("://"); scheme != std::string::npos) {
    auto start = scheme + 3;
    auto at = uri.rfind('@', uri.find('?', start));
    if (at != std::string::npos && at > start)
      if (auto colon = uri.find(':', start); colon < at)
        secrets.push_back(uri.substr(colon + 1, at - colon - 1));
  }
  for (auto k = uri.find("password="); k != std::string::npos; k = uri.find("password=", k + 1)) {
    auto v = k + 9;
    secrets.push_back(uri.substr(v, uri.find_first_of("& ", v) - v));
  }
  for (auto n = secrets.size(), i = std::size_t{0}; i < n; ++i)
    secrets.push_back(percent_decoded(secrets[i]));
  std::sort(secrets.begin(), secrets.end(),
            [](auto& a, auto& b) { return a.size() > b.size(); });
  for (auto& secret : secrets)
    for (auto p = secret.empty() ? std::string::npos : message.find(secret);
         p != std::string::npos; p = message.find(secret, p + 3))
      message.replace(p, secret.size(), "***");
  return message;
}

/// The startup packet's `options`: troupe's limits first, then the URI's own (or
/// PGOPTIONS'), so a setting the URI names wins (the server applies them in order).
std::string startup_options(const connect_options& opts, const char* uri_options) {
  std::string out;
  auto add = [&](const char* name, int ms) {
    if (ms > 0)
      out += fmt::format("-c {}={} ", name, ms);
  };
  add("lock_timeout", opts.lock_timeout_ms);
  add("statement_timeout", opts.statement_timeout_ms);
  add("idle_in_transaction_session_timeout", opts.idle_in_transaction_timeout_ms);
  if (opts.read_only)
    out += "-c default_transaction_read_only=on ";
  if (!uri_options)
    uri_options = std::getenv("PGOPTIONS");
  out += uri_options ? uri_options : "";
  while (!out.empty() && out.back() == ' ')
    out.pop_back();
  return out;
}

} // namespace

// -- parameters ----------------------------------------------------------------------------

void array_param::add_int8(std::int64_t x) {
  put_be32(body_, 8);
  put_be64(body_, static_cast<std::uint64_t>(x));
  ++count_;
}

void array_param::add_bytes(std::span<const std::uint8_t> x) {
  put_be32(body_, static_cast<std::uint32_t>(x.size()));
  body_.append(reinterpret_cast<const char*>(x.data()), x.size());
  ++count_;
}

std::string array_param::encode() const {
  // ndim, has-nulls flag, element type, then per dimension its size and lower bound.
  std::string out;
  out.reserve(20 + body_.size());
  put_be32(out, 1);
  put_be32(out, 0);
  put_be32(out, element_);
  put_be32(out, static_cast<std::uint32_t>(count_));
  put_be32(out, 1);
  out += body_;
  return out;
}

Oid array_param::array_oid() const {
  switch (element_) {
    case int4_oid: return 1007;
    case int8_oid: return 1016;
    case text_oid: return 1009;
    case bytea_oid: return 1001;
    default: return 0;
  }
}

params& params::int8(std::int64_t x) {
  std::string v;
  put_be64(v, static_cast<std::uint64_t>(x));
  values_.push_back(std::move(v));
  types_.push_back(int8_oid);
  return *this;
}

params& params::text(std::string_view x) {
  values_.emplace_back(x);
  types_.push_back(text_oid);
  return *this;
}

params& params::bytea(std::span<const std::uint8_t> x) {
  values_.emplace_back(reinterpret_cast<const char*>(x.data()), x.size());
  types_.push_back(bytea_oid);
  return *this;
}

params& params::array(const array_param& a) {
  values_.push_back(a.encode());
  types_.push_back(a.array_oid());
  return *this;
}

std::vector<const char*> params::pointers() const {
  std::vector<const char*> out;
  for (auto& v : values_)
    out.push_back(v.data());
  return out;
}

std::vector<int> params::lengths() const {
  std::vector<int> out;
  for (auto& v : values_)
    out.push_back(static_cast<int>(v.size()));
  return out;
}

// -- results -------------------------------------------------------------------------------

std::int64_t result::int8(int row, int col) const noexcept {
  auto p = PQgetvalue(r_.get(), row, col);
  switch (PQgetlength(r_.get(), row, col)) {
    case 2: {
      std::uint16_t x;
      std::memcpy(&x, p, 2);
      return static_cast<std::int16_t>(be16toh(x));
    }
    case 4: {
      std::uint32_t x;
      std::memcpy(&x, p, 4);
      return static_cast<std::int32_t>(be32toh(x));
    }
    case 8: {
      std::uint64_t x;
      std::memcpy(&x, p, 8);
      return static_cast<std::int64_t>(be64toh(x));
    }
    default: return 0;
  }
}

std::string_view result::text(int row, int col) const noexcept {
  return {PQgetvalue(r_.get(), row, col),
          static_cast<std::size_t>(PQgetlength(r_.get(), row, col))};
}

std::span<const std::uint8_t> result::bytes(int row, int col) const noexcept {
  return {reinterpret_cast<const std::uint8_t*>(PQgetvalue(r_.get(), row, col)),
          static_cast<std::size_t>(PQgetlength(r_.get(), row, col))};
}

std::int64_t result::affected() const noexcept {
  auto s = PQcmdTuples(r_.get());
  return s && *s ? std::strtoll(s, nullptr, 10) : 0;
}

// -- connection ----------------------------------------------------------------------------

std::string describe(const std::string& uri) {
  char* err = nullptr;
  auto opts = PQconninfoParse(uri.c_str(), &err);
  if (!opts) {
    PQfreemem(err);
    return "'(a malformed URI)'";
  }
  std::string host = "localhost", port = "5432", db, user;
  for (auto o = opts; o->keyword; ++o) {
    if (!o->val)
      continue;
    std::string_view k = o->keyword;
    if (k == "host" || (k == "hostaddr" && host == "localhost"))
      host = o->val;
    else if (k == "port")
      port = o->val;
    else if (k == "dbname")
      db = o->val;
    else if (k == "user")
      user = o->val;
  }
  PQconninfoFree(opts);
  return fmt::format("'postgresql://{}{}{}:{}/{}'", user, user.empty() ? "" : "@", host, port,
                     db.empty() ? user : db);
}

expected<std::unique_ptr<connection>> connection::open(const connect_options& opts) {
  char* err = nullptr;
  auto parsed = PQconninfoParse(opts.uri.c_str(), &err);
  if (!parsed) {
    auto message = redacted(trimmed(err), opts.uri);
    PQfreemem(err);
    return error{errc::invalid_config,
                 fmt::format("postgres journal: persistence.journal.postgres.uri is not a libpq "
                             "connection URI ({})",
                             message.empty() ? "out of memory" : message)};
  }
  const char* uri_options = nullptr;
  for (auto o = parsed; o->keyword; ++o)
    if (std::string_view{o->keyword} == "options")
      uri_options = o->val;
  auto options = startup_options(opts, uri_options);
  PQconninfoFree(parsed);
  // Defaults first: the URI's own settings (expanded from dbname) override them;
  // `options` last, already merged with the URI's. libpq keeps them for PQreset.
  // Keepalives and tcp_user_timeout: a server that vanished without a FIN (a cut
  // network, a failed-over VM) fails the statement within about a minute instead
  // of hanging the writer until the kernel gives up (hours).
  auto timeout = std::to_string(opts.connect_timeout_s);
  const char* keys[] = {"connect_timeout", "fallback_application_name", "keepalives",
                        "keepalives_idle", "keepalives_interval", "keepalives_count",
                        "tcp_user_timeout", "dbname", options.empty() ? nullptr : "options",
                        nullptr};
  const char* values[] = {timeout.c_str(), opts.application_name.c_str(), "1", "30", "10", "3",
                          "30000", opts.uri.c_str(), options.c_str(), nullptr};
  auto c = PQconnectdbParams(keys, values, 1);
  std::unique_ptr<connection> self{new connection(c, opts)};
  if (!c)
    return error{errc::io_error, "postgres journal: libpq is out of memory"};
  if (PQstatus(c) != CONNECTION_OK)
    return connect_error(self->server_, trimmed(PQerrorMessage(c)));
  // libpq prints NOTICEs to stderr by default; none of troupe's statements needs one.
  PQsetNoticeProcessor(c, [](void*, const char*) {}, nullptr);
  return self;
}

connection::connection(PGconn* c, connect_options opts)
  : conn_(c), opts_(std::move(opts)), server_(describe(opts_.uri)) {
}

connection::~connection() {
  if (conn_)
    PQfinish(conn_);
}

expected<void> connection::reconnect() {
  auto now = std::chrono::steady_clock::now();
  if (last_error_ && now - last_failed_ < std::chrono::milliseconds{100})
    return last_error_;
  PQreset(conn_);
  ended_ = false;
  sqlstate_.clear();
  if (PQstatus(conn_) != CONNECTION_OK) {
    last_failed_ = now;
    last_error_ = connect_error(server_, trimmed(PQerrorMessage(conn_)));
    return last_error_;
  }
  last_error_ = {};
  return {};
}

error connection::fail(const PGresult* r, std::string_view what) {
  auto state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : nullptr;
  sqlstate_ = state ? state : "";
  if (sqlstate_.starts_with("08") || sqlstate_.starts_with("57P"))
    ended_ = true;
  auto message = trimmed(r ? PQresultErrorMessage(r) : PQerrorMessage(conn_));
  if (message.empty())
    message = trimmed(PQerrorMessage(conn_));
  if (broken())
    return error{errc::journal_failure,
                 fmt::format("postgres journal {}: {}: the connection to the server was lost ({})",
                             server_, what, message)};
  return error{errc::journal_failure,
               fmt::format("postgres journal {}: {}: {}", server_, what, message)};
}

expected<result> connection::exec(const char* sql, const params& p, std::string_view what) {
  auto values = p.pointers();
  auto lengths = p.lengths();
  std::vector<int> formats(static_cast<std::size_t>(p.count()), 1);
  result r{PQexecParams(conn_, sql, p.count(), p.types(), values.data(), lengths.data(),
                        formats.data(), 1)};
  auto status = PQresultStatus(r.raw());
  if (status == PGRES_TUPLES_OK || status == PGRES_COMMAND_OK) {
    sqlstate_.clear();
    return r;
  }
  return fail(r.raw(), what);
}

expected<void> connection::run(const char* sql) {
  result r{PQexec(conn_, sql)};
  auto status = PQresultStatus(r.raw());
  if (status == PGRES_TUPLES_OK || status == PGRES_COMMAND_OK) {
    sqlstate_.clear();
    return {};
  }
  return fail(r.raw(), fmt::format("'{}' failed", sql));
}

expected<result> connection::query(const char* sql, std::string_view what) {
  result r{PQexec(conn_, sql)};
  auto status = PQresultStatus(r.raw());
  if (status == PGRES_TUPLES_OK || status == PGRES_COMMAND_OK) {
    sqlstate_.clear();
    return r;
  }
  return fail(r.raw(), what);
}

expected<void> connection::commit() {
  auto r = query("COMMIT", "'COMMIT' failed");
  if (!r)
    return std::move(r).error();
  if (std::string_view{PQcmdStatus(r->raw())} != "COMMIT")
    return error{errc::journal_failure,
                 fmt::format("postgres journal {}: the server answered COMMIT with {}: the "
                             "transaction was rolled back",
                             server_, PQcmdStatus(r->raw()))};
  return {};
}

void connection::rollback_if_open() {
  if (!broken() && PQtransactionStatus(conn_) != PQTRANS_IDLE)
    result{PQexec(conn_, "ROLLBACK")};
}

} // namespace troupe::persistence::pg
