// The PostgreSQL journal where the database changes under it or a statement
// cannot finish: a schema recreated or restored behind an open journal, the
// offset lock held by a stuck transaction, deletes from another node, and
// batches larger than one PostgreSQL message. Real server (pg_server.hpp).
#include "postgres_test_support.hpp"

#include <doctest/doctest.h>

#include <future>
#include <random>

using namespace troupe;
using namespace troupe::persistence;
using namespace troupe::test;
using namespace std::chrono_literals;

namespace {

/// `uri` (a pg_schema's: its last parameter is options=-csearch_path%3D...) with
/// one more server setting in that options parameter.
std::string with_setting(const std::string& uri, const std::string& setting) {
  return uri + "%20-c" + setting;
}

/// A URI whose connections carry a unique application_name, so the test can end
/// exactly this journal's connections.
std::string named(const std::string& uri, std::string& name) {
  std::random_device rd;
  name = fmt::format("troupe-test-{:08x}", rd());
  return with_param(uri, "application_name=" + name);
}

void terminate_connections(pg_session& admin, const std::string& name) {
  admin.sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = '"
            + name + "'");
}

} // namespace

TEST_CASE("postgres journal: a schema dropped and created again behind an open journal: after "
          "the reconnect nothing lands under a stale id, and the journal is reported lost") {
  pg_schema schema;
  std::string name;
  auto j = open_journal(named(schema.uri(), name));
  std::vector<error> lost;
  std::mutex mtx;
  j->on_lost([&](const error& e) {
    std::lock_guard<std::mutex> guard{mtx};
    lost.push_back(e);
  });
  REQUIRE(write_all(*j, {make_write("a", 1, 1), make_write("b", 1, 1)})[0]);
  pg_session admin{schema.uri()};
  admin.sql(fmt::format("SET client_min_messages = warning; DROP SCHEMA {0} CASCADE; "
                        "CREATE SCHEMA {0}",
                        schema.name()));
  // Another node creates the journal anew; its first id takes row id 1, 'a''s
  // cached one.
  auto other = open_journal(schema.uri());
  REQUIRE(write_all(*other, {make_write("z", 1, 1)})[0]);
  terminate_connections(admin, name);
  // The first write may only find the connection cut; the next one reconnects.
  auto r = write_all(*j, {make_write("a", 2, 2)});
  if (!r[0] && mentions(r[0].error(), "connection to the server was lost"))
    r = write_all(*j, {make_write("a", 2, 2)});
  REQUIRE_FALSE(r[0]);
  CHECK(r[0].error().code() == errc::journal_failure);
  CHECK(mentions(r[0].error(), "no longer holds the journal"));
  {
    std::lock_guard<std::mutex> guard{mtx};
    REQUIRE(lost.size() == 1);
    CHECK(mentions(lost[0], "no longer holds the journal"));
  }
  // Lost stays lost (reads too: the schema is another journal), the handler ran once.
  CHECK_FALSE(write_all(*j, {make_write("a", 2, 2)})[0]);
  CHECK_FALSE(j->read_events("z", 1, 10, 10));
  CHECK(lost.size() == 1);
  CHECK(admin.sql("SELECT count(*) FROM events") == "1");
  CHECK(stored(*other, "z") == 1);
  CHECK(stored(*other, "a") == 0);
}

TEST_CASE("postgres journal: a database restored under an open journal (same journal id, other "
          "row ids): after the reconnect the writer resolves ids again") {
  pg_schema schema;
  std::string name;
  auto j = open_journal(named(schema.uri(), name));
  REQUIRE(write_all(*j, {make_write("a", 1, 1)})[0]);
  pg_session admin{schema.uri()};
  auto a_id = admin.sql("SELECT id FROM persistence_ids WHERE name = 'a'");
  // The "restored" database: 'a' has another row id and its old one names 'x'.
  admin.sql("DELETE FROM persistence_ids WHERE name = 'a'");
  admin.sql("INSERT INTO persistence_ids(id, name) OVERRIDING SYSTEM VALUE VALUES(" + a_id
            + " + 1000, 'a'), (" + a_id + ", 'x')");
  admin.sql("UPDATE events SET pid = pid + 1000");
  terminate_connections(admin, name);
  auto r = write_all(*j, {make_write("a", 2, 2)});
  if (!r[0] && mentions(r[0].error(), "connection to the server was lost"))
    r = write_all(*j, {make_write("a", 2, 2)});
  REQUIRE_MESSAGE(r[0], r[0].error().to_string());
  CHECK(stored(*j, "a") == 2);
  CHECK(stored(*j, "x") == 0);
  CHECK(admin.sql("SELECT count(*) FROM events e JOIN persistence_ids p ON p.id = e.pid "
                  "WHERE p.name = 'a'")
        == "2");
}

TEST_CASE("postgres journal: a writer blocked on the offset lock fails within lock_timeout with a "
          "clear error, then writes again") {
  pg_schema schema;
  postgres_options opts;
  SUBCASE("lock_timeout from postgres_options (the config key)") {
    opts.uri = schema.uri();
    opts.lock_timeout = 500ms;
  }
  SUBCASE("the URI's options=-clock_timeout%3D... overrides postgres_options") {
    opts.uri = with_setting(schema.uri(), "lock_timeout%3D500");
    opts.lock_timeout = 1h;
  }
  auto j = open_journal(opts);
  REQUIRE(write_all(*j, {make_write("a", 1, 1)})[0]);
  offset_lock_holder stuck{schema.uri()};  // another node's transaction, stuck
  auto start = std::chrono::steady_clock::now();
  auto r = write_all(*j, {make_write("a", 2, 2)});
  auto took = std::chrono::steady_clock::now() - start;
  REQUIRE_FALSE(r[0]);
  CHECK(r[0].error().code() == errc::journal_failure);
  CHECK(mentions(r[0].error(), "cannot lock the highest offset"));
  CHECK(mentions(r[0].error(), "lock timeout"));
  CHECK(mentions(r[0].error(), "nothing of this batch"));
  CHECK(took < 5s);
  stuck.release();
  REQUIRE(write_all(*j, {make_write("a", 2, 2)})[0]);
  CHECK(stored(*j, "a") == 2);
}

TEST_CASE("postgres journal: another node's delete is seen by a writer whose deleted_to cache "
          "is older: a write at or below deleted_to is a sequence_conflict") {
  pg_schema schema;
  SUBCASE("a schema created with its 'deletes' row") {}
  SUBCASE("a schema created before the 'deletes' row existed") {
    open_journal(schema.uri());
    pg_session{schema.uri()}.sql("DELETE FROM journal_meta WHERE key = 'deletes'");
  }
  auto a = open_journal(schema.uri());
  auto b = open_journal(schema.uri());
  REQUIRE(write_all(*a, {make_write("x", 1, 5)})[0]);
  REQUIRE(write_all(*a, {make_write("y", 1, 1)})[0]);  // a cached x's deleted_to (0)
  REQUIRE(b->delete_events_to("x", 5));
  auto r = write_all(*a, {make_write("x", 3, 3), make_write("y", 2, 2)});
  REQUIRE_FALSE(r[0]);
  CHECK(r[0].error().code() == errc::sequence_conflict);
  CHECK(r[1]);
  CHECK(stored(*a, "x") == 0);
  CHECK(*a->highest_sequence_nr("x") == 5);
  REQUIRE(write_all(*a, {make_write("x", 6, 6)})[0]);
}

TEST_CASE("postgres journal: a batch larger than one statement is split, in one transaction, and an "
          "event over the size limit fails its own write only") {
  pg_schema schema;
  postgres_options opts;
  opts.uri = schema.uri();
  opts.max_statement_bytes = 1 << 20;  // 1 MiB per insert statement (64 MiB by default)
  opts.max_event_bytes = 3 << 20;
  auto j = open_journal(opts);
  auto big = [](const std::string& id, sequence_nr seq, std::size_t bytes) {
    auto w = make_write(id, seq, seq, {"big"});
    w.events[0].payload.assign(bytes, static_cast<std::uint8_t>(seq * 7 + id.size()));
    return w;
  };
  std::vector<atomic_write> batch{big("a", 1, 700 << 10), big("b", 1, 700 << 10),
                                  big("c", 1, 2 << 20), big("d", 1, 4 << 20),
                                  big("a", 2, 900 << 10)};
  auto r = write_all(*j, batch);
  REQUIRE(r.size() == 5);
  for (auto i : {0, 1, 2, 4})
    CHECK_MESSAGE(r[static_cast<std::size_t>(i)], i);
  REQUIRE_FALSE(r[3]);
  CHECK(r[3].error().code() == errc::journal_rejected);
  CHECK(mentions(r[3].error(), "'d' seq 1"));
  // Every stored event is whole and in batch order, with dense offsets.
  auto tagged = j->events_by_tag("big", 0, 10);
  REQUIRE(tagged);
  REQUIRE(tagged->size() == 4);
  std::vector<std::size_t> expected_from{0, 1, 2, 4};
  for (std::size_t i = 0; i < tagged->size(); ++i) {
    auto& e = (*tagged)[i];
    auto& w = batch[expected_from[i]];
    CHECK(e.offset == i + 1);
    CHECK(e.persistence_id == w.persistence_id);
    CHECK(e.payload == w.events[0].payload);
  }
  CHECK(*j->highest_offset() == 4);
  CHECK(stored(*j, "d") == 0);
}
