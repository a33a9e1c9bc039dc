// The `troupe journal` tool on a PostgreSQL journal: the real binary against the
// real throwaway server (pg_server.hpp), on journals written through the backend
// and then damaged with raw SQL. The SQLite side is tool_test.cpp.
#include "conformance_backends.hpp"

#include "journal_source.hpp"
#include "troupe_tool.hpp"

#include "support/free_ports.hpp"

#include <doctest/doctest.h>

using namespace troupe;
using namespace troupe::persistence;
using namespace troupe::test;

namespace {

/// tool_test.cpp's healthy journal, on PostgreSQL: two ids with tagged events
/// (offsets 1..8), one deleted prefix, snapshots.
void healthy_pg_journal(const std::string& uri) {
  auto j = postgres_journal::open(postgres_options{.uri = uri, .pool_size = 1});
  REQUIRE_MESSAGE(j, (j ? std::string{} : j.error().to_string()));
  std::vector<atomic_write> batch{make_write("acct|a", 1, 5, {"acct"}), make_write("acct|b", 1, 3)};
  for (auto& r : (*j)->write(std::span<const atomic_write>{batch}))
    REQUIRE(r);
  REQUIRE((*j)->delete_events_to("acct|a", 2));
  REQUIRE((*j)->save(make_snapshot("acct|a", 4)));
  REQUIRE((*j)->save(make_snapshot("acct|b", 3)));
}

nlohmann::json stats_of(const std::string& uri) {
  auto r = troupe_journal({"stats", "--db", uri});
  INFO(r.text());
  REQUIRE(r.status == 0);
  std::string text;
  for (auto& l : r.lines)
    text += l;
  return nlohmann::json::parse(text);
}

/// The URI with another password (the server's URI is postgresql://user:pw@...).
std::string with_password(const std::string& uri, const std::string& password) {
  auto at = uri.find('@');
  auto colon = uri.rfind(':', at);
  REQUIRE(at != std::string::npos);
  return uri.substr(0, colon + 1) + password + uri.substr(at);
}

} // namespace

TEST_CASE("troupe journal on PostgreSQL: list, events, verify and stats render a journal the "
          "backend wrote") {
  pg_schema schema;
  healthy_pg_journal(schema.uri());
  auto& uri = schema.uri();

  auto list = troupe_journal({"list", "--db", uri});
  INFO(list.text());
  CHECK(list.status == 0);
  CHECK(list.lines == std::vector<std::string>{"acct|a\tevents=3\thighest_seq=5",
                                                "acct|b\tevents=3\thighest_seq=3"});

  auto events = troupe_journal({"events", "--db", uri, "--id", "acct|a", "--limit", "2"});
  INFO(events.text());
  CHECK(events.status == 0);
  REQUIRE(events.lines.size() == 2);
  auto first = nlohmann::json::parse(events.lines[0]);
  CHECK(first["offset"] == 3);
  CHECK(first["persistence_id"] == "acct|a");
  CHECK(first["seq"] == 3);
  CHECK(first["manifest"] == "test.event");
  CHECK(first["version"] == 1);
  CHECK(first["payload"] == nlohmann::json{{"v", 3}});
  CHECK(first["tags"] == nlohmann::json::array({"acct"}));
  CHECK(first["writer"] == "writer-1");
  CHECK(nlohmann::json::parse(events.lines[1])["seq"] == 4);

  // An entity id is resolved to its persistence id, as on SQLite.
  auto by_entity = troupe_journal({"events", "--db", uri, "--id", "b"});
  CHECK(by_entity.status == 0);
  CHECK(by_entity.has("note: --id 'b' is persistence id 'acct|b'"));
  CHECK(by_entity.has(R"("persistence_id":"acct|b","seq":3,)"));
  auto tagged = troupe_journal({"events", "--db", uri, "--tag", "acct"});
  CHECK(tagged.lines.size() == 3);
  CHECK_FALSE(tagged.has("acct|b"));
  auto after = troupe_journal({"events", "--db", uri, "--from-offset", "3"});
  CHECK(after.lines.size() == 5);  // a|4, a|5 and b|1..3
  auto untagged = troupe_journal({"events", "--db", uri, "--id", "acct|b", "--limit", "1"});
  CHECK(untagged.has(R"("tags":[])"));

  // postgres:// names a PostgreSQL journal too.
  auto verify = troupe_journal({"verify", "--db", "postgres://" + uri.substr(uri.find("://") + 3)});
  INFO(verify.text());
  CHECK(verify.status == 0);
  CHECK(verify.has("verify: ok (6 events, 2 persistence ids, 2 snapshots)"));

  auto doc = stats_of(uri);
  CHECK(doc["schema"] == schema.name());
  CHECK(doc["server"].get<std::string>().starts_with("postgresql://"));
  CHECK(doc["server"].get<std::string>().find(":troupe@") == std::string::npos);  // no password
  CHECK(doc["schema_version"] == 1);
  CHECK(doc["events"] == 6);
  CHECK(doc["persistence_ids"] == 2);
  CHECK(doc["snapshots"] == 2);
  CHECK(doc["highest_offset"] == 8);
  CHECK(doc["journal_id"].get<std::int64_t>() > 0);
  CHECK(doc["tags"] == nlohmann::json{{"acct", 3}});
  CHECK(doc["event_payload_bytes"].get<std::int64_t>() > 0);
  CHECK(doc["table_bytes"].get<std::int64_t>() > 0);
  CHECK(doc["synchronous_commit"] == "on");
}

TEST_CASE("troupe journal verify on PostgreSQL: reports each damaged row and exits 1") {
  pg_schema schema;
  healthy_pg_journal(schema.uri());
  pg_session db{schema.uri()};
  auto pid = [&](const char* name) {
    return db.sql(fmt::format("SELECT id FROM persistence_ids WHERE name = '{}'", name));
  };
  auto a = pid("acct|a"), b = pid("acct|b");
  // A gap: a|4 vanishes without a delete (its tag row stays, pointing nowhere).
  db.sql("DELETE FROM events WHERE seq = 4 AND pid = " + a);
  // An undecodable payload.
  db.sql("UPDATE events SET payload = '\\xff0102' WHERE seq = 2 AND pid = " + b);
  // A row no writer makes: past a gap, version 0, no manifest, an offset above the
  // recorded highest, a payload that is not CBOR.
  db.sql("INSERT INTO events VALUES (20, " + b + ", 5, '', 0, '\\xff', NULL, 'w', 0)");
  // Events of a persistence id row that does not exist.
  db.sql("INSERT INTO events VALUES (21, 999, 1, 'm', 1, '\\xa0', NULL, 'w', 0),"
         " (22, 999, 2, 'm', 1, '\\xa0', NULL, 'w', 0)");
  db.sql("UPDATE journal_meta SET value = 22 WHERE key = 'highest_offset'");
  // The tags column and event_tags disagree both ways.
  db.sql("UPDATE events SET tags = 'acct' || chr(31) || 'vip' WHERE seq = 5 AND pid = " + a);
  db.sql("INSERT INTO event_tags VALUES ('stray', 6)");
  // A snapshot above the highest seq.
  db.sql("INSERT INTO snapshots VALUES (" + b + ", 9, 0, 'm', 1, '\\xa0')");
  // A duplicate seq (possible once the unique index is gone) at an offset above seq 5's.
  db.sql("DROP INDEX events_pid_seq");
  db.sql("INSERT INTO events SELECT 23, pid, seq, manifest, version, payload, tags, writer, "
         "timestamp_ms FROM events WHERE seq = 3 AND pid = " + b);
  db.sql("UPDATE journal_meta SET value = 19 WHERE key = 'highest_offset'");

  auto r = troupe_journal({"verify", "--db", schema.uri()});
  INFO(r.text());
  CHECK(r.status == 1);
  CHECK(r.missing({
          "gap: 'acct|a' seq 4..4 missing (not deleted)",
          "orphaned tag rows: 1 event_tags row(s) of tag 'acct' point to missing events",
          "undecodable event: 'acct|b' seq 2 offset 7: payload is not CBOR (ff0102)",
          "gap: 'acct|b' seq 4..4 missing (not deleted)",
          "damaged event: 'acct|b' seq 5: version 0 is not an integer in 1..4294967295",
          "damaged event: 'acct|b' seq 5: the manifest is empty",
          "undecodable event: 'acct|b' seq 5 offset 20",
          "offsets: 4 events have an offset above the recorded highest offset",
          "orphaned events: 2 event(s), seq 1..2, belong to persistence id row 999",
          "missing tag row: 'acct|a' seq 5 offset 5 lists tag 'vip' but event_tags has no row",
          "stray tag row: event_tags files 'acct|b' seq 1 offset 6 under tag 'stray'",
          "orphaned snapshot: 'acct|b' seq 9 is above the highest seq 5",
          "duplicate event: 'acct|b' seq 3 is stored more than once (offsets 8 and 23)",
          // Recovery reads an id's events by seq, queries by offset: the orders must agree.
          "offsets: 'acct|b' seq 5 has offset 20, below the offset 23 of the seq before it",
          "verify: 14 problem(s) in 'postgresql://",
          ", schema " + schema.name() + "'",
        })
        == "");

  // `events` renders every row as stored, damaged or orphaned.
  auto events = troupe_journal({"events", "--db", schema.uri(), "--from-offset", "19"});
  INFO(events.text());
  CHECK(events.status == 0);
  CHECK(events.lines.size() == 4);
  CHECK(events.has(R"("offset":20,"persistence_id":"acct|b","seq":5,"manifest":"","version":0)"));
  CHECK(events.has(R"("payload":{"undecodable":"ff"})"));
  CHECK(events.has(R"("persistence_id":null,"orphaned_pid":999,"seq":1)"));
  CHECK(troupe_journal({"events", "--db", schema.uri(), "--id", "acct|a"})
          .has(R"("tags":["acct","vip"])"));
  CHECK(troupe_journal({"list", "--db", schema.uri()}).status == 0);
  CHECK(troupe_journal({"stats", "--db", schema.uri()}).status == 0);
}

TEST_CASE("troupe journal on PostgreSQL reads in a read-only transaction: even a write it were "
          "asked to make is refused") {
  pg_schema schema;
  healthy_pg_journal(schema.uri());
  pg_session{schema.uri()}.sql(
    "CREATE FUNCTION sneaky_write() RETURNS int LANGUAGE sql AS "
    "$$ INSERT INTO fences VALUES ('sneaky', 1) RETURNING 1 $$");
  auto source = tools::open_postgres_source(schema.uri());
  REQUIRE_MESSAGE(source, (source ? std::string{} : source.error().to_string()));
  std::string read_only;
  REQUIRE((*source)->each("SELECT current_setting('transaction_read_only')",
                          [&](const tools::journal_row& r) { read_only = r.text(0); }));
  CHECK(read_only == "on");
  auto write = (*source)->each("SELECT sneaky_write()", [](const tools::journal_row&) {});
  REQUIRE_FALSE(write);
  CHECK(write.error().message().find("read-only transaction") != std::string::npos);
  source->reset();
  CHECK(pg_session{schema.uri()}.sql("SELECT count(*) FROM fences") == "0");
}

TEST_CASE("troupe journal on PostgreSQL: an unreachable server, wrong credentials, a schema "
          "that is no troupe journal and a newer schema are clear errors") {
  auto base = pg_uri();
  std::vector<std::string> expected;
  std::string uri;
  pg_schema schema;
  std::string tables = "0";  // in the schema, after the tool ran
  SUBCASE("unreachable") {
    auto port = free_ports(1)[0];
    uri = fmt::format("postgresql://troupe:troupe@127.0.0.1:{}/postgres", port);
    expected = {"cannot reach the server", fmt::format("127.0.0.1:{}", port)};
  }
  SUBCASE("wrong password: refused, and the password is never shown") {
    uri = with_password(base, "not-the-password");
    expected = {"refused the credentials"};
  }
  SUBCASE("an empty schema: nothing is created in it") {
    uri = schema.uri();
    expected = {"the current schema holds no troupe journal"};
  }
  SUBCASE("a schema holding other tables") {
    pg_session{schema.uri()}.sql("CREATE TABLE orders(id int)");
    uri = schema.uri();
    expected = {"holds 1 table(s) but no troupe_schema_version, so it is not a troupe journal"};
    tables = "1";
  }
  SUBCASE("a newer troupe's schema is refused, not guessed at") {
    healthy_pg_journal(schema.uri());
    pg_session{schema.uri()}.sql("UPDATE troupe_schema_version SET version = 99");
    uri = schema.uri();
    expected = {"schema version 99", "this troupe knows up to 1"};
    tables = pg_session{base}.sql(
      fmt::format("SELECT count(*) FROM pg_tables WHERE schemaname = '{}'", schema.name()));
  }
  for (auto command : {"list", "events", "verify", "stats"}) {
    auto r = troupe_journal({command, "--db", uri});
    INFO(command << ": " << r.text());
    CHECK(r.status == 1);
    CHECK(r.has("postgres journal '"));
    for (auto& e : expected)
      CHECK(r.has(e));
    CHECK_FALSE(r.has("not-the-password"));
  }
  // The tool created, migrated and changed nothing.
  CHECK(pg_session{base}.sql(fmt::format("SELECT count(*) FROM pg_tables WHERE schemaname = '{}'",
                                         schema.name()))
        == tables);
  CHECK(troupe_journal({"create", "--db", uri}).has("create makes SQLite journals"));
}
