// The batches in which regions forward commands to other nodes' regions and get
// their answers: what is written is read back, and a damaged or forged batch is
// refused with decode_failed naming what was wrong, never read past its end.
#include "command_batch.hpp"
#include "remote_commands.hpp"

#include <doctest/doctest.h>

#include <random>

using namespace troupe;
using namespace troupe::sharding::detail;

namespace {

forwarded_command command(std::uint64_t request, std::string id, std::size_t payload_bytes) {
  forwarded_command c;
  c.request = request;
  c.hops = 2;
  c.timeout_ms = 5000;
  c.entity_id = std::move(id);
  c.command.manifest = "bank.deposit";
  c.command.version = 3;
  c.command.payload.assign(payload_bytes, std::uint8_t{0xab});
  return c;
}

remote::node_identity node_at(std::uint16_t port) {
  return remote::node_identity{remote::node_address{"127.0.0.1", port}, 7};
}

} // namespace

TEST_CASE("command batch: commands and answers read back as written") {
  std::vector<std::uint8_t> bytes;
  for (std::uint64_t i = 1; i <= 3; ++i)
    append_command(bytes, command(i, "acct-" + std::to_string(i), i * 10));
  auto cmds = decode_commands(bytes);
  REQUIRE(cmds);
  REQUIRE(cmds->size() == 3);
  for (std::uint64_t i = 1; i <= 3; ++i) {
    auto& c = (*cmds)[i - 1];
    auto want = command(i, "acct-" + std::to_string(i), i * 10);
    CHECK(c.request == want.request);
    CHECK(c.hops == want.hops);
    CHECK(c.timeout_ms == want.timeout_ms);
    CHECK(c.entity_id == want.entity_id);
    CHECK(c.command == want.command);
  }
  std::vector<std::uint8_t> answers;
  append_answer(answers, command_answer{1, {}, command(0, "", 4).command});
  append_answer(answers, command_answer{2, error{errc::fenced, "epoch 3 < 4"}, {}});
  auto as = decode_answers(answers);
  REQUIRE(as);
  REQUIRE(as->size() == 2);
  CHECK((*as)[0].request == 1);
  CHECK_FALSE((*as)[0].failure);
  CHECK((*as)[0].reply == command(0, "", 4).command);
  CHECK((*as)[1].failure == error{errc::fenced, "epoch 3 < 4"});
}

TEST_CASE("command batch: every truncation and a forged count are refused, naming the batch") {
  std::vector<std::uint8_t> bytes;
  append_command(bytes, command(1, "acct-1", 16));
  append_command(bytes, command(2, "acct-2", 16));
  for (std::size_t n = 0; n < bytes.size(); ++n) {
    auto r = decode_commands(std::span{bytes.data(), n});
    INFO("truncated to " << n << " bytes");
    REQUIRE_FALSE(r);
    CHECK(r.error().code() == errc::decode_failed);
    CHECK(r.error().message().find("sharding command batch") != std::string::npos);
  }
  auto forged = bytes;
  forged[1] = forged[2] = forged[3] = forged[4] = 0xff;  // four billion entries
  auto r = decode_commands(forged);
  REQUIRE_FALSE(r);
  CHECK(r.error().message().find("entries in") != std::string::npos);
  auto trailing = bytes;
  trailing.push_back(0);
  CHECK_FALSE(decode_commands(trailing));
  auto version = bytes;
  version[0] = 9;
  CHECK(decode_commands(version).error().message().find("format version 9") != std::string::npos);
}

TEST_CASE("command batch: random bytes never crash the readers, and an unknown error code reads "
          "as internal") {
  std::mt19937 rng{12345};
  std::vector<std::uint8_t> base;
  append_command(base, command(1, "acct-1", 8));
  std::vector<std::uint8_t> answers;
  append_answer(answers, command_answer{5, error{errc::timeout, "late"}, {}});
  for (int round = 0; round < 20000; ++round) {
    auto bytes = round % 2 == 0 ? base : answers;
    auto flips = 1 + rng() % 4;
    for (unsigned f = 0; f < flips; ++f)
      bytes[rng() % bytes.size()] = static_cast<std::uint8_t>(rng());
    (void) decode_commands(bytes);
    (void) decode_answers(bytes);
  }
  auto unknown = answers;
  // The error code sits after version (1), count (4), request (8) and the flag (1).
  unknown[14] = 200;
  auto r = decode_answers(unknown);
  REQUIRE(r);
  CHECK((*r)[0].failure.code() == errc::internal);
}

TEST_CASE("remote commands: one packet per node per flush, each command completes exactly once "
          "(answer, timeout, lost node or an unsendable packet)") {
  remote_commands rc{64 * 1024};
  auto now = remote_commands::clock::now();
  std::map<std::string, std::vector<std::string>> outcome;
  auto done_for = [&](std::string id) {
    return [&outcome, id](expected<persistence::encoded_message> r) {
      outcome[id].push_back(r ? std::string{"ok"} : std::string{to_string(r.error().code())});
    };
  };
  CHECK(rc.forward(node_at(1), command(0, "a", 4), now + std::chrono::seconds{5}, done_for("a")));
  CHECK_FALSE(rc.forward(node_at(1), command(0, "b", 4), now + std::chrono::seconds{5}, done_for("b")));
  CHECK_FALSE(rc.forward(node_at(2), command(0, "c", 4), now + std::chrono::milliseconds{10}, done_for("c")));
  CHECK_FALSE(rc.forward(node_at(3), command(0, "d", 4), now + std::chrono::seconds{5}, done_for("d")));
  CHECK_FALSE(rc.answer(node_at(2), command_answer{77, {}, {}}));
  auto packets = rc.take();
  REQUIRE(packets.size() == 4);  // commands to 1, 2, 3; answers to 2
  CHECK(rc.in_flight() == 4);
  std::uint64_t a_request = 0;
  for (auto& p : packets) {
    if (p.to == node_at(1)) {
      auto cmds = decode_commands(p.bytes);
      REQUIRE(cmds);
      REQUIRE(cmds->size() == 2);
      a_request = (*cmds)[0].request;
    }
    if (p.to == node_at(3) && p.manifest == commands_manifest)
      rc.not_sent(p, error{errc::overloaded, "queue full"});
  }
  std::vector<command_answer> answers{command_answer{a_request, {}, {}},
                                      command_answer{a_request, {}, {}},  // a duplicate: ignored
                                      command_answer{999, {}, {}}};       // unknown: ignored
  rc.answered(answers);
  rc.expire(now + std::chrono::seconds{1}, "account");
  rc.fail_region(node_at(1), error{errc::node_unreachable, "lost"});
  CHECK(rc.in_flight() == 0);
  CHECK(outcome["a"] == std::vector<std::string>{"ok"});
  CHECK(outcome["b"] == std::vector<std::string>{"node_unreachable"});
  CHECK(outcome["c"] == std::vector<std::string>{"timeout"});
  CHECK(outcome["d"] == std::vector<std::string>{"overloaded"});
  // The next command after a flush schedules a flush again.
  CHECK(rc.forward(node_at(1), command(0, "e", 4), now + std::chrono::seconds{5}, done_for("e")));
}

TEST_CASE("remote commands: a packet that reaches the limit asks to be sent at once, not at the "
          "end of the burst") {
  remote_commands rc{1024};
  auto deadline = remote_commands::clock::now() + std::chrono::seconds{5};
  CHECK(rc.forward(node_at(1), command(0, "a", 300), deadline, [](auto) {}));
  CHECK_FALSE(rc.full());
  (void) rc.forward(node_at(1), command(0, "b", 300), deadline, [](auto) {});
  CHECK_FALSE(rc.full());
  (void) rc.forward(node_at(1), command(0, "c", 300), deadline, [](auto) {});  // ~1050 bytes
  CHECK(rc.full());
  auto packets = rc.take();
  CHECK_FALSE(rc.full());
  REQUIRE(packets.size() == 1);
  auto cmds = decode_commands(packets[0].bytes);
  REQUIRE(cmds);
  CHECK(cmds->size() == 3);
  // Answers count the same way (three: ~1000 bytes), and the next entry
  // schedules a flush again.
  for (int i = 0; i < 3; ++i)
    (void) rc.answer(node_at(2), command_answer{static_cast<std::uint64_t>(i + 1), {},
                                                command(0, "x", 300).command});
  CHECK_FALSE(rc.full());
  (void) rc.answer(node_at(2), command_answer{9, {}, command(0, "x", 300).command});
  CHECK(rc.full());
  CHECK(rc.take().size() == 1);
  CHECK(rc.forward(node_at(1), command(0, "e", 4), deadline, [](auto) {}));
}

TEST_CASE("remote commands: a batch is split before it grows past the limit") {
  remote_commands rc{1024};
  auto deadline = remote_commands::clock::now() + std::chrono::seconds{5};
  for (int i = 0; i < 10; ++i)
    (void) rc.forward(node_at(1), command(0, "x", 300), deadline, [](auto) {});
  auto packets = rc.take();
  CHECK(packets.size() >= 3);
  std::size_t total = 0;
  for (auto& p : packets) {
    CHECK(p.bytes.size() <= 1024 + 400);
    auto cmds = decode_commands(p.bytes);
    REQUIRE(cmds);
    total += cmds->size();
  }
  CHECK(total == 10);
}
