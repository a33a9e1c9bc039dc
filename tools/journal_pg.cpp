// `troupe journal` on a PostgreSQL journal (postgres_journal.hpp): the tables of
// the connection's current schema, read in one read-only transaction.
//
// Read-only twice over: the session's default_transaction_read_only is on (set by
// the backend's read-only schema check) and every statement runs inside
// `BEGIN ... READ ONLY`, so the server refuses any write. The transaction is
// REPEATABLE READ: verify's queries all see the same snapshot, whatever nodes
// write meanwhile. Rows are fetched through a cursor, a page at a time, so
// `events` and `verify` on a large journal do not hold it all in memory.
#include "journal_verify.hpp"

#include "pg_connection.hpp"
#include "postgres_impl.hpp"

namespace troupe::tools {

namespace {

namespace pg = persistence::pg;

// Result column types (pg_type.h, stable across releases).
constexpr Oid bool_oid = 16;
constexpr Oid int2_oid = 21;

/// Rows fetched per round trip.
constexpr int page_rows = 1000;

class pg_row final : public journal_row {
public:
  pg_row(const pg::result& r, int row) : r_(r), row_(row) {}
  bool is_null(int i) const override { return r_.is_null(row_, i); }
  bool is_integer(int i) const override {
    auto t = type(i);
    return !is_null(i) && (t == pg::int8_oid || t == pg::int4_oid || t == int2_oid);
  }
  bool is_text(int i) const override { return !is_null(i) && !is_integer(i) && !is_bytes(i); }
  std::int64_t integer(int i) const override {
    if (is_null(i))
      return 0;
    if (type(i) == bool_oid)
      return r_.bytes(row_, i).empty() ? 0 : r_.bytes(row_, i)[0];
    return is_integer(i) ? r_.int8(row_, i) : 0;
  }
  std::string text(int i) const override {
    if (is_integer(i) || type(i) == bool_oid)
      return std::to_string(integer(i));
    return std::string{r_.text(row_, i)};
  }
  byte_span blob(int i) const override { return r_.bytes(row_, i); }
  json value(int i) const override {
    if (is_null(i))
      return nullptr;
    if (is_integer(i))
      return integer(i);
    if (is_bytes(i))
      return json{{"hex", hex(blob(i), SIZE_MAX)}};
    return text(i);
  }

private:
  Oid type(int i) const { return PQftype(r_.raw(), i); }
  /// bytea, and any type this tool does not decode (shown as its binary form).
  bool is_bytes(int i) const {
    auto t = type(i);
    return t == pg::bytea_oid
           || !(t == pg::text_oid || t == pg::int8_oid || t == pg::int4_oid || t == int2_oid
                || t == bool_oid || t == 1043 /* varchar */ || t == 19 /* name */);
  }

  const pg::result& r_;
  int row_;
};

constexpr journal_dialect postgres_dialect{
  .ids = "SELECT p.name, (SELECT count(*) FROM events e WHERE e.pid = p.id), "
         "greatest(coalesce((SELECT max(seq) FROM events e WHERE e.pid = p.id), 0), "
         "p.deleted_to) FROM persistence_ids p ORDER BY p.name",
  .ids_of_entity = "SELECT name FROM persistence_ids WHERE strpos(name, '|') > 0 "
                   "AND substr(name, strpos(name, '|') + 1) = ?1 ORDER BY name",
  .tagged = "e.ordering IN (SELECT t.ordering FROM event_tags t WHERE t.tag = ?1)",
  .tag_counts = "SELECT tag, count(*) FROM event_tags GROUP BY tag ORDER BY tag",
  .schema_version = "SELECT max(version) FROM troupe_schema_version",
  .highest_offset = "SELECT value FROM journal_meta WHERE key = 'highest_offset'",
  .offsets_beyond_highest = "SELECT count(*) FROM events WHERE ordering > "
                            "(SELECT value FROM journal_meta WHERE key = 'highest_offset')",
};

// The tags an event lists (events.tags, joined by \x1f) and its event_tags rows
// (what events_by_tag reads) must agree: the writer inserts both in one transaction.
constexpr const char* sql_untagged_rows =
  "SELECT p.name, e.seq, e.ordering, x.tag FROM events e "
  "LEFT JOIN persistence_ids p ON p.id = e.pid "
  "CROSS JOIN LATERAL unnest(string_to_array(e.tags, E'\\x1f')) AS x(tag) "
  "WHERE NOT EXISTS (SELECT 1 FROM event_tags t WHERE t.tag = x.tag AND t.ordering = e.ordering) "
  "ORDER BY e.ordering, x.tag";
constexpr const char* sql_stray_tag_rows =
  "SELECT p.name, e.seq, e.ordering, t.tag FROM event_tags t "
  "JOIN events e ON e.ordering = t.ordering LEFT JOIN persistence_ids p ON p.id = e.pid "
  "WHERE NOT (t.tag = ANY(coalesce(string_to_array(e.tags, E'\\x1f'), '{}'))) "
  "ORDER BY t.ordering, t.tag";
constexpr const char* sql_orphaned_tag_rows =
  "SELECT t.tag, count(*) FROM event_tags t "
  "WHERE NOT EXISTS (SELECT 1 FROM events e WHERE e.ordering = t.ordering) "
  "GROUP BY t.tag ORDER BY t.tag";

class postgres_source final : public journal_source {
public:
  postgres_source(std::unique_ptr<pg::connection> c, std::string name)
    : c_(std::move(c)), name_(std::move(name)) {}

  const std::string& name() const override { return name_; }
  const journal_dialect& dialect() const override { return postgres_dialect; }

  using journal_source::each;
  expected<void> each(const std::string& sql, const std::vector<sql_param>& params,
                      const row_fn& row) override {
    pg::params p;
    for (auto& x : params)
      if (auto* i = std::get_if<std::int64_t>(&x))
        p.int8(*i);
      else
        p.text(std::get<std::string>(x));
    auto cursor = "DECLARE troupe_journal_rows NO SCROLL CURSOR FOR " + placeholders(sql);
    auto declared = c_->exec(cursor.c_str(), p, "cannot query the journal");
    if (!declared)
      return std::move(declared).error();
    for (;;) {
      auto page = c_->exec(fetch_.c_str(), {}, "cannot read the journal");
      if (!page)
        return std::move(page).error();
      for (int i = 0; i < page->rows(); ++i)
        row(pg_row{*page, i});
      if (page->rows() < page_rows)
        break;
    }
    return c_->run("CLOSE troupe_journal_rows");
  }

  expected<void> location_stats(json& j) override {
    j["server"] = name_;
    return each("SELECT current_schema()", [&](const journal_row& r) { j["schema"] = r.text(0); });
  }

  expected<void> store_stats(json& j) override {
    return each(
      "SELECT current_setting('server_version'), current_setting('synchronous_commit'), "
      "(SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint FROM pg_class c "
      " JOIN pg_namespace n ON n.oid = c.relnamespace "
      " WHERE n.nspname = current_schema() AND c.relkind = 'r'), "
      "pg_total_relation_size('events')::bigint",
      [&](const journal_row& r) {
        j["server_version"] = r.text(0);
        j["synchronous_commit"] = r.text(1);
        j["table_bytes"] = r.integer(2);  // tables, their indexes and TOAST
        j["events_table_bytes"] = r.integer(3);
      });
  }

  /// The metadata rows, and tag rows against the events' tags columns (tags are
  /// text in event_tags here, not rows of a tags table).
  expected<void> store_checks(verify_report& v) override {
    auto ok = each("SELECT (SELECT count(*) FROM journal_meta WHERE key = 'highest_offset'), "
                   "(SELECT count(*) FROM journal_meta WHERE key = 'journal_id')",
                   [&](const journal_row& r) {
                     if (r.integer(0) == 0)
                       v.problem("metadata: journal_meta 'highest_offset' is missing");
                     if (r.integer(1) == 0)
                       v.problem("metadata: journal_meta 'journal_id' is missing");
                   });
    if (!ok)
      return ok;
    ok = each(sql_orphaned_tag_rows, [&](const journal_row& r) {
      v.problem("orphaned tag rows: {} event_tags row(s) of tag '{}' point to missing events",
                r.integer(1), r.shown(0));
    });
    if (!ok)
      return ok;
    ok = each(sql_untagged_rows, [&](const journal_row& r) {
      v.problem("missing tag row: '{}' seq {} offset {} lists tag '{}' but event_tags has no row "
                "for it (events_by_tag skips the event)",
                r.shown(0), r.shown(1), r.integer(2), r.shown(3));
    });
    if (!ok)
      return ok;
    return each(sql_stray_tag_rows, [&](const journal_row& r) {
      v.problem("stray tag row: event_tags files '{}' seq {} offset {} under tag '{}', which its "
                "tags column does not list",
                r.shown(0), r.shown(1), r.integer(2), r.shown(3));
    });
  }

private:
  /// The shared statements write parameters ?1, ?2 (SQLite's form); PostgreSQL's
  /// is $1, $2. None of them holds a '?' otherwise.
  static std::string placeholders(std::string sql) {
    for (std::size_t i = 0; i + 1 < sql.size(); ++i)
      if (sql[i] == '?' && sql[i + 1] >= '0' && sql[i + 1] <= '9')
        sql[i] = '$';
    return sql;
  }

  std::unique_ptr<pg::connection> c_;
  std::string name_;
  const std::string fetch_ = fmt::format("FETCH {} FROM troupe_journal_rows", page_rows);
};

} // namespace

expected<std::unique_ptr<journal_source>> open_postgres_source(const std::string& uri) {
  auto c = pg::connection::open({uri, "troupe-journal-tool", 10});
  if (!c) {
    // The connection layer's advice names the nodes' setting; here the URI is --db.
    auto message = c.error().message();
    std::string_view key = "persistence.journal.postgres.uri";
    for (auto at = message.find(key); at != std::string::npos; at = message.find(key))
      message.replace(at, key.size(), "the --db URI");
    return error{c.error().code(), std::move(message)};
  }
  // Refuses a schema that holds no troupe journal or a newer troupe's; sets the
  // session read-only. Never creates or migrates.
  if (auto info = pg::prepare_schema(**c, true); !info)
    return std::move(info).error();
  if (auto ok = (*c)->run("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"); !ok)
    return std::move(ok).error();
  auto schema = (*c)->exec("SELECT current_schema()", {}, "cannot read the current schema");
  if (!schema)
    return std::move(schema).error();
  auto server = (*c)->server();  // 'postgresql://user@host:port/db'
  if (server.size() >= 2 && server.front() == '\'' && server.back() == '\'')
    server = server.substr(1, server.size() - 2);
  auto name = fmt::format("{}, schema {}", server, schema->text(0, 0));
  return std::unique_ptr<journal_source>{new postgres_source{std::move(*c), std::move(name)}};
}

} // namespace troupe::tools
