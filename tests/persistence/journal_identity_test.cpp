// The journal knows its identity (issue 9): a journal file deleted, replaced or
// overwritten under a running node fails persists with a clear error instead of
// acknowledging, logs it once at error level and marks the node unhealthy; a
// missing or empty file is not a journal unless creation was asked for; a journal
// on read-only storage (a mount or a directory) gives a clear error to the node and
// is read by the tools.
#include "entity_fixtures.hpp"
#include "raw_sql.hpp"
#include "replay_counter.hpp"
#include "small_tmpfs.hpp"
#include "troupe_tool.hpp"

#include "troupe/actors/log.hpp"
#include "troupe/persistence/sqlite_journal.hpp"

#include "support/temp_dir.hpp"

#include <fcntl.h>
#include <sys/fsuid.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <mutex>

using namespace troupe;
using namespace troupe::persistence;
using namespace troupe::test;
using namespace std::chrono_literals;
using namespace fx;

namespace {

/// A node on the SQLite journal at `path` with the journal's default creation
/// setting (off); the journal may fail to install.
struct plain_node {
  std::unique_ptr<node> n;
  expected<std::shared_ptr<journal_service>> journal;

  explicit plain_node(const std::string& path, std::vector<std::string> overrides = {})
    : journal(error{errc::internal, "not installed"}) {
    auto schema = node_config_keys();
    add_config_keys(schema);
    auto codec = std::make_shared<codec_registry>();
    register_counter(*codec);
    overrides.push_back("persistence.journal.path=" + path);
    n = make_node(std::move(overrides), std::move(schema), node::options{codec});
    journal = install_journal(*n);
  }
};

/// Error lines one component logged.
struct error_lines {
  std::mutex mtx;
  std::vector<std::string> lines;

  void attach(node& n, std::string component) {
    n.log().add_sink([this, component](const log_record& r) {
      if (r.level == log_level::error && r.component == component) {
        std::lock_guard<std::mutex> guard{mtx};
        lines.emplace_back(r.message);
      }
    });
  }
  std::size_t count() {
    std::lock_guard<std::mutex> guard{mtx};
    return lines.size();
  }
  std::string first() {
    std::lock_guard<std::mutex> guard{mtx};
    return lines.empty() ? std::string{} : lines.front();
  }
};

/// Sends adds until `n` failed; returns how many were acknowledged meanwhile. Call it
/// outside CHECK: CHECK would swallow the exception of its failed REQUIRE and go on.
int adds_until_failures(const entity_ref<counter>& ref, int n, std::vector<error>& errors) {
  int acked = 0;
  REQUIRE(wait_until([&] {
    auto r = ref.ask(fx::add{1}, 10s);
    if (r)
      ++acked;
    else
      errors.push_back(r.error());
    return static_cast<int>(errors.size()) >= n;
  }));
  return acked;
}

void check_node_unhealthy(node& n, const std::string& reason_part) {
  CHECK_FALSE(n.health().healthy());
  auto problems = n.health().problems();
  REQUIRE(problems.size() == 1);
  CHECK(problems[0].component == "persistence.journal");
  CHECK(contains(problems[0].reason, reason_part));
  CHECK(n.metrics().gauge_value("troupe_node_healthy") == 0.0);
  CHECK(n.metrics().gauge_value("troupe_node_unhealthy", {{"component", "persistence.journal"}})
        == 1.0);
}

/// A directory made read-only (mode 0555) for this test, and writable again when
/// the guard ends. Root writes into it anyway (CAP_DAC_OVERRIDE), so as root this
/// thread's file-system uid and gid become 65534 (nobody) while the guard lives
/// (setfsuid: the kernel drops the file capabilities with it), and tools run through
/// launcher() as that user. usable() is false, with why(), where the directory
/// stays writable or the tool cannot run so.
class read_only_directory {
public:
  explicit read_only_directory(std::string dir) : dir_(std::move(dir)) {
    namespace fs = std::filesystem;
    fs::permissions(dir_, fs::perms::owner_read | fs::perms::owner_exec | fs::perms::group_read
                            | fs::perms::group_exec | fs::perms::others_read
                            | fs::perms::others_exec);
    if (::geteuid() == 0) {
      launcher_ = "setpriv --reuid=65534 --regid=65534 --clear-groups ";
      auto probe = troupe_journal({"--version"}, launcher_);
      // ("troupe journal --version" answers with the version of the troupe binary.)
      if (probe.status != 0) {
        why_ = "running as root, which writes into a read-only directory anyway, and the "
               "troupe binary cannot run as uid 65534 with setpriv: "
               + probe.text();
        return;
      }
      old_gid_ = ::setfsgid(nobody);
      old_uid_ = ::setfsuid(nobody);
      dropped_ = true;
      if (static_cast<uid_t>(::setfsuid(static_cast<uid_t>(-1))) != nobody) {
        why_ = "running as root, which writes into a read-only directory anyway, and "
               "setfsuid(65534) was refused";
        return;
      }
    }
    auto probe = dir_ + "/probe";
    if (int fd = ::open(probe.c_str(), O_CREAT | O_EXCL | O_WRONLY, 0600); fd >= 0) {
      ::close(fd);
      ::unlink(probe.c_str());
      why_ = "the directory stays writable for this user (CAP_DAC_OVERRIDE?)";
      return;
    }
    usable_ = true;
  }
  ~read_only_directory() {
    if (dropped_) {
      ::setfsuid(old_uid_);
      ::setfsgid(old_gid_);
    }
    std::error_code ec;
    std::filesystem::permissions(dir_, std::filesystem::perms::owner_all,
                                 std::filesystem::perm_options::add, ec);
  }
  read_only_directory(const read_only_directory&) = delete;
  read_only_directory& operator=(const read_only_directory&) = delete;

  bool usable() const { return usable_; }
  const std::string& why() const { return why_; }
  const std::string& launcher() const { return launcher_; }

private:
  static constexpr uid_t nobody = 65534;
  std::string dir_;
  std::string launcher_;
  std::string why_;
  bool dropped_ = false;
  bool usable_ = false;
  int old_uid_ = 0;
  int old_gid_ = 0;
};

/// Counter "a" with three events in a new journal at `path`, written by a node that
/// then stopped cleanly, which removes the -wal and -shm files.
void write_three_events(const std::string& path) {
  auto n = fx::make_sqlite_node(path);
  auto a = spawn_entity<counter>(*n, "a");
  REQUIRE(a);
  for (int i = 0; i < 3; ++i)
    REQUIRE(a->ask(fx::add{1}, 10s));
}

/// The note `troupe journal` and replay_main print when they fell back to
/// immutable mode.
std::string immutable_note(const std::string& path) {
  return "'" + path + "' is on read-only storage; opened it with SQLite's immutable mode";
}

} // namespace

TEST_CASE("journal identity: files deleted under a running node: nothing more is acknowledged, "
          "one error line, the node is unhealthy, and a restart creates no empty journal") {
  temp_dir dir;
  auto path = dir.file("j.db");
  error_lines logged;
  {
    auto n = fx::make_sqlite_node(path);
    logged.attach(*n, "persistence/journal");
    CHECK(n->health().healthy());
    CHECK(n->metrics().gauge_value("troupe_node_healthy") == 1.0);
    auto a = spawn_entity<counter>(*n, "a");
    REQUIRE(a);
    for (int i = 0; i < 5; ++i)
      REQUIRE(a->ask(fx::add{1}, 10s));
    for (auto suffix : {"", "-wal", "-shm"})
      std::filesystem::remove(path + suffix);
    std::vector<error> errors;
    auto acked = adds_until_failures(*a, 20, errors);
    CHECK(acked == 0);  // not one ack after the deletion
    INFO(errors.front().to_string());
    CHECK(errors.front().code() == errc::journal_failure);
    for (auto& part : {std::string{"counter|a"}, path, std::string{"is lost"},
                       std::string{"deleted or renamed while open"}})
      CHECK(contains(errors.front().message(), part));
    for (auto& e : errors)
      CHECK(contains(e.message(), "counter|a"));
    // Another entity, started before or after: the same.
    auto b = spawn_entity<counter>(*n, "b");
    REQUIRE(b);
    auto rb = b->ask(fx::add{1}, 10s);
    REQUIRE_FALSE(rb);
    CHECK(contains(rb.error().message(), "is lost"));
    check_node_unhealthy(*n, "deleted or renamed while open");
    CHECK(logged.count() == 1);  // once, however many writes failed
    CHECK(contains(logged.first(), path));
    CHECK_FALSE(std::filesystem::exists(path));  // nothing recreated it
  }
  // The restart refuses to create a new, empty journal in its place.
  plain_node again{path};
  REQUIRE_FALSE(again.journal);
  CHECK(again.journal.error().code() == errc::not_found);
  CHECK(contains(again.journal.error().message(), path));
  CHECK(contains(again.journal.error().message(), "does not exist"));
  CHECK(contains(again.journal.error().message(), "create-if-missing"));
  CHECK_FALSE(std::filesystem::exists(path));
}

TEST_CASE("journal identity: only the -wal or -shm file deleted or replaced under a running "
          "node: nothing more is acknowledged, the error names that file, one error line, the "
          "node is unhealthy") {
  // The -wal file holds every commit since the last checkpoint: a node that went on
  // writing into the deleted one acknowledged events that a kill -9 then lost (the
  // audit of issue 9: 105 per entity). A deleted -shm file lets the next process
  // that opens the journal write the -wal without this node's locks.
  temp_dir dir;
  auto path = dir.file("j.db");
  auto wal = path + "-wal";
  error_lines logged;
  {
    auto n = fx::make_sqlite_node(path);
    logged.attach(*n, "persistence/journal");
    auto a = spawn_entity<counter>(*n, "a");
    REQUIRE(a);
    for (int i = 0; i < 5; ++i)
      REQUIRE(a->ask(fx::add{1}, 10s));
    REQUIRE(std::filesystem::exists(wal));
    std::string what;
    SUBCASE("the -wal file deleted") {
      std::filesystem::remove(wal);
      what = "its WAL file '" + wal + "' was deleted or renamed while open";
    }
    SUBCASE("another file renamed over the -wal file") {
      auto other = dir.file("other");
      std::ofstream{other} << "not this journal's WAL";
      std::filesystem::rename(other, wal);
      what = "its WAL file '" + wal + "' now names another file (it was replaced while open)";
    }
    SUBCASE("the -shm file deleted") {
      std::filesystem::remove(path + "-shm");
      what = "its WAL index '" + path + "-shm' was deleted or renamed while open";
    }
    std::vector<error> errors;
    auto acked = adds_until_failures(*a, 20, errors);
    CHECK(acked == 0);  // not one ack after it
    INFO(errors.front().to_string());
    CHECK(errors.front().code() == errc::journal_failure);
    for (auto& part : {std::string{"counter|a"}, std::string{"journal '" + path + "' is lost"},
                       what})
      CHECK(contains(errors.front().message(), part));
    auto b = spawn_entity<counter>(*n, "b");
    REQUIRE(b);
    auto rb = b->ask(fx::add{1}, 10s);
    REQUIRE_FALSE(rb);
    CHECK(contains(rb.error().message(), what));
    check_node_unhealthy(*n, what);
    CHECK(logged.count() == 1);  // once, however many writes failed
    CHECK(contains(logged.first(), what));
  }
  // Stopped cleanly, SQLite copied the open -wal into the journal (a checkpoint):
  // the acknowledged events are all there. (A crash would have lost them unless the
  // -wal was copied back first: docs/persistence-storage.md.)
  auto n = fx::make_sqlite_node(path);
  CHECK(n->health().healthy());
  auto a = spawn_entity<counter>(*n, "a");
  REQUIRE(a);
  auto total = a->ask(fx::get{}, 10s);
  REQUIRE(total);
  CHECK(*total == 5);
  CHECK(a->ask(fx::add{1}, 10s));
}

TEST_CASE("journal identity: a journal replaced (renamed over) or rewritten with another id "
          "fails persists instead of acknowledging them") {
  temp_dir dir;
  auto path = dir.file("j.db");
  auto n = fx::make_sqlite_node(path);
  auto a = spawn_entity<counter>(*n, "a");
  REQUIRE(a);
  REQUIRE(a->ask(fx::add{1}, 10s));
  std::string what;
  SUBCASE("another journal file renamed over the path") {
    auto other = dir.file("other.db");
    REQUIRE(sqlite_journal::open(sqlite_options{.path = other, .create_if_missing = true}));
    std::filesystem::rename(other, path);
    what = "the path now names another file";
  }
  SUBCASE("the journal id rewritten in the file") {
    raw_exec(path, "UPDATE journal_meta SET value = 42 WHERE key = 'journal_id'");
    what = "the file now holds journal id 42";
  }
  std::vector<error> errors;
  auto acked = adds_until_failures(*a, 3, errors);
  CHECK(acked == 0);
  INFO(errors.front().to_string());
  CHECK(contains(errors.front().message(), what));
  check_node_unhealthy(*n, what);
}

TEST_CASE("journal creation: a missing, 0-byte or table-less file is not a journal unless "
          "creation was asked for") {
  temp_dir dir;
  auto path = dir.file("j.db");
  std::string what;
  SUBCASE("missing") {
    what = "the file does not exist";
  }
  SUBCASE("zero bytes") {
    std::ofstream{path}.close();
    what = "the file is empty (0 bytes)";
  }
  SUBCASE("SQLite without tables") {
    raw_exec(path, "PRAGMA user_version = 7");
    what = "holds no database";
  }
  auto size_before = std::filesystem::exists(path) ? std::filesystem::file_size(path) : 0;
  auto j = sqlite_journal::open(sqlite_options{.path = path});
  REQUIRE_FALSE(j);
  CHECK(j.error().code() == errc::not_found);
  CHECK(contains(j.error().message(), what));
  CHECK(contains(j.error().message(), path));
  plain_node refused{path};
  REQUIRE_FALSE(refused.journal);
  CHECK(refused.journal.error().code() == errc::not_found);
  // Nothing was written to the file.
  CHECK((std::filesystem::exists(path) ? std::filesystem::file_size(path) : 0) == size_before);
  // Asked for explicitly, it becomes a journal.
  plain_node created{path, {"persistence.journal.create-if-missing=true"}};
  REQUIRE(created.journal);
  auto a = spawn_entity<counter>(*created.n, "a");
  REQUIRE(a);
  CHECK(a->ask(fx::add{1}, 10s));
}

TEST_CASE("journal on read-only storage: the node says the file is read-only, the tools read it "
          "and say how") {
  small_tmpfs fs{8 << 20};
  if (!fs.mounted()) {
    MESSAGE("skipped: cannot mount a tmpfs here (" << fs.why()
                                                   << "); needs root or CAP_SYS_ADMIN");
    return;
  }
  auto path = fs.file("j.db");
  write_three_events(path);
  REQUIRE(fs.remount(true));
  plain_node refused{path};
  REQUIRE_FALSE(refused.journal);
  CHECK(refused.journal.error().code() == errc::io_error);
  CHECK(contains(refused.journal.error().message(), "the file is read-only (read-only file system)"));
  CHECK(contains(refused.journal.error().message(), path));
  auto verify = troupe_journal({"verify", "--db", path});
  INFO(verify.text());
  CHECK(verify.status == 0);
  CHECK(verify.has("verify: ok (3 events, 1 persistence ids, 0 snapshots)"));
  CHECK(verify.has("troupe journal: note: " + immutable_note(path)));
  auto events = troupe_journal({"events", "--db", path});
  CHECK(events.status == 0);
  CHECK(events.has(R"("persistence_id":"counter|a","seq":3)"));
  std::string out, err;
  CHECK(replay_counter("a", path, out, err) == 0);
  INFO(err);
  CHECK(contains(err, "replay: note: " + immutable_note(path)));
  CHECK(contains(out, R"("seq":3)"));
  REQUIRE(fs.remount(false));
}

TEST_CASE("journal in a read-only directory: troupe journal verify and replay_main open it in "
          "immutable mode and say so") {
  // Not a read-only mount: the file system is writable, the directory is not, so
  // SQLite cannot create the -shm file that a normal read-only open of a WAL
  // journal needs.
  temp_dir dir;
  auto ro = dir.file("ro");
  std::filesystem::create_directory(ro);
  auto path = ro + "/j.db";
  write_three_events(path);
  REQUIRE_FALSE(std::filesystem::exists(path + "-wal"));
  read_only_directory guard{ro};
  if (!guard.usable()) {
    MESSAGE("skipped: " << guard.why());
    return;
  }
  auto verify = troupe_journal({"verify", "--db", path}, guard.launcher());
  INFO(verify.text());
  CHECK(verify.status == 0);
  CHECK(verify.has("verify: ok (3 events, 1 persistence ids, 0 snapshots)"));
  CHECK(verify.has("troupe journal: note: " + immutable_note(path)));
  std::string out, err;
  CHECK(fx::replay_counter("a", path, out, err) == 0);
  INFO(err);
  CHECK(contains(err, "replay: note: " + immutable_note(path)));
  CHECK(contains(out, R"("seq":3)"));
  CHECK(fx::replay_counter("--verify", path, out, err) == 0);
  CHECK(contains(err, "replay: note: " + immutable_note(path)));
  CHECK(contains(out, "verify: ok (1 ids of entity type 'counter', 3 events, 0 snapshots)"));
  // Nothing was created next to it.
  CHECK_FALSE(std::filesystem::exists(path + "-shm"));
  CHECK_FALSE(std::filesystem::exists(path + "-wal"));
}
