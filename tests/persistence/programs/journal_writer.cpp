// Helper for the multi-process test: writes events for several ids into a shared
// SQLite journal through a journal_service (FULL durability), like entities do
// (each id waits for its ack before the next write).
//
//   troupe-test-journal-writer FILE NAME IDS EVENTS_PER_ID GATE_FILE
//
// Prints "ready" once the journal is open, then waits for a shared lock on
// GATE_FILE (the parent holds it exclusively to start both writers together),
// then writes ids NAME-0..NAME-(IDS-1), tags every event "mp", sets the writer to
// NAME, and prints "done acked=N failed=M".
#include "troupe/actors/log.hpp"
#include "troupe/actors/metrics.hpp"
#include "troupe/persistence/journal_service.hpp"
#include "troupe/persistence/sqlite_journal.hpp"

#include <fmt/core.h>

#include <condition_variable>
#include <cstdio>
#include <deque>
#include <mutex>
#include <string>

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

using namespace troupe;
using namespace troupe::persistence;

int main(int argc, char** argv) {
  if (argc != 6) {
    std::fprintf(stderr, "usage: %s FILE NAME IDS EVENTS_PER_ID GATE_FILE\n", argv[0]);
    return 2;
  }
  std::string path = argv[1];
  std::string name = argv[2];
  int ids = std::stoi(argv[3]);
  int per_id = std::stoi(argv[4]);
  sqlite_options opts;
  opts.path = path;
  opts.busy_timeout = std::chrono::seconds{30};
  opts.create_if_missing = true;
  auto j = sqlite_journal::open(opts);
  if (!j) {
    std::fprintf(stderr, "%s\n", j.error().to_string().c_str());
    return 1;
  }
  logger::options lo;
  lo.node_id = name;
  lo.level = log_level::warn;
  auto log = logger::make(lo);
  metrics_registry metrics;
  auto svc = journal_service::start(*j, *j, {}, **log, metrics);
  std::printf("ready\n");
  std::fflush(stdout);
  int gate = ::open(argv[5], O_RDONLY);
  if (gate < 0 || ::flock(gate, LOCK_SH) != 0) {
    std::perror("gate");
    return 1;
  }

  std::mutex mtx;
  std::condition_variable cv;
  std::deque<int> ready;  // ids whose previous write was acknowledged
  std::vector<int> next_seq(static_cast<std::size_t>(ids), 1);
  int acked = 0, failed = 0;
  for (int i = 0; i < ids; ++i)
    ready.push_back(i);
  std::unique_lock<std::mutex> lock{mtx};
  for (;;) {
    cv.wait(lock, [&] { return !ready.empty() || acked + failed == ids * per_id; });
    if (acked + failed == ids * per_id)
      break;
    auto i = ready.front();
    ready.pop_front();
    auto seq = next_seq[static_cast<std::size_t>(i)]++;
    lock.unlock();
    atomic_write w;
    w.persistence_id = fmt::format("{}-{}", name, i);
    event_record e;
    e.seq = static_cast<sequence_nr>(seq);
    e.manifest = "test.event";
    e.payload = {0xa1, 0x61, 0x76, 0x01};  // CBOR {"v": 1}
    e.tags = {"mp"};
    e.writer = name;
    w.events.push_back(std::move(e));
    svc->write(std::move(w), [&, i, seq](expected<void> r) {
      std::lock_guard<std::mutex> guard{mtx};
      if (r) {
        ++acked;
      } else {
        ++failed;
        std::fprintf(stderr, "%s\n", r.error().to_string().c_str());
      }
      if (seq < per_id)
        ready.push_back(i);
      cv.notify_one();
    });
    lock.lock();
  }
  lock.unlock();
  svc->stop();
  std::printf("done acked=%d failed=%d\n", acked, failed);
  std::fflush(stdout);
  return failed == 0 ? 0 : 1;
}
