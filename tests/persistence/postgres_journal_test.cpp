// What only a networked journal has to survive, on a real PostgreSQL server
// (pg_server.hpp): clear errors at open, a server restarted under load, a
// connection cut mid-commit, and several nodes writing one journal at once.
// The SPI contracts themselves are the conformance suite's (conformance_*.cpp).
#include "postgres_test_support.hpp"

#include "troupe/actors/log.hpp"
#include "troupe/actors/metrics.hpp"
#include "troupe/persistence/journal_service.hpp"

#include "support/free_ports.hpp"
#include "support/wait.hpp"

#include <doctest/doctest.h>

#include <atomic>
#include <future>
#include <map>
#include <mutex>
#include <set>
#include <thread>

using namespace troupe;
using namespace troupe::persistence;
using namespace troupe::test;
using namespace std::chrono_literals;

TEST_CASE("postgres journal: an unreachable server, wrong credentials and a newer schema are "
          "clear errors") {
  auto base = pg_uri();
  SUBCASE("unreachable") {
    auto port = free_ports(1)[0];
    postgres_options opts;
    opts.uri = fmt::format("postgresql://troupe:troupe@127.0.0.1:{}/postgres", port);
    auto j = postgres_journal::open(opts);
    REQUIRE_FALSE(j);
    CHECK(j.error().code() == errc::io_error);
    CHECK(mentions(j.error(), "cannot reach the server"));
    CHECK(mentions(j.error(), fmt::format("127.0.0.1:{}", port)));
  }
  SUBCASE("wrong password: refused, and the password is never in the message") {
    auto at = base.find('@');
    auto colon = base.rfind(':', at);
    REQUIRE(at != std::string::npos);
    postgres_options opts;
    opts.uri = base.substr(0, colon + 1) + "not-the-password" + base.substr(at);
    auto j = postgres_journal::open(opts);
    REQUIRE_FALSE(j);
    CHECK(j.error().code() == errc::unauthorized);
    CHECK(mentions(j.error(), "credentials"));
    CHECK_FALSE(mentions(j.error(), "not-the-password"));
  }
  SUBCASE("a malformed URI, whose password is never in the message") {
    postgres_options opts;
    for (auto uri : {"postgresql://[::1", "postgresql://troupe:s3cret-pw@[::1",
                     "postgresql://troupe:s3cret%2Dpw@[::1/db",
                     "postgresql://troupe@[::1/db?password=s3cret-pw",
                     "postgresql://troupe:s3cret-pw@host/db?bogus_key=1"}) {
      CAPTURE(uri);
      opts.uri = uri;
      auto j = postgres_journal::open(opts);
      REQUIRE_FALSE(j);
      CHECK(j.error().code() == errc::invalid_config);
      CHECK(mentions(j.error(), "persistence.journal.postgres.uri"));
      CHECK_FALSE(mentions(j.error(), "s3cret"));
    }
  }
  SUBCASE("a search_path naming no schema") {
    postgres_options opts;
    opts.uri = with_param(base, "options=-csearch_path%3Dtroupe_no_such_schema");
    auto j = postgres_journal::open(opts);
    REQUIRE_FALSE(j);
    CHECK(j.error().code() == errc::invalid_config);
    CHECK(mentions(j.error(), "search_path 'troupe_no_such_schema'"));
  }
  SUBCASE("a schema written by a newer troupe is refused, not guessed at") {
    pg_schema schema;
    open_journal(schema.uri());
    pg_session{schema.uri()}.sql("UPDATE troupe_schema_version SET version = 99");
    postgres_options opts;
    opts.uri = schema.uri();
    auto j = postgres_journal::open(opts);
    REQUIRE_FALSE(j);
    CHECK(j.error().code() == errc::unsupported_version);
    CHECK(mentions(j.error(), "schema version 99"));
  }
  SUBCASE("a schema holding other tables is not taken over") {
    pg_schema schema;
    pg_session{schema.uri()}.sql("CREATE TABLE orders(id int)");
    postgres_options opts;
    opts.uri = schema.uri();
    auto j = postgres_journal::open(opts);
    REQUIRE_FALSE(j);
    CHECK(j.error().code() == errc::invalid_config);
    CHECK(mentions(j.error(), "not a troupe journal"));
  }
}

TEST_CASE("postgres journal: the schema is created once when several nodes open it at once") {
  pg_schema schema;
  std::vector<std::future<expected<std::shared_ptr<postgres_journal>>>> opening;
  for (int i = 0; i < 4; ++i)
    opening.push_back(std::async(std::launch::async, [&] {
      postgres_options opts;
      opts.uri = schema.uri();
      return postgres_journal::open(opts);
    }));
  std::set<std::int64_t> ids;
  for (auto& f : opening) {
    auto j = f.get();
    REQUIRE_MESSAGE(j, (j ? std::string{} : j.error().to_string()));
    ids.insert((*j)->journal_id());
  }
  CHECK(ids.size() == 1);
  CHECK(pg_session{schema.uri()}.sql("SELECT version FROM troupe_schema_version") == "1");
}

TEST_CASE("postgres journal: offsets increase strictly in commit order with two nodes writing at "
          "once, so a live tag query misses nothing") {
  pg_schema schema;
  auto node_a = open_journal(schema.uri());
  auto node_b = open_journal(schema.uri());
  auto reader = open_journal(schema.uri());
  constexpr int writers_per_node = 2;
  constexpr int batches = 60;
  constexpr int writes_per_batch = 10;
  std::atomic<int> writers_done{0};
  std::atomic<int> failures{0};
  std::atomic<bool> stop_writers{false};
  auto writer = [&](postgres_journal& j, std::string prefix) {
    for (int b = 0; b < batches && !stop_writers; ++b) {
      std::vector<atomic_write> batch;
      for (int w = 0; w < writes_per_batch; ++w)
        batch.push_back(make_write(fmt::format("{}-{}", prefix, w), static_cast<sequence_nr>(b + 1),
                                   static_cast<sequence_nr>(b + 1), {"all"}));
      for (auto& r : write_all(j, std::move(batch)))
        if (!r)
          failures++;
    }
    writers_done++;
  };
  joined_threads writing{stop_writers, {}};  // a failed REQUIRE below joins them
  for (int t = 0; t < writers_per_node; ++t) {
    writing.threads.emplace_back(writer, std::ref(*node_a), fmt::format("a{}", t));
    writing.threads.emplace_back(writer, std::ref(*node_b), fmt::format("b{}", t));
  }
  // A live reader: "after the last offset I saw" must never skip an event that
  // commits later with a lower offset.
  std::vector<event_record> seen;
  offset_type after = 0;
  constexpr auto total = static_cast<std::size_t>(2 * writers_per_node * batches * writes_per_batch);
  auto deadline = std::chrono::steady_clock::now() + 120s;
  while (seen.size() < total && std::chrono::steady_clock::now() < deadline) {
    // Read before the query: a writer that finishes between an empty page and
    // this check committed events that page could not see.
    bool all_written = writers_done == 2 * writers_per_node;
    auto page = reader->events_by_tag("all", after, 500);
    REQUIRE(page);
    for (auto& e : *page) {
      after = e.offset;
      seen.push_back(std::move(e));
    }
    if (page->empty() && all_written)
      break;
  }
  for (auto& t : writing.threads)
    t.join();
  CHECK(failures == 0);
  REQUIRE(seen.size() == total);
  std::set<std::pair<std::string, sequence_nr>> unique;
  for (std::size_t i = 0; i < seen.size(); ++i) {
    if (i > 0)
      CHECK(seen[i].offset == seen[i - 1].offset + 1);  // dense: no offset skipped
    unique.emplace(seen[i].persistence_id, seen[i].seq);
  }
  CHECK(unique.size() == total);
  CHECK(*reader->highest_offset() == total);
}

TEST_CASE("postgres journal: two nodes under one fence: once the new owner advanced it, the old "
          "owner's writes are refused and nothing of them is stored") {
  pg_schema schema;
  auto old_owner = open_journal(schema.uri());
  auto new_owner = open_journal(schema.uri());
  REQUIRE(old_owner->advance_fence("shard-1", 1));
  std::atomic<bool> advanced{false};
  std::atomic<int> acked_after_advance{0};
  std::atomic<sequence_nr> last_acked{0};
  std::promise<error> fenced;
  std::atomic<bool> give_up{false};
  joined_threads writing{give_up, {}};
  writing.threads.emplace_back([&] {
    for (sequence_nr s = 1; !give_up; ++s) {
      auto w = make_write("acct-1", s, s);
      w.fence = write_fence{"shard-1", 1};
      auto was_advanced = advanced.load();
      auto r = write_all(*old_owner, {w});
      if (!r[0]) {
        fenced.set_value(r[0].error());
        return;
      }
      last_acked = s;
      if (was_advanced)
        acked_after_advance++;
    }
  });
  REQUIRE(wait_until([&] { return last_acked >= 20; }, 30s));
  REQUIRE(new_owner->advance_fence("shard-1", 2));
  advanced = true;
  auto f = fenced.get_future();
  REQUIRE(f.wait_for(30s) == std::future_status::ready);
  writing.threads[0].join();
  auto e = f.get();
  CHECK(e.code() == errc::fenced);
  CHECK(mentions(e, "epoch 2"));
  // Nothing written after the advance returned was acknowledged, and exactly the
  // acknowledged events are stored.
  CHECK(acked_after_advance == 0);
  CHECK(stored(*new_owner, "acct-1") == last_acked);
  auto next = last_acked + 1;
  auto w = make_write("acct-1", next, next);
  w.fence = write_fence{"shard-1", 2};
  REQUIRE(write_all(*new_owner, {w})[0]);
  CHECK(*old_owner->fence_epoch("shard-1") == 2);
}

TEST_CASE("postgres journal: a connection cut before COMMIT fails the batch and stores none of it, "
          "and the journal reconnects") {
  pg_schema schema;
  auto j = open_journal(schema.uri());
  REQUIRE(write_all(*j, {make_write("a", 1, 1)})[0]);
  // Hold the offset lock from another session: the next batch waits for it
  // inside its transaction, where the test cuts its connection.
  offset_lock_holder blocker{schema.uri()};
  auto batch = std::async(std::launch::async, [&] {
    return write_all(*j, {make_write("a", 2, 3), make_write("b", 1, 2)});
  });
  // However the test ends, the lock goes before the future's destructor waits.
  at_scope_exit unblock{[&] { blocker.release(); }};
  pg_session killer{schema.uri()};
  auto pid = wait_for_backend(killer, fmt::format("{} = ANY(pg_blocking_pids(pid))", blocker.pid()));
  REQUIRE_FALSE(pid.empty());
  killer.sql("SELECT pg_terminate_backend(" + pid + ")");
  REQUIRE(batch.wait_for(60s) == std::future_status::ready);
  auto r = batch.get();
  blocker.release();
  REQUIRE(r.size() == 2);
  for (auto& x : r) {
    REQUIRE_FALSE(x);
    CHECK(x.error().code() == errc::journal_failure);
    CHECK(mentions(x.error(), "connection to the server was lost"));
  }
  // None of the batch; the next write reconnects and stores.
  CHECK(stored(*j, "a") == 1);
  CHECK(stored(*j, "b") == 0);
  REQUIRE(write_all(*j, {make_write("a", 2, 3)})[0]);
  CHECK(stored(*j, "a") == 3);
}

TEST_CASE("postgres journal: a connection cut during COMMIT reports an unknown outcome, and "
          "recovery sees all of the batch or none") {
  // COMMIT waits for a synchronous standby that never comes; the test cuts the
  // connection during that wait, after the commit is local but before it is
  // acknowledged: the real "did it commit?" case. A private server: the setting
  // is server-wide.
  pg_cluster server;
  pg_schema schema{server.uri()};
  auto j = open_journal(schema.uri());  // before: creating the schema commits too
  pg_session admin{server.uri()};
  admin.sql("ALTER SYSTEM SET synchronous_standby_names = 'nobody'");
  admin.sql("SELECT pg_reload_conf()");
  REQUIRE(wait_until([&] { return admin.sql("SHOW synchronous_standby_names") == "nobody"; }, 30s));
  auto batch = std::async(std::launch::async, [&] {
    return write_all(*j, {make_write("a", 1, 2, {"t"}), make_write("b", 1, 1)});
  });
  // However the test ends, the COMMIT stops waiting (no standby names: the
  // server releases its waiters) before the future's destructor waits for it.
  auto no_standby = [&] {
    pg_exec_quiet(server.uri(), "ALTER SYSTEM RESET synchronous_standby_names");
    pg_exec_quiet(server.uri(), "SELECT pg_reload_conf()");
  };
  at_scope_exit release{no_standby};
  auto pid = wait_for_backend(admin, "wait_event = 'SyncRep'");
  REQUIRE_FALSE(pid.empty());
  admin.sql("SELECT pg_terminate_backend(" + pid + ")");
  REQUIRE(batch.wait_for(60s) == std::future_status::ready);
  auto r = batch.get();
  no_standby();
  REQUIRE(r.size() == 2);
  for (auto& x : r) {
    REQUIRE_FALSE(x);
    CHECK(x.error().code() == errc::journal_failure);
    CHECK(mentions(x.error(), "outcome of this batch of 2 writes is unknown"));
  }
  // All or none, as one: both writes, their tags and the offset together.
  REQUIRE(wait_until([&] { return admin.sql("SHOW synchronous_standby_names").empty(); }, 30s));
  auto a = stored(*j, "a"), b = stored(*j, "b");
  CHECK(((a == 2 && b == 1) || (a == 0 && b == 0)));
  CHECK(j->events_by_tag("t", 0, 10)->size() == a);
  CHECK(*j->highest_offset() == a + b);
  // The writer reconnects; a retry of the batch is a conflict exactly when it was stored.
  auto retry = write_all(*j, {make_write("a", 1, 2), make_write("b", 1, 1)});
  CHECK(static_cast<bool>(retry[0]) == (a == 0));
}

TEST_CASE("postgres journal: a server restarted under load: persists fail clearly, nothing "
          "acknowledged is lost, and the journal reconnects") {
  pg_cluster server;
  pg_schema schema{server.uri()};
  auto j = open_journal(schema.uri());
  auto log = quiet_logger();
  metrics_registry metrics;
  auto svc = journal_service::start(j, j, {}, *log, metrics);
  // Each worker persists one id at a time and moves to a new id after a failure
  // (its outcome is unknown): acknowledged events must all be there afterwards.
  std::mutex mtx;
  std::map<std::string, sequence_nr> acked;  // id -> highest acknowledged seq
  std::vector<error> failures;
  std::atomic<int> acks{0};
  std::atomic<bool> stop{false};
  joined_threads workers{stop, {}};
  for (int t = 0; t < 4; ++t)
    workers.threads.emplace_back([&, t] {
      int generation = 0;
      sequence_nr seq = 1;
      while (!stop) {
        auto id = fmt::format("w{}-{}", t, generation);
        // Shared: after a timeout the callback may still come.
        auto p = std::make_shared<std::promise<expected<void>>>();
        auto answer = p->get_future();
        svc->write(make_write(id, seq, seq), [p](expected<void> r) { p->set_value(std::move(r)); });
        if (answer.wait_for(120s) != std::future_status::ready) {
          std::lock_guard<std::mutex> guard{mtx};
          failures.push_back(error{errc::timeout, "the journal service did not answer in 120 s"});
          return;
        }
        auto r = answer.get();
        std::lock_guard<std::mutex> guard{mtx};
        if (r) {
          acked[id] = seq++;
          acks++;
        } else {
          failures.push_back(r.error());
          ++generation;
          seq = 1;
        }
      }
    });
  REQUIRE(wait_until([&] { return acks >= 200; }, 60s));
  REQUIRE(server.kill());  // immediate shutdown: the server's crash
  REQUIRE(wait_until([&] { std::lock_guard<std::mutex> g{mtx}; return failures.size() >= 4; }, 60s));
  REQUIRE(server.start());
  auto after_restart = acks.load();
  CHECK(wait_until([&] { return acks >= after_restart + 200; }, 60s));
  stop = true;
  for (auto& w : workers.threads)
    w.join();
  svc->stop();
  for (auto& e : failures) {
    CHECK(e.code() == errc::journal_failure);
    CHECK(mentions(e, "postgres journal"));
  }
  // Every acknowledged event is stored, read through connections that also saw
  // the restart.
  std::size_t lost = 0;
  for (auto& [id, seq] : acked) {
    auto events = j->read_events(id, 1, max_sequence_nr, 100000);
    REQUIRE(events);
    if (events->size() < seq)
      lost += seq - events->size();
  }
  CHECK(lost == 0);
}
