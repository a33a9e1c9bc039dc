// Fault injection of the in-memory backend (memory_journal.hpp).
#include "conformance_backends.hpp"

#include "support/wait.hpp"

#include <doctest/doctest.h>

#include <atomic>
#include <thread>

using namespace troupe;
using namespace troupe::persistence;
using namespace troupe::test;
using namespace std::chrono_literals;

namespace {

std::vector<write_result> write_all(memory_journal& j, std::vector<atomic_write> batch) {
  return j.write(std::span<const atomic_write>{batch});
}

} // namespace

TEST_CASE("memory journal: fail the next N writes of one id, others in the batch are stored") {
  memory_journal j;
  j.fail(journal_op::write, "a", 2);
  auto r = write_all(j, {make_write("a", 1, 1), make_write("b", 1, 1)});
  REQUIRE_FALSE(r[0]);
  CHECK(r[0].error().code() == errc::journal_failure);
  CHECK(r[0].error().message().find("'a'") != std::string::npos);
  CHECK(r[1]);
  CHECK(*j.highest_sequence_nr("a") == 0);  // a failed write stores nothing
  CHECK_FALSE(write_all(j, {make_write("a", 1, 1)})[0]);
  CHECK(write_all(j, {make_write("a", 1, 1)})[0]);  // the third one passes
  CHECK(*j.highest_sequence_nr("a") == 1);
  CHECK(j.calls(journal_op::write) == 4);
}

TEST_CASE("memory journal: reject applies until cleared and to every id when none is given") {
  memory_journal j;
  j.reject(journal_op::write);
  for (auto id : {"x", "y", "z"}) {
    auto r = write_all(j, {make_write(id, 1, 1)});
    REQUIRE_FALSE(r[0]);
    CHECK(r[0].error().code() == errc::journal_rejected);
  }
  j.clear_faults();
  CHECK(write_all(j, {make_write("x", 1, 1)})[0]);
}

TEST_CASE("memory journal: faults on reads, highest seq, deletes, queries and snapshots") {
  memory_journal j;
  REQUIRE(write_all(j, {make_write("a", 1, 3, {"t"})})[0]);
  j.fail(journal_op::read, "a", 1);
  j.reject(journal_op::read_highest_seq, "a", 1);
  j.fail(journal_op::delete_events, "a", 1);
  j.fail(journal_op::query, "", 3);
  j.fail(journal_op::snapshot_save, "a", 1);
  j.fail(journal_op::snapshot_load, "a", 1);
  j.reject(journal_op::snapshot_delete, "a", 1);

  CHECK(j.read_events("a", 1, 3, 10).error().code() == errc::journal_failure);
  CHECK(j.read_events("a", 1, 3, 10)->size() == 3);
  CHECK(j.highest_sequence_nr("a").error().code() == errc::journal_rejected);
  CHECK(*j.highest_sequence_nr("a") == 3);
  CHECK(j.delete_events_to("a", 1).error().code() == errc::journal_failure);
  CHECK(j.read_events("a", 1, 3, 10)->size() == 3);  // nothing deleted
  CHECK(j.events_by_tag("t", 0, 10).error().code() == errc::journal_failure);
  CHECK(j.persistence_ids("", 10).error().code() == errc::journal_failure);
  CHECK(j.highest_offset().error().code() == errc::journal_failure);
  CHECK(j.events_by_tag("t", 0, 10)->size() == 3);
  auto s = make_snapshot("a", 3);
  CHECK(j.save(s).error().code() == errc::journal_failure);
  CHECK(j.save(s));
  CHECK(j.load("a", snapshot_criteria::latest()).error().code() == errc::journal_failure);
  CHECK(j.load("a", snapshot_criteria::latest())->has_value());
  CHECK(j.delete_matching("a", snapshot_criteria::latest()).error().code()
        == errc::journal_rejected);
  CHECK(j.load("a", snapshot_criteria::latest())->has_value());
}

TEST_CASE("memory journal: a fault for one id leaves other ids alone") {
  memory_journal j;
  REQUIRE(write_all(j, {make_write("a", 1, 1), make_write("b", 1, 1)})[0]);
  j.fail(journal_op::read, "a");
  CHECK_FALSE(j.read_events("a", 1, 1, 10));
  CHECK(j.read_events("b", 1, 1, 10));
  CHECK_FALSE(j.read_events("a", 1, 1, 10));  // no `times`: until cleared
}

TEST_CASE("memory journal: a delay blocks the call until it expires or faults are cleared") {
  memory_journal j;
  REQUIRE(write_all(j, {make_write("a", 1, 1)})[0]);
  j.delay(journal_op::read, 1h, "a", 1);
  std::atomic<bool> returned{false};
  std::thread reader{[&] {
    auto r = j.read_events("a", 1, 1, 10);
    CHECK(r);
    CHECK(r->size() == 1);  // a delay proceeds normally afterwards
    returned = true;
  }};
  REQUIRE(wait_until([&] { return j.calls(journal_op::read) == 1; }));
  CHECK_FALSE(returned.load());
  CHECK(j.read_events("a", 1, 1, 10));  // other calls are not held up
  j.clear_faults();
  reader.join();
  CHECK(returned.load());

  // A short delay expires by itself.
  j.delay(journal_op::read_highest_seq, std::chrono::milliseconds{20}, "", 1);
  CHECK(*j.highest_sequence_nr("a") == 1);
}

TEST_CASE("memory journal: a delayed write blocks the batch, then stores it") {
  memory_journal j;
  j.delay(journal_op::write, 1h, "slow", 1);
  std::vector<write_result> results;
  std::thread writer{[&] { results = write_all(j, {make_write("slow", 1, 1), make_write("fast", 1, 1)}); }};
  REQUIRE(wait_until([&] { return j.calls(journal_op::write) == 2; }));
  CHECK(*j.highest_sequence_nr("fast") == 0);
  j.clear_faults();
  writer.join();
  REQUIRE(results.size() == 2);
  CHECK(results[0]);
  CHECK(results[1]);
  CHECK(*j.highest_sequence_nr("slow") == 1);
}
