// The sharded bank across real processes: three troupe-bank-node processes share
// one SQLite journal, a client drives transfers, one node is killed with SIGKILL
// under load; its shards move, its accounts recover from the journal, and the
// audit from the journal finds every acknowledged transfer exactly once and the
// total balance unchanged (samples/bank/cluster_demo.cpp is the driver).
#include "support/child_process.hpp"
#include "support/temp_dir.hpp"

#include <doctest/doctest.h>

#include <filesystem>
#include <string>
#include <vector>

using namespace std::chrono_literals;

namespace {

/// The demo is built into build/samples/bank, the tests into build/tests/bin.
std::string demo_path() {
  auto bin = std::filesystem::path{troupe::test::program_path("x")}.parent_path();
  return (bin.parent_path().parent_path() / "samples/bank/troupe-bank-demo").string();
}

} // namespace

TEST_CASE("bank cluster: kill -9 of a node under load loses and duplicates nothing acknowledged, and the total is conserved") {
  troupe::test::temp_dir dir;
  troupe::test::child_process demo{demo_path(),
                                   {"--accounts", "30", "--transfers", "900", "--workers", "6",
                                    "--dir", dir.path().string()}};
  REQUIRE(demo.started());
  auto killed = demo.wait_for_line("killed node 3", 120s);
  REQUIRE(killed);
  auto total = demo.wait_for_line("total balance:", 180s);
  REQUIRE(total);
  INFO(*total);
  CHECK(total->find(": conserved") != std::string::npos);
  auto audit = demo.read_line(30s);  // the line after the total
  REQUIRE(audit);
  INFO(*audit);
  CHECK(audit->find(" acknowledged, 0 lost, 0 duplicated") != std::string::npos);
  CHECK(audit->find("0 half-done") != std::string::npos);
  auto status = demo.wait(60s);
  REQUIRE(status);
  CHECK(*status == 0);
}
