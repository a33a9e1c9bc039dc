// What only the SQLite backend has: files, durability settings, schema,
// storage-level bad input (full disk, read-only or missing files, corrupt rows),
// and several processes sharing one journal file.
#include "conformance_backends.hpp"
#include "raw_sql.hpp"

#include "troupe/persistence/journal_service.hpp"

#include "support/child_process.hpp"
#include "support/node_fixture.hpp"
#include "support/temp_dir.hpp"
#include "support/wait.hpp"

#include <doctest/doctest.h>
#include <sqlite3.h>

#include <cstdio>
#include <fstream>
#include <set>

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

using namespace troupe;
using namespace troupe::persistence;
using namespace troupe::test;

namespace {

sqlite_options options_for(const std::string& path) {
  sqlite_options o;
  o.path = path;
  o.create_if_missing = true;
  return o;
}

/// Makes a file immutable (read-only even for root) while alive, if the file
/// system and our privileges allow it.
class immutable_file {
public:
  explicit immutable_file(const std::string& path) : path_(path) { ok_ = set(true); }
  ~immutable_file() {
    if (ok_)
      set(false);
  }
  bool ok() const { return ok_; }

private:
  bool set(bool on) {
    int fd = ::open(path_.c_str(), O_RDONLY);
    if (fd < 0)
      return false;
    int flags = 0;
    bool done = ::ioctl(fd, FS_IOC_GETFLAGS, &flags) == 0;
    if (done) {
      flags = on ? (flags | FS_IMMUTABLE_FL) : (flags & ~FS_IMMUTABLE_FL);
      done = ::ioctl(fd, FS_IOC_SETFLAGS, &flags) == 0;
    }
    ::close(fd);
    return done;
  }
  std::string path_;
  bool ok_ = false;
};

} // namespace

TEST_CASE("sqlite journal: a missing directory is an io_error naming the path") {
  temp_dir dir;
  auto path = dir.file("no-such-dir/journal.db");
  auto j = sqlite_journal::open(options_for(path));
  REQUIRE_FALSE(j);
  CHECK(j.error().code() == errc::io_error);
  CHECK(mentions(j.error(), path));
}

TEST_CASE("sqlite journal: a missing file is created, or not_found when creation is off") {
  temp_dir dir;
  auto path = dir.file("journal.db");
  auto opts = options_for(path);
  opts.create_if_missing = false;
  auto j = sqlite_journal::open(opts);
  REQUIRE_FALSE(j);
  CHECK(j.error().code() == errc::not_found);
  CHECK(mentions(j.error(), path));
  CHECK_FALSE(std::filesystem::exists(path));
  opts.create_if_missing = true;
  REQUIRE(sqlite_journal::open(opts));
  CHECK(std::filesystem::exists(path));
}

TEST_CASE("sqlite journal: a file that is not a troupe journal is refused, naming the path") {
  temp_dir dir;
  auto garbage = dir.file("garbage.db");
  std::ofstream{garbage} << std::string(8192, 'x');
  auto j = sqlite_journal::open(options_for(garbage));
  REQUIRE_FALSE(j);
  CHECK(j.error().code() == errc::invalid_config);
  CHECK(mentions(j.error(), garbage));

  auto other = dir.file("other.db");
  raw_exec(other, "CREATE TABLE customers(id INTEGER PRIMARY KEY, name TEXT)");
  j = sqlite_journal::open(options_for(other));
  REQUIRE_FALSE(j);
  CHECK(j.error().code() == errc::invalid_config);
  CHECK(mentions(j.error(), other));
  CHECK(mentions(j.error(), "not a troupe journal"));
  // Nothing was added to the foreign file.
  CHECK(raw_query(other, "SELECT count(*) FROM sqlite_master") == "1");
}

TEST_CASE("sqlite journal: a schema newer than this build is refused") {
  temp_dir dir;
  auto path = dir.file("journal.db");
  REQUIRE(sqlite_journal::open(options_for(path)));
  raw_exec(path, "UPDATE schema_version SET version = 99");
  auto j = sqlite_journal::open(options_for(path));
  REQUIRE_FALSE(j);
  CHECK(j.error().code() == errc::unsupported_version);
  CHECK(mentions(j.error(), path));
  CHECK(mentions(j.error(), "99"));
}

TEST_CASE("sqlite journal: created in WAL mode with a schema_version, reopened with its data") {
  temp_dir dir;
  auto path = dir.file("journal.db");
  {
    auto j = sqlite_journal::open(options_for(path));
    REQUIRE(j);
    CHECK((*j)->options().synchronous == sync_mode::full);  // the durable default
    REQUIRE(write_all(**j, {make_write("a", 1, 3, {"t"})})[0]);
  }
  CHECK(raw_query(path, "PRAGMA journal_mode") == "wal");
  CHECK(raw_query(path, "SELECT version FROM schema_version")
        == std::to_string(sqlite_schema_version));
  auto j = sqlite_journal::open(options_for(path));
  REQUIRE(j);
  CHECK(*(*j)->highest_sequence_nr("a") == 3);
  CHECK((*j)->events_by_tag("t", 0, 10)->size() == 3);
  // Offsets continue after the reopen.
  auto before = *(*j)->highest_offset();
  REQUIRE(write_all(**j, {make_write("a", 4, 4)})[0]);
  CHECK((*j)->read_events("a", 4, 4, 1)->front().offset == before + 1);
}

// The writer stores a batch's writes ordered by persistence id row (index updates in
// key order, docs/persistence-storage.md): each write still gets its own result in
// batch position, one id's writes keep their order, and the batch's offsets are the
// next ones, without gaps.
TEST_CASE("sqlite journal: a batch stored in id order keeps each write's result and each id's order") {
  temp_dir dir;
  auto j = sqlite_journal::open(options_for(dir.file("journal.db")));
  REQUIRE(j);
  // Id rows are made in this order: z, m, a.
  REQUIRE(write_all(**j, {make_write("z", 1, 1), make_write("m", 1, 1), make_write("a", 1, 1)})[0]);
  auto before = *(*j)->highest_offset();
  auto results = write_all(**j, {make_write("a", 2, 3, {"t"}), make_write("m", 2, 2, {"t"}),
                                 make_write("a", 4, 4, {"t"}), make_write("z", 2, 2, {"t"}),
                                 make_write("m", 2, 2, {"t"})});
  REQUIRE(results.size() == 5);
  for (int i = 0; i < 4; ++i)
    CHECK(results[i]);
  REQUIRE_FALSE(results[4]);
  CHECK(results[4].error().code() == errc::sequence_conflict);
  CHECK(*(*j)->highest_offset() == before + 5);
  std::set<offset_type> offsets;
  for (const char* id : {"a", "m", "z"}) {
    auto events = (*j)->read_events(id, 2, 10, 10);
    REQUIRE(events);
    for (std::size_t k = 0; k < events->size(); ++k) {
      CHECK((*events)[k].seq == k + 2);
      if (k > 0)
        CHECK((*events)[k].offset > (*events)[k - 1].offset);
      offsets.insert((*events)[k].offset);
    }
  }
  CHECK(offsets == std::set<offset_type>{before + 1, before + 2, before + 3, before + 4, before + 5});
  auto tagged = (*j)->events_by_tag("t", before, 10);
  REQUIRE(tagged);
  CHECK(tagged->size() == 5);
}

// A fence key spans many ids (a shard): which of two writes under one key is refused
// depends on their order, so a batch with a fenced write is stored in submission
// order, not in id order.
TEST_CASE("sqlite journal: fenced writes of one batch are checked in submission order") {
  temp_dir dir;
  auto j = sqlite_journal::open(options_for(dir.file("journal.db")));
  REQUIRE(j);
  REQUIRE(write_all(**j, {make_write("z", 1, 1)})[0]);  // z gets the lower id row
  auto newer = make_write("a", 1, 1);
  newer.fence = write_fence{"shard-4", 2};
  auto older = make_write("z", 2, 2);
  older.fence = write_fence{"shard-4", 1};
  auto results = write_all(**j, {newer, older});
  REQUIRE(results.size() == 2);
  CHECK(results[0]);
  REQUIRE_FALSE(results[1]);
  CHECK(results[1].error().code() == errc::fenced);
  CHECK(*(*j)->highest_sequence_nr("z") == 1);
  CHECK(*(*j)->fence_epoch("shard-4") == 2);
}

TEST_CASE("sqlite journal: a read-only journal file is an io_error naming the path") {
  temp_dir dir;
  auto path = dir.file("journal.db");
  REQUIRE(sqlite_journal::open(options_for(path)));
  immutable_file ro{path};
  if (!ro.ok()) {
    ::chmod(path.c_str(), 0444);
    if (::geteuid() == 0) {
      MESSAGE("cannot make the file read-only for root here (no FS_IMMUTABLE_FL); skipped");
      return;
    }
  }
  auto j = sqlite_journal::open(options_for(path));
  REQUIRE_FALSE(j);
  CHECK(j.error().code() == errc::io_error);
  CHECK(mentions(j.error(), path));
  CHECK(mentions(j.error(), "read-only"));
  // The tools still read it.
  auto opts = options_for(path);
  opts.read_only = true;
  auto reader = sqlite_journal::open(opts);
  REQUIRE(reader);
  auto r = write_all(**reader, {make_write("a", 1, 1)});
  REQUIRE_FALSE(r[0]);
  CHECK(r[0].error().code() == errc::journal_rejected);
}

TEST_CASE("sqlite journal: a full disk fails the whole batch with a clear error, storing nothing") {
  temp_dir dir;
  auto path = dir.file("journal.db");
  auto opts = options_for(path);
  opts.synchronous = sync_mode::off;  // about space, not durability
  opts.max_page_count = 40;
  auto j = sqlite_journal::open(opts);
  REQUIRE(j);
  REQUIRE(write_all(**j, {make_write("kept", 1, 1)})[0]);
  auto offset_before = *(*j)->highest_offset();
  // Large payloads: this batch cannot fit in 40 pages of 4 KiB.
  std::vector<atomic_write> batch;
  for (int i = 0; i < 10; ++i) {
    auto w = make_write(id_of("big-", i), 1, 2, {"big"});
    for (auto& e : w.events)
      e.payload.assign(20'000, 0xa0);
    batch.push_back(std::move(w));
  }
  auto r = (*j)->write(std::span<const atomic_write>{batch});
  REQUIRE(r.size() == 10);
  for (auto& x : r) {
    REQUIRE_FALSE(x);
    CHECK(x.error().code() == errc::journal_failure);
    CHECK(mentions(x.error(), path));
    CHECK(mentions(x.error(), "full"));
  }
  for (int i = 0; i < 10; ++i)
    CHECK(*(*j)->highest_sequence_nr(id_of("big-", i)) == 0);
  CHECK((*j)->events_by_tag("big", 0, 100)->empty());
  CHECK(*(*j)->highest_offset() == offset_before);
  auto ids = (*j)->persistence_ids("", 100);
  CHECK(*ids == std::vector<std::string>{"kept"});
  // The journal keeps serving small writes that fit.
  CHECK(write_all(**j, {make_write("kept", 2, 2)})[0]);
  CHECK(*(*j)->highest_sequence_nr("kept") == 2);
  // A snapshot that does not fit fails the same way.
  auto s = make_snapshot("kept", 2);
  s.payload.assign(400'000, 1);
  auto saved = (*j)->save(s);
  REQUIRE_FALSE(saved);
  CHECK(saved.error().code() == errc::journal_failure);
  CHECK(mentions(saved.error(), "'kept'"));
}

TEST_CASE("sqlite journal: corrupt rows are returned as stored (decoding is the reader's job)") {
  temp_dir dir;
  auto path = dir.file("journal.db");
  auto j = sqlite_journal::open(options_for(path));
  REQUIRE(j);
  REQUIRE(write_all(**j, {make_write("c", 1, 2)})[0]);
  raw_exec(path, "UPDATE events SET payload = x'ff00fe', manifest = 'no.such.manifest' "
                 "WHERE seq = 2");
  auto events = (*j)->read_events("c", 1, 10, 10);
  REQUIRE(events);
  REQUIRE(events->size() == 2);
  CHECK((*events)[1].manifest == "no.such.manifest");
  CHECK((*events)[1].payload == bytes{0xff, 0x00, 0xfe});
  CHECK_FALSE(codec_registry::cbor_to_json((*events)[1].payload));
}

TEST_CASE("sqlite journal: install_journal opens the configured file and stops with the node") {
  temp_dir dir;
  auto schema = node_config_keys();
  add_config_keys(schema);
  auto path = dir.file("node.db");
  auto n = make_node({"persistence.journal.path=" + path, "persistence.journal.synchronous=normal",
                      "persistence.journal.create-if-missing=true"},
                     schema);
  auto svc = install_journal(*n);
  REQUIRE(svc);
  CHECK(find_journal(*n) == *svc);
  auto sqlite = std::dynamic_pointer_cast<sqlite_journal>((*svc)->journal_ptr());
  REQUIRE(sqlite);
  CHECK(sqlite->options().synchronous == sync_mode::normal);
  CHECK(sqlite->options().path == path);
  event_counter acked;
  (*svc)->write(make_write("n", 1, 1), [&](expected<void> r) {
    if (r)
      acked.add();
  });
  REQUIRE(acked.wait_for(1));
  n->shutdown();
  // The service stopped with the node: new work is refused.
  std::optional<errc> late;
  (*svc)->write(make_write("n", 2, 2), [&](expected<void> r) {
    late = r ? errc::ok : r.error().code();
  });
  CHECK(late == errc::shutting_down);
}

TEST_CASE("sqlite journal: install_journal reports a bad config or path clearly") {
  temp_dir dir;
  auto schema = node_config_keys();
  add_config_keys(schema);
  SUBCASE("missing directory") {
    auto path = dir.file("missing/j.db");
    auto n = make_node({"persistence.journal.path=" + path}, schema);
    auto svc = install_journal(*n);
    REQUIRE_FALSE(svc);
    CHECK(svc.error().code() == errc::io_error);
    CHECK(mentions(svc.error(), path));
  }
  SUBCASE("unknown synchronous mode: the config refuses it before any journal opens") {
    config cfg{schema};
    auto r = cfg.set_text("persistence.journal.synchronous", "sometimes");
    REQUIRE_FALSE(r);
    CHECK(r.error().code() == errc::invalid_config);
    CHECK(mentions(r.error(), "persistence.journal.synchronous"));
    CHECK(mentions(r.error(), "full, normal, off"));
  }
  SUBCASE("no persistence keys in the schema") {
    auto n = make_node();
    auto svc = install_journal(*n);
    REQUIRE_FALSE(svc);
    CHECK(svc.error().code() == errc::invalid_config);
  }
}

TEST_CASE("sqlite journal: two processes write concurrently to one journal file") {
  temp_dir dir;
  auto path = dir.file("shared.db");
  REQUIRE(sqlite_journal::open(options_for(path)));  // created once, up front
  auto gate = dir.file("gate");
  int gate_fd = ::open(gate.c_str(), O_CREAT | O_RDWR, 0600);
  REQUIRE(gate_fd >= 0);
  REQUIRE(::flock(gate_fd, LOCK_EX) == 0);  // holds both writers at the start line
  constexpr int ids = 20;
  constexpr int events_per_id = 50;
  auto program = program_path("troupe-test-journal-writer");
  std::vector<std::unique_ptr<child_process>> children;
  for (auto name : {"p1", "p2"}) {
    children.push_back(std::make_unique<child_process>(
      program, std::vector<std::string>{path, name, std::to_string(ids),
                                        std::to_string(events_per_id), gate}));
    REQUIRE(children.back()->wait_for_line("ready", std::chrono::seconds{30}));
  }
  ::flock(gate_fd, LOCK_UN);
  ::close(gate_fd);
  for (auto& c : children) {
    auto line = c->wait_for_line("done", std::chrono::seconds{120});
    REQUIRE(line);
    CHECK(*line == fmt::format("done acked={} failed=0", ids * events_per_id));
    CHECK(c->wait() == 0);
  }
  auto j = sqlite_journal::open(options_for(path));
  REQUIRE(j);
  auto all = (*j)->events_by_tag("mp", 0, 1'000'000);
  REQUIRE(all);
  CHECK(all->size() == 2u * ids * events_per_id);
  std::set<std::string> writers;
  for (std::size_t i = 1; i < all->size(); ++i)
    CHECK((*all)[i].offset > (*all)[i - 1].offset);
  for (auto& e : *all)
    writers.insert(e.writer);
  CHECK(writers == std::set<std::string>{"p1", "p2"});
  for (auto name : {"p1", "p2"})
    for (int i = 0; i < ids; ++i) {
      auto events = (*j)->read_events(fmt::format("{}-{}", name, i), 1, max_sequence_nr, 1000);
      REQUIRE(events);
      CHECK(events->size() == events_per_id);
      for (std::size_t k = 0; k < events->size(); ++k)
        CHECK((*events)[k].seq == k + 1);
    }
}

TEST_CASE("sqlite journal: a damaged fence epoch is an error naming the key, never a guess") {
  temp_dir dir;
  auto path = dir.file("journal.db");
  REQUIRE(sqlite_journal::open(options_for(path)));
  raw_exec(path, "INSERT INTO fences(key, epoch) VALUES('shard-9', 'many')");
  auto j = sqlite_journal::open(options_for(path));
  REQUIRE(j);
  auto e = (*j)->fence_epoch("shard-9");
  REQUIRE_FALSE(e);
  CHECK(e.error().code() == errc::decode_failed);
  CHECK(mentions(e.error(), "shard-9"));
  auto w = make_write("a", 1, 1);
  w.fence = write_fence{"shard-9", 1};
  auto r = write_all(**j, {w});
  REQUIRE_FALSE(r[0]);
  CHECK(r[0].error().code() == errc::journal_failure);
  CHECK(*(*j)->highest_sequence_nr("a") == 0);
}
