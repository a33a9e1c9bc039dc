// The command-line convention of every troupe binary (tools/cli/troupe/cli/command_line.hpp),
// rule by rule, on the real binaries: troupe, troupe-node (troupe::node_main),
// troupe-bank, troupe-bank-demo, troupe-demo and troupe-bench. cli_binaries.txt next
// to the test names them with their paths (tests/CMakeLists.txt); the rows of a
// binary this build does not make (troupe-bench in sanitizer builds) are left out.
#include "support/child_process.hpp"
#include "support/temp_dir.hpp"

#include "troupe/version.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

namespace {

using troupe::test::child_process;
using troupe::test::program_path;

struct outcome {
  int status = -1;
  std::string out;
  std::string err;
};

/// Every binary by name, with its path ("" when this build does not make it, as
/// troupe-bench in the sanitizer builds): tests/bin/cli_binaries.txt.
const std::map<std::string, std::string>& binary_paths() {
  static const std::map<std::string, std::string> paths = [] {
    std::map<std::string, std::string> m;
    std::ifstream in{program_path("cli_binaries.txt")};
    for (std::string line; std::getline(in, line);) {
      auto space = line.find(' ');
      m[line.substr(0, space)] = space == std::string::npos ? "" : line.substr(space + 1);
    }
    return m;
  }();
  return paths;
}

/// Whether this build makes `binary`; a binary the test does not know fails.
bool built(const std::string& binary) {
  REQUIRE_MESSAGE(binary_paths().count(binary) == 1, binary << " is not in cli_binaries.txt");
  return !binary_paths().at(binary).empty();
}

/// Runs a binary of this build (by name, e.g. "troupe-bank") with `args`.
outcome run(const std::string& binary, const std::vector<std::string>& args) {
  REQUIRE_MESSAGE(built(binary), binary << " is not built here");
  auto& path = binary_paths().at(binary);
  troupe::test::temp_dir dir;
  std::string cmd = "exec '" + path + "'";
  for (auto& a : args)
    cmd += " '" + a + "'";
  cmd += " 2>'" + dir.file("err") + "'";
  child_process p{"/bin/sh", {"-c", cmd}};
  outcome o;
  while (auto line = p.read_line(std::chrono::seconds{60}))
    o.out += *line + "\n";
  o.status = p.wait(std::chrono::seconds{60}).value_or(-1);
  std::ifstream err{dir.file("err")};
  std::stringstream text;
  text << err.rdbuf();
  o.err = text.str();
  return o;
}

bool has(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

/// Every binary, with arguments that select one of its commands where it has them.
struct binary {
  std::string name;
  std::vector<std::string> command;  ///< e.g. {"journal", "events"} for troupe
  std::string near_miss;             ///< a misspelt flag of that command
  std::string meant;                 ///< the flag it misspells
};

const std::vector<binary>& binaries() {
  static const std::vector<binary> all{
    {"troupe", {}, "--versoin", "--version"},
    {"troupe", {"journal", "events"}, "--lmit", "--limit"},
    {"troupe", {"cluster", "members"}, "--htp", "--http"},
    {"troupe-node", {}, "--prot", "--port"},
    {"troupe-bank", {}, "--persistence.journal.pth", "--persistence.journal.path"},
    {"troupe-bank", {"replay"}, "--verfy", "--verify"},
    {"troupe-bank-demo", {}, "--acounts", "--accounts"},
    {"troupe-bank-projection", {}, "--jornal", "--journal"},
    {"troupe-order-enrichment", {}, "--custmers", "--customers"},
    {"troupe-sensor-node", {}, "--sensor.lisen", "--sensor.listen"},
    {"troupe-sensor-demo", {}, "--redings", "--readings"},
    {"troupe-demo", {}, "--log.levl", "--log.level"},
    {"troupe-bench", {}, "--secnds", "--seconds"},
  };
  return all;
}

std::vector<std::string> with(std::vector<std::string> a, const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

std::string shown(const binary& b) {
  std::string s = b.name;
  for (auto& c : b.command)
    s += " " + c;
  return s;
}

} // namespace

TEST_CASE("command line: --help and -h print usage on stdout and exit 0, on every binary") {
  for (auto& b : binaries()) {
    if (!built(b.name))
      continue;
    for (auto flag : {"--help", "-h"}) {
      INFO(shown(b), " ", flag);
      auto r = run(b.name, with(b.command, {flag}));
      CHECK(r.status == 0);
      CHECK(has(r.out, "Usage: " + shown(b)));
      CHECK(r.err.empty());
    }
  }
}

TEST_CASE("command line: --version prints the version on stdout and exits 0, on every binary") {
  for (auto name : {"troupe", "troupe-node", "troupe-bank", "troupe-bank-demo", "troupe-demo",
                    "troupe-sensor-node", "troupe-sensor-demo", "troupe-bench"}) {
    if (!built(name))
      continue;
    INFO(name);
    auto r = run(name, {"--version"});
    CHECK(r.status == 0);
    CHECK(r.out == std::string{name} + " " + TROUPE_VERSION + "\n");
    CHECK(r.err.empty());
  }
}

TEST_CASE("command line: an unknown flag is a usage error naming it, exit 2, on every binary") {
  for (auto& b : binaries()) {
    if (!built(b.name))
      continue;
    INFO(shown(b));
    auto r = run(b.name, with(b.command, {"--no-such-flag=1"}));
    CHECK(r.status == 2);
    CHECK(r.out.empty());
    CHECK(has(r.err, shown(b) + ": unknown option '--no-such-flag'"));
    CHECK(has(r.err, "see " + shown(b) + " --help"));
  }
}

TEST_CASE("command line: a near miss gets a did-you-mean, on every binary") {
  for (auto& b : binaries()) {
    if (!built(b.name))
      continue;
    INFO(shown(b), " ", b.near_miss);
    auto r = run(b.name, with(b.command, {b.near_miss}));
    CHECK(r.status == 2);
    CHECK(has(r.err, "did you mean '" + b.meant + "'?"));
  }
  auto r = run("troupe", {"jounal"});
  CHECK(r.status == 2);
  CHECK(has(r.err, "unknown argument 'jounal'; did you mean 'journal'?"));
  if (built("troupe-bench")) {
    r = run("troupe-bench", {"local_snd"});
    CHECK(r.status == 2);
    CHECK(has(r.err, "did you mean 'local_send'?"));
  }
}

TEST_CASE("command line: numbers are parsed strictly, in --key value and --key=value alike") {
  struct row {
    std::string binary;
    std::vector<std::string> prefix;
    std::string flag;
    std::string value;
  };
  std::vector<row> rows{
    {"troupe", {"journal", "events", "--db", "x.db"}, "--limit", "5x"},
    {"troupe", {"journal", "events", "--db", "x.db"}, "--limit", "-3"},
    {"troupe", {"journal", "events", "--db", "x.db"}, "--from-offset", "0x10"},
    {"troupe-node", {}, "--port", "70000"},
    {"troupe-node", {}, "--port", " 5"},
    {"troupe-node", {}, "--node.port", "5x"},
    {"troupe-bank", {}, "--persistence.entity.recovery-timeout", "5"},
    {"troupe-bank", {"replay", "a", "--db", "x.db"}, "--to", "2.5"},
    {"troupe-bank-demo", {}, "--workers", "0"},
    {"troupe-order-enrichment", {}, "--nodes", "0"},
    {"troupe-sensor-node", {}, "--sensor.parallelism", "5x"},
    {"troupe-sensor-demo", {}, "--clients", "0"},
    {"troupe-demo", {}, "--scheduler.threads", "many"},
    {"troupe-bench", {"list"}, "--seconds", "fast"},
  };
  for (auto& x : rows) {
    if (!built(x.binary))
      continue;
    for (bool joined : {false, true}) {
      auto args = x.prefix;
      if (joined)
        args.push_back(x.flag + "=" + x.value);
      else
        args.insert(args.end(), {x.flag, x.value});
      INFO(x.binary, " ", x.flag, joined ? "=" : " ", x.value);
      auto r = run(x.binary, args);
      CHECK(r.status == 2);
      CHECK(r.out.empty());
      // The error names the flag (or the key it sets) and the value.
      CHECK(has(r.err, x.flag.substr(x.flag.rfind('-') + 1)));
      CHECK(has(r.err, "'" + x.value + "'"));
    }
  }
}

TEST_CASE("command line: --key value and --key=value are the same") {
  for (auto& args : std::vector<std::vector<std::string>>{{"list", "--seconds", "2"},
                                                          {"list", "--seconds=2"}}) {
    if (!built("troupe-bench"))
      break;
    auto r = run("troupe-bench", args);
    CHECK(r.status == 0);
    CHECK(has(r.out, "local_send\n"));
  }
  troupe::test::temp_dir dir;
  for (auto& flag : std::vector<std::vector<std::string>>{
         {"--persistence.journal.path", dir.file("a.db")},
         {"--persistence.journal.path=" + dir.file("b.db")}}) {
    auto r = run("troupe-bank", flag);
    CHECK(r.status == 0);
    CHECK(has(r.out, "balance of acct-42: 70"));
  }
}

TEST_CASE("command line: --help-config lists every key with type and default, from the schema") {
  for (auto name : {"troupe-node", "troupe-bank", "troupe-demo"}) {
    INFO(name);
    auto r = run(name, {"--help-config"});
    CHECK(r.status == 0);
    CHECK(has(r.out, "--node.port <integer>  default: 0  allowed: 0..65535\n"));
    CHECK(has(r.out, "--log.level <string>  default: info"));
    CHECK(r.err.empty());
    CHECK(has(run(name, {"--help"}).out, "--help-config"));
  }
  // A program's own keys and defaults are listed as it declares them.
  CHECK(has(run("troupe-bank", {"--help-config"}).out,
            "--persistence.journal.path <string>  default: bank.db"));
  CHECK(has(run("troupe-node", {"--help-config"}).out, "--cluster.seed-nodes <list of strings>"));
}

TEST_CASE("command line: a bad configuration value is a usage error (exit 2) for every key") {
  for (auto name : {"troupe-node", "troupe-bank", "troupe-demo"}) {
    for (auto arg : {"--transport.failure-timeout=1ns", "--log.level=loud", "--node.port=-1"}) {
      INFO(name, " ", arg);
      auto r = run(name, {arg});
      CHECK(r.status == 2);
      CHECK(has(r.err, "invalid_config"));
    }
  }
}

TEST_CASE("command line: runtime failures exit 1") {
  troupe::test::temp_dir dir;
  auto missing = dir.file("no/such/dir/x.db");
  CHECK(run("troupe", {"journal", "list", "--db", missing}).status == 1);
  CHECK(run("troupe-bank", {"--persistence.journal.path", missing}).status == 1);
  CHECK(run("troupe-bank", {"replay", "acct-42", "--db", missing}).status == 2);  // replay_main: 2
  CHECK(run("troupe", {"cluster", "members", "--http", "127.0.0.1:1"}).status == 1);
}

TEST_CASE("command line: an entity id and a persistence id name the same entity in every tool") {
  troupe::test::temp_dir dir;
  auto db = dir.file("bank.db");
  REQUIRE(run("troupe-bank", {"--persistence.journal.path", db}).status == 0);
  auto by_pid = run("troupe", {"journal", "events", "--db", db, "--id", "account|acct-42"});
  auto by_id = run("troupe", {"journal", "events", "--db", db, "--id", "acct-42"});
  CHECK(by_pid.status == 0);
  CHECK(by_id.status == 0);
  CHECK(by_id.out == by_pid.out);
  CHECK(std::count(by_id.out.begin(), by_id.out.end(), '\n') == 3);
  CHECK(has(by_id.err, "--id 'acct-42' is persistence id 'account|acct-42'"));
  CHECK(by_pid.err.empty());

  auto replay_pid = run("troupe-bank", {"replay", "account|acct-42", "--db", db});
  auto replay_id = run("troupe-bank", {"replay", "acct-42", "--db", db});
  CHECK(replay_id.status == 0);
  CHECK(replay_id.out == replay_pid.out);
  CHECK(has(replay_id.err, "'acct-42' is persistence id 'account|acct-42'"));

  auto none = run("troupe", {"journal", "events", "--db", db, "--id", "acct-7"});
  CHECK(none.status == 0);
  CHECK(none.out.empty());
  CHECK(has(none.err, "no persistence id"));
}

TEST_CASE("command line: a command is required where a binary has commands") {
  for (auto& args : std::vector<std::vector<std::string>>{{}, {"journal"}, {"cluster"}}) {
    auto r = run("troupe", args);
    CHECK(r.status == 2);
    CHECK(has(r.err, "a command is required"));
  }
  auto r = run("troupe", {"journal", "list"});
  CHECK(r.status == 2);
  CHECK(has(r.err, "--db FILE|URI is required"));
}
