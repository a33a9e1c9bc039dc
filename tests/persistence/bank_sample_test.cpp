// The bank account of samples/bank and docs/persistence.md: the doc's testkit
// example runs as written, and the doc shows the sample's code.
#include "../../samples/bank/account.hpp"

#include "troupe/persistence/testkit.hpp"

#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

namespace {

std::string read_file(const std::filesystem::path& p) {
  std::ifstream in{p};
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

std::string trimmed(std::string s) {
  auto b = s.find_first_not_of(" \n");
  auto e = s.find_last_not_of(" \n");
  return b == std::string::npos ? std::string{} : s.substr(b, e - b + 1);
}

} // namespace

TEST_CASE("entity: the bank account of the docs, through the testkit") {
  troupe::persistence::testkit<bank::account> kit{bank::register_types, "acct-1"};
  auto r = kit.run(bank::open_account{"ada"});
  CHECK(r.reply);                        // expected<done>
  r = kit.run(bank::deposit{100});
  CHECK(r.events.size() == 1);           // the events this command persisted (decoded)
  CHECK(r.state.balance == 100);         // the state after it
  CHECK(kit.restart());                  // a new incarnation recovers the same state

  auto refused = kit.run(bank::withdraw{1000});
  REQUIRE_FALSE(refused.reply);
  CHECK(refused.reply.error().message() == "insufficient balance");
  CHECK(refused.events.empty());

  kit.journal().fail(troupe::persistence::journal_op::write);   // fault injection
  auto failed = kit.run(bank::deposit{5});
  CHECK(failed.reply.error().code() == troupe::errc::journal_failure);
  CHECK(failed.stopped);
  kit.journal().clear_faults();
  REQUIRE(kit.restart());
  CHECK(kit.state().balance == 100);
}

TEST_CASE("entity: docs/persistence.md shows the code of samples/bank/account.hpp") {
  auto root = std::filesystem::path{__FILE__}.parent_path().parent_path().parent_path();
  auto doc = read_file(root / "docs" / "persistence.md");
  auto sample = read_file(root / "samples" / "bank" / "account.hpp");
  REQUIRE_FALSE(doc.empty());
  REQUIRE_FALSE(sample.empty());
  auto begin = doc.find("```cpp\nnamespace bank {");
  REQUIRE(begin != std::string::npos);
  begin += 7;
  auto end = doc.find("```", begin);
  auto body = sample.find("namespace bank {");
  REQUIRE(body != std::string::npos);
  CHECK(trimmed(doc.substr(begin, end - begin)) == trimmed(sample.substr(body)));
}
