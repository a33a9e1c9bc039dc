// The bank account of samples/bank and docs/persistence.md: the doc's testkit
// example runs as written, and the doc shows the sample's code.
#include "../../samples/bank/account.hpp"

#include "troupe/persistence/entity_protocol.hpp"
#include "troupe/persistence/testkit.hpp"

#include "troupe/actors/caf_error.hpp"

#include <caf/make_message.hpp>

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

TEST_CASE("entity protocol: every command and reply of the bank account round-trips as bytes") {
  using namespace troupe::persistence;
  auto codec = std::make_shared<troupe::codec_registry>();
  bank::register_types(*codec);
  auto proto = make_entity_protocol<bank::account>(codec);
  REQUIRE(proto);
  CHECK((*proto)->entity_type() == "account");
  // Each command: bytes -> the entity's message -> the same bytes.
  auto command = [&](const auto& c, std::string_view manifest) {
    auto bytes = codec->encode(c);
    REQUIRE(bytes);
    auto msg = (*proto)->decode_command(manifest, 1, *bytes);
    REQUIRE(msg);
    auto back = (*proto)->encode_command(*msg);
    REQUIRE(back);
    CHECK(back->manifest == manifest);
    CHECK(back->payload == *bytes);
    return *msg;
  };
  auto open = command(bank::open_account{"ada"}, "bank.open-account");
  auto deposit = command(bank::deposit{100}, "bank.deposit");
  auto withdraw = command(bank::withdraw{30}, "bank.withdraw");
  auto balance = command(bank::get_balance{}, "bank.get-balance");
  auto close = command(bank::close_account{}, "bank.close-account");
  // Replies: `done` needs no registration; get_balance's std::int64_t does.
  for (auto* c : {&open, &deposit, &withdraw, &close}) {
    auto done_msg = (*proto)->decode_reply(done_manifest, 1, troupe::bytes{0xa0});
    REQUIRE(done_msg);
    auto encoded = (*proto)->encode_reply(*c, *done_msg);
    REQUIRE(encoded);
    CHECK(encoded->manifest == done_manifest);
  }
  auto amount = codec->encode(std::int64_t{70});
  REQUIRE(amount);
  auto reply = (*proto)->decode_reply("bank.amount", 1, *amount);
  REQUIRE(reply);
  auto encoded = (*proto)->encode_reply(balance, *reply);
  REQUIRE(encoded);
  CHECK(encoded->manifest == "bank.amount");
  CHECK(encoded->payload == *amount);
  // An error answer is the error, to travel as one.
  auto refused = (*proto)->encode_reply(
    withdraw, caf::make_message(troupe::to_caf_error(
                troupe::error{troupe::errc::invalid_argument, "insufficient balance"})));
  REQUIRE_FALSE(refused);
  CHECK(refused.error().message() == "insufficient balance");
  // Bad input: a clear error naming what failed.
  auto unknown = (*proto)->decode_command("bank.deposited", 1, *amount);
  REQUIRE_FALSE(unknown);
  CHECK(unknown.error().code() == troupe::errc::unknown_manifest);
  CHECK(unknown.error().message().find("bank.deposited") != std::string::npos);
  auto garbage = (*proto)->decode_command("bank.deposit", 1, troupe::bytes{0xff, 0x00});
  REQUIRE_FALSE(garbage);
  CHECK(garbage.error().message().find("bank.deposit") != std::string::npos);
  auto not_a_command = (*proto)->encode_command(caf::make_message(42));
  REQUIRE_FALSE(not_a_command);
  CHECK(not_a_command.error().code() == troupe::errc::invalid_argument);
}

TEST_CASE("entity protocol: an unregistered command or reply type is named") {
  using namespace troupe::persistence;
  auto codec = std::make_shared<troupe::codec_registry>();
  codec->add<bank::open_account>("bank.open-account");
  auto missing = make_entity_protocol<bank::account>(codec);
  REQUIRE_FALSE(missing);
  CHECK(missing.error().code() == troupe::errc::unknown_manifest);
  CHECK(missing.error().message().find("bank::deposit") != std::string::npos);
  codec->add<bank::deposit>("bank.deposit");
  codec->add<bank::withdraw>("bank.withdraw");
  codec->add<bank::get_balance>("bank.get-balance");
  codec->add<bank::close_account>("bank.close-account");
  missing = make_entity_protocol<bank::account>(codec);
  REQUIRE_FALSE(missing);
  CHECK(missing.error().message().find("reply type") != std::string::npos);
  CHECK(missing.error().message().find("bank::get_balance") != std::string::npos);
}
