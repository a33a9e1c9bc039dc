// journal_service behaviour that needs a controllable backend: group commit while
// the writer is busy, highest_sequence_nr waiting for in-flight writes, stop().
#include "conformance_backends.hpp"

#include "troupe/actors/log.hpp"
#include "troupe/actors/metrics.hpp"
#include "troupe/persistence/journal_service.hpp"

#include "support/wait.hpp"

#include <doctest/doctest.h>

#include <atomic>
#include <mutex>
#include <optional>
#include <string>
#include <vector>
#include <thread>

using namespace troupe;
using namespace troupe::persistence;
using namespace troupe::test;
using namespace std::chrono_literals;

namespace {

struct service_fixture {
  std::shared_ptr<memory_journal> backend = std::make_shared<memory_journal>();
  std::shared_ptr<logger> log = [] {
    logger::options opts;
    opts.level = log_level::off;
    return *logger::make(opts);
  }();
  metrics_registry metrics;
  std::shared_ptr<journal_service> svc;

  explicit service_fixture(journal_service::options opts = {}) {
    svc = journal_service::start(backend, backend, opts, *log, metrics);
  }
  ~service_fixture() {
    backend->clear_faults();
    svc->stop();
  }

  std::uint64_t batches() {
    return metrics.histogram("troupe_persistence_journal_batch_events", {}).read().count;
  }
};

} // namespace

TEST_CASE("journal_service: writes queued while a commit runs go into one batch") {
  service_fixture f;
  // Hold the writer inside the first commit until the faults are cleared.
  f.backend->delay(journal_op::write, 1h, "first", 1);
  event_counter acked;
  std::atomic<int> failed{0};
  auto count = [&](expected<void> r) {
    if (!r)
      failed++;
    acked.add();
  };
  f.svc->write(make_write("first", 1, 1), count);
  REQUIRE(wait_until([&] { return f.backend->calls(journal_op::write) == 1; }));
  for (int i = 0; i < 100; ++i)
    f.svc->write(make_write(id_of("id-", i), 1, 2), count);
  CHECK(acked.value() == 0);  // nothing is acknowledged before its commit
  f.backend->clear_faults();
  REQUIRE(acked.wait_for(101));
  CHECK(failed.load() == 0);
  CHECK(f.batches() == 2);  // the first write, then all 100 queued ones together
  auto hist = f.metrics.histogram("troupe_persistence_journal_batch_events", {}).read();
  CHECK(hist.sum == 201);
}

TEST_CASE("journal_service: a batch never exceeds max_batch_events, but takes a large write whole") {
  journal_service::options opts;
  opts.max_batch_events = 10;
  service_fixture f{opts};
  f.backend->delay(journal_op::write, 1h, "first", 1);
  event_counter acked;
  f.svc->write(make_write("first", 1, 1), [&](expected<void>) { acked.add(); });
  REQUIRE(wait_until([&] { return f.backend->calls(journal_op::write) == 1; }));
  for (int i = 0; i < 25; ++i)
    f.svc->write(make_write(id_of("id-", i), 1, 1), [&](expected<void>) { acked.add(); });
  f.svc->write(make_write("large", 1, 30), [&](expected<void>) { acked.add(); });
  f.backend->clear_faults();
  REQUIRE(acked.wait_for(27));
  // 1 + ceil(25 / 10) batches for the small writes + 1 for the 30-event write.
  CHECK(f.batches() == 5);
  CHECK(*f.backend->highest_sequence_nr("large") == 30);
}

TEST_CASE("journal_service: highest_sequence_nr waits for writes still in flight") {
  service_fixture f;
  f.backend->delay(journal_op::write, 1h, "e", 1);
  event_counter acked;
  f.svc->write(make_write("e", 1, 3), [&](expected<void>) { acked.add(); });
  REQUIRE(wait_until([&] { return f.backend->calls(journal_op::write) == 1; }));
  std::atomic<sequence_nr> highest{99};
  event_counter answered;
  f.svc->highest_sequence_nr("e", [&](expected<sequence_nr> r) {
    highest = r ? *r : 999;
    answered.add();
  });
  // The backend still holds the write: the read must not have answered 0.
  CHECK(answered.value() == 0);
  f.backend->clear_faults();
  REQUIRE(answered.wait_for(1));
  CHECK(highest.load() == 3);
}

TEST_CASE("journal_service: stop() drains queued writes and fails queued reads") {
  journal_service::options opts;
  opts.reader_threads = 1;
  service_fixture f{opts};
  // The only reader is stuck in a delayed read; the writer in a delayed write.
  f.backend->delay(journal_op::read, 1h, "stuck", 1);
  f.backend->delay(journal_op::write, 1h, "w0", 1);
  event_counter reads_done;
  std::atomic<int> shutting_down{0};
  f.svc->read_events("stuck", 1, 10, 10, [&](auto) { reads_done.add(); });
  f.svc->write(make_write("w0", 1, 1), [](expected<void>) {});
  REQUIRE(wait_until([&] {
    return f.backend->calls(journal_op::read) == 1 && f.backend->calls(journal_op::write) == 1;
  }));
  event_counter writes_ok;
  for (int i = 1; i <= 20; ++i)
    f.svc->write(make_write(id_of("w", i), 1, 1), [&](expected<void> r) {
      if (r)
        writes_ok.add();
    });
  for (int i = 0; i < 5; ++i)
    f.svc->highest_offset([&](expected<offset_type> r) {
      if (!r && r.error().code() == errc::shutting_down)
        shutting_down++;
      reads_done.add();
    });
  std::thread stopper{[&] { f.svc->stop(); }};
  CHECK(wait_until([&] { return shutting_down.load() == 5; }));
  f.backend->clear_faults();
  stopper.join();
  CHECK(writes_ok.value() == 20);       // queued writes were committed
  CHECK(shutting_down.load() == 5);     // queued reads were failed
  CHECK(reads_done.value() == 6);       // and the running read finished
  CHECK(*f.backend->highest_sequence_nr("w20") == 1);
}

TEST_CASE("journal_service: callbacks run once each in commit order, a writer op's after "
          "those of the batches before it, while the writer commits the next batch") {
  service_fixture f;
  std::mutex mtx;
  std::vector<std::string> order;
  auto record = [&](std::string what) {
    std::lock_guard<std::mutex> guard{mtx};
    order.push_back(std::move(what));
  };
  event_counter done;
  std::atomic<bool> later_committed_meanwhile{false};
  event_counter slow_started;
  // Hold the writer in the first commit while 100 writes and an op queue up.
  f.backend->delay(journal_op::write, 1h, "first", 1);
  f.svc->write(make_write("first", 1, 1), [&](expected<void> r) {
    CHECK(r);
    record("first");
    done.add();
  });
  REQUIRE(wait_until([&] { return f.backend->calls(journal_op::write) == 1; }));
  for (int i = 0; i < 100; ++i) {
    auto id = id_of("id-", i);
    f.svc->write(make_write(id, 1, 1), [&, id, i](expected<void> r) {
      CHECK(r);
      if (i == 0) {
        // A slow callback of a large batch: the writer goes on meanwhile, and
        // commits the write submitted after this callback started.
        slow_started.add();
        later_committed_meanwhile = wait_until([&] {
          auto h = f.backend->highest_sequence_nr("later");
          return h && *h == 1;
        });
      }
      record(id);
      done.add();
    });
  }
  f.svc->advance_fence("shard-1", 7, [&](expected<void> r) {
    CHECK(r);
    record("fence");
    done.add();
  });
  f.backend->clear_faults();
  REQUIRE(slow_started.wait_for(1));
  f.svc->write(make_write("later", 1, 1), [&](expected<void> r) {
    CHECK(r);
    record("later");
    done.add();
  });
  REQUIRE(done.wait_for(103));
  CHECK(later_committed_meanwhile.load());
  std::vector<std::string> expected_order{"first"};
  for (int i = 0; i < 100; ++i)
    expected_order.push_back(id_of("id-", i));
  expected_order.push_back("fence");
  expected_order.push_back("later");
  f.svc->stop();
  std::lock_guard<std::mutex> guard{mtx};
  CHECK(order == expected_order);  // and nothing ran twice
}

TEST_CASE("journal_service: a throwing callback does not stop the writer") {
  service_fixture f;
  event_counter acked;
  f.svc->write(make_write("a", 1, 1), [](expected<void>) { throw std::runtime_error{"boom"}; });
  f.svc->write(make_write("b", 1, 1), [&](expected<void> r) {
    if (r)
      acked.add();
  });
  REQUIRE(acked.wait_for(1));
}

TEST_CASE("journal_service: a completed write's callback is freed by a thread that submits the "
          "next write, not by the journal's threads") {
  // The submitting threads allocated it; freeing it on the journal's completion
  // thread took their allocator arena's lock against them.
  service_fixture f;
  struct freed_at {
    std::mutex mtx;
    std::optional<std::thread::id> thread;
  };
  auto freed = std::make_shared<freed_at>();
  event_counter acked;
  {
    std::shared_ptr<int> token{new int{0}, [freed](int* p) {
                                 std::lock_guard<std::mutex> guard{freed->mtx};
                                 freed->thread = std::this_thread::get_id();
                                 delete p;
                               }};
    f.svc->write(make_write("a", 1, 1), [&acked, token](expected<void>) { acked.add(); });
  }
  REQUIRE(acked.wait_for(1));
  auto is_freed = [&] {
    std::lock_guard<std::mutex> guard{freed->mtx};
    return freed->thread.has_value();
  };
  CHECK_FALSE(is_freed());  // kept until a submitter comes by
  sequence_nr next = 1;
  REQUIRE(wait_until([&] {
    event_counter done;
    f.svc->write(make_write("b", next++, 1), [&done](expected<void>) { done.add(); });
    REQUIRE(done.wait_for(1));
    return is_freed();
  }));
  std::lock_guard<std::mutex> guard{freed->mtx};
  CHECK(*freed->thread == std::this_thread::get_id());
}

TEST_CASE("journal_service: stop() frees the completed writes' callbacks it still holds") {
  service_fixture f;
  auto alive = std::make_shared<int>(0);
  std::weak_ptr<int> watch = alive;
  event_counter acked;
  f.svc->write(make_write("a", 1, 1),
               [&acked, alive = std::move(alive)](expected<void>) { acked.add(); });
  REQUIRE(acked.wait_for(1));
  CHECK_FALSE(watch.expired());  // kept for the next write to free
  f.svc->stop();
  CHECK(watch.expired());
}

TEST_CASE("journal_service: when no write comes, at most eight completed batches wait to be "
          "freed, the rest are freed where they completed") {
  journal_service::options opts;
  opts.max_batch_events = 1;  // one write per batch
  service_fixture f{opts};
  std::atomic<int> freed{0};
  event_counter acked;
  auto write = [&](const std::string& id) {
    std::shared_ptr<int> token{new int{0}, [&freed](int* p) {
                                 freed++;
                                 delete p;
                               }};
    f.svc->write(make_write(id, 1, 1), [&acked, token](expected<void>) { acked.add(); });
  };
  f.backend->delay(journal_op::write, 1h, "first", 1);
  write("first");
  REQUIRE(wait_until([&] { return f.backend->calls(journal_op::write) == 1; }));
  for (int i = 0; i < 12; ++i)
    write(id_of("id-", i));
  f.backend->clear_faults();
  REQUIRE(acked.wait_for(13));  // 13 batches, no write() after them
  REQUIRE(wait_until([&] { return freed.load() == 13 - 8; }));
  CHECK(freed.load() == 5);
  f.svc->stop();
  CHECK(freed.load() == 13);
}

TEST_CASE("journal_service: failed and rejected writes are counted per result") {
  service_fixture f;
  f.backend->fail(journal_op::write, "bad", 1);
  f.backend->reject(journal_op::write, "rejected", 1);
  event_counter done;
  std::vector<errc> codes(3, errc::ok);
  f.svc->write(make_write("bad", 1, 1), [&](expected<void> r) {
    codes[0] = r ? errc::ok : r.error().code();
    done.add();
  });
  f.svc->write(make_write("rejected", 1, 1), [&](expected<void> r) {
    codes[1] = r ? errc::ok : r.error().code();
    done.add();
  });
  f.svc->write(make_write("good", 1, 1), [&](expected<void> r) {
    codes[2] = r ? errc::ok : r.error().code();
    done.add();
  });
  REQUIRE(done.wait_for(3));
  CHECK(codes == std::vector<errc>{errc::journal_failure, errc::journal_rejected, errc::ok});
  CHECK(f.metrics.counter_value("troupe_persistence_journal_writes_total", {{"result", "failure"}})
        == 1);
  CHECK(f.metrics.counter_value("troupe_persistence_journal_writes_total", {{"result", "rejected"}})
        == 1);
  CHECK(f.metrics.counter_value("troupe_persistence_journal_writes_total", {{"result", "ok"}}) == 1);
}

TEST_CASE("journal_service: a full write queue refuses a write with overloaded and stores nothing") {
  journal_service::options opts;
  opts.max_queued_writes = 3;
  service_fixture f{opts};
  // Hold the writer inside the first commit: the next writes queue up behind it.
  f.backend->delay(journal_op::write, 1h, "first", 1);
  event_counter acked;
  std::atomic<int> failed{0};
  f.svc->write(make_write("first", 1, 1), [&](expected<void> r) {
    if (!r)
      failed++;
    acked.add();
  });
  REQUIRE(wait_until([&] { return f.backend->calls(journal_op::write) == 1; }));
  for (int i = 0; i < 3; ++i)
    f.svc->write(make_write(id_of("q", i), 1, 1), [&](expected<void> r) {
      if (!r)
        failed++;
      acked.add();
    });
  std::optional<expected<void>> refused;
  f.svc->write(make_write("extra", 1, 1), [&](expected<void> r) { refused = std::move(r); });
  // Refused at once, on the caller's thread, naming the write and the key.
  REQUIRE(refused);
  REQUIRE_FALSE(*refused);
  CHECK(refused->error().code() == errc::overloaded);
  CHECK(refused->error().message().find("'extra'") != std::string::npos);
  CHECK(refused->error().message().find("persistence.journal.max-queued-writes")
        != std::string::npos);
  CHECK(f.metrics.counter("troupe_persistence_journal_writes_total", {{"result", "overloaded"}})
          .value()
        == 1);
  f.backend->clear_faults();
  REQUIRE(acked.wait_for(4));
  CHECK(failed == 0);
  CHECK(*f.backend->highest_sequence_nr("extra") == 0);
  // Once the queue drained, writes are taken again.
  std::optional<expected<void>> later;
  event_counter later_done;
  f.svc->write(make_write("extra", 1, 1), [&](expected<void> r) {
    later = std::move(r);
    later_done.add();
  });
  REQUIRE(later_done.wait_for(1));
  CHECK(*later);
}
