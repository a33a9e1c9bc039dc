// Stored data that recovery, replay_main and the tools trip on (issue 9): a
// snapshot above the highest seq is refused naming the id; strings that are not
// UTF-8 persist, recover and are rendered escaped (never an abort); typed verify
// (`replay --verify`) finds events that do not decode with their manifest; damaged
// schema metadata is a clear error everywhere.
#include "../../samples/bank/account.hpp"
#include "entity_fixtures.hpp"
#include "raw_sql.hpp"
#include "troupe_tool.hpp"

#include "troupe/persistence/detail/entity_control.hpp"
#include "troupe/persistence/json_text.hpp"
#include "troupe/persistence/replay_tool.hpp"

#include "support/temp_dir.hpp"

#include <sstream>

using namespace troupe;
using namespace troupe::persistence;
using namespace troupe::test;
using namespace std::chrono_literals;
using namespace fx;

namespace {

/// A node with the bank's types on the SQLite journal at `path` (created).
std::unique_ptr<node> bank_node(const std::string& path) {
  auto schema = node_config_keys();
  add_config_keys(schema);
  auto codec = std::make_shared<codec_registry>();
  bank::register_types(*codec);
  auto n = make_node({"persistence.journal.create-if-missing=true",
                      "persistence.journal.path=" + path},
                     std::move(schema), node::options{codec});
  REQUIRE(install_journal(*n));
  return n;
}

struct replay_output {
  int status = -1;
  std::string out, err;
};

replay_output replay(std::vector<std::string> args) {
  auto codec = std::make_shared<codec_registry>();
  bank::register_types(*codec);
  args.insert(args.begin(), "replay");
  std::vector<const char*> argv;
  for (auto& a : args)
    argv.push_back(a.c_str());
  std::ostringstream out, err;
  replay_output r;
  r.status = replay_main<bank::account>(static_cast<int>(argv.size()), argv.data(), codec, out,
                                        err);
  r.out = out.str();
  r.err = err.str();
  return r;
}

/// acct-1: opened by `owner`, 100 deposited, 30 withdrawn.
void write_bank_journal(const std::string& path, const std::string& owner) {
  auto n = bank_node(path);
  auto acct = spawn_entity<bank::account>(*n, "acct-1");
  REQUIRE(acct);
  REQUIRE(acct->ask(bank::open_account{owner}, 10s));
  REQUIRE(acct->ask(bank::deposit{100}, 10s));
  REQUIRE(acct->ask(bank::withdraw{30}, 10s));
}

} // namespace

TEST_CASE("stored data: recovery refuses a snapshot above the highest seq, naming the id") {
  auto j = std::make_shared<memory_journal>();
  auto n = fx::make_node(j);
  {
    auto ref = spawn_entity<counter>(*n, "s1", entity_options{.snapshot_every = 2});
    REQUIRE(ref);
    for (int i = 0; i < 4; ++i)
      REQUIRE(ref->ask(fx::add{1}, 10s));
    REQUIRE(persistence::detail::stop_and_wait(n->system(), ref->actor(), 10s));
  }
  // The newest snapshot, renumbered above the highest seq (4).
  auto snap = j->load("counter|s1", snapshot_criteria::latest());
  REQUIRE(snap);
  REQUIRE(*snap);
  auto moved = **snap;
  moved.seq = 9;
  REQUIRE(j->save(moved));
  auto ref = spawn_entity<counter>(*n, "s1", entity_options{.snapshot_every = 2});
  REQUIRE(ref);
  auto r = ref->ask(fx::get{}, 10s);
  REQUIRE_FALSE(r);
  INFO(r.error().to_string());
  CHECK(contains(r.error().message(), "counter|s1"));
  CHECK(contains(r.error().message(), "snapshot is at seq 9, above the journal's highest seq 4"));
}

TEST_CASE("stored data: a string ending in ff fe persists, recovers, replays and is listed "
          "escaped, and verify reports it") {
  temp_dir dir;
  auto path = dir.file("bank.db");
  const std::string owner = "ada\xff\xfe";
  write_bank_journal(path, owner);
  {  // recovery folds it as stored
    auto n = bank_node(path);
    auto acct = spawn_entity<bank::account>(*n, "acct-1");
    REQUIRE(acct);
    auto balance = acct->ask(bank::get_balance{}, 10s);
    REQUIRE(balance);
    CHECK(*balance == 70);
  }
  auto r = replay({"acct-1", "--db", path});
  INFO(r.err);
  CHECK(r.status == 0);
  CHECK(contains(r.out, R"({"seq":1,"manifest":"bank.account-opened","event":{"owner":"ada\\xff\\xfe"})"));
  CHECK(contains(r.out, R"("state":{"balance":70,"owner":"ada\\xff\\xfe","status":"open"})"));
  auto events = troupe_journal({"events", "--db", path});
  INFO(events.text());
  CHECK(events.status == 0);
  CHECK(events.lines.size() == 3);
  CHECK(events.has(R"("payload":{"owner":"ada\\xff\\xfe"})"));
  auto verify = troupe_journal({"verify", "--db", path});
  CHECK(verify.status == 1);
  CHECK(verify.has("invalid UTF-8: event 'account|acct-1' seq 1"));
  // Typed verify decodes and folds it (the bytes are what the entity wrote).
  auto typed = replay({"--verify", "--db", path});
  INFO(typed.out);
  CHECK(typed.status == 0);
  CHECK(contains(typed.out, "verify: ok (1 ids of entity type 'account', 3 events, 0 snapshots)"));
}

TEST_CASE("stored data: replay --verify finds events that do not decode with their manifest") {
  temp_dir dir;
  auto path = dir.file("bank.db");
  write_bank_journal(path, "ada");
  CHECK(replay({"--verify", "--db", path}).status == 0);
  // Valid CBOR, so the untyped verify has nothing to say, but not a bank.deposited:
  // {"amount": "ten"}.
  raw_exec(path, "UPDATE events SET payload = x'a166616d6f756e746374656e' WHERE seq = 2");
  CHECK(troupe_journal({"verify", "--db", path}).status == 0);
  auto r = replay({"--verify", "--db", path});
  INFO(r.out);
  CHECK(r.status == 1);
  CHECK(contains(r.out, "account|acct-1 seq 2"));
  CHECK(contains(r.out, "bank.deposited"));
  CHECK(contains(r.out, "verify: 1 problem(s)"));
}

TEST_CASE("stored data: damaged schema metadata is a clear error for the node and replay_main") {
  temp_dir dir;
  auto path = dir.file("bank.db");
  write_bank_journal(path, "ada");
  raw_exec(path, "UPDATE schema_version SET version = 'two'");
  auto r = replay({"acct-1", "--db", path});
  CHECK(r.status == 2);
  CHECK(contains(r.err, "schema_version table is damaged"));
  auto schema = node_config_keys();
  add_config_keys(schema);
  auto n = make_node({"persistence.journal.path=" + path}, std::move(schema));
  auto j = install_journal(*n);
  REQUIRE_FALSE(j);
  CHECK(j.error().code() == errc::invalid_config);
  CHECK(contains(j.error().message(), "version 'two'"));
}

TEST_CASE("stored data: UTF-8 validation and escaping") {
  CHECK(is_valid_utf8("plain"));
  CHECK(is_valid_utf8("\xc3\xa9t\xc3\xa9 \xf0\x9f\x8e\x89"));
  CHECK_FALSE(is_valid_utf8("ada\xff\xfe"));
  CHECK_FALSE(is_valid_utf8("\xc0\xaf"));          // overlong
  CHECK_FALSE(is_valid_utf8("\xed\xa0\x80"));      // a surrogate
  CHECK_FALSE(is_valid_utf8("\xf4\x90\x80\x80"));  // above U+10FFFF
  CHECK_FALSE(is_valid_utf8("\xe2\x82"));          // truncated
  CHECK(escape_invalid_utf8("ada\xff\xfe") == "ada\\xff\\xfe");
  CHECK(escape_invalid_utf8("\xc3\xa9\xc3") == "\xc3\xa9\\xc3");
  nlohmann::json doc{{"k\xff", {"v\xfe", 1}}};
  CHECK(has_invalid_utf8(doc));
  CHECK(dump_json(doc) == R"({"k\\xff":["v\\xfe",1]})");
}
