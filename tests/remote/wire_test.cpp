// The wire format, SHA-256/HMAC and the handshake state machine, without sockets.
#include "troupe/actors/remote/handshake.hpp"
#include "troupe/actors/remote/hmac.hpp"
#include "troupe/actors/remote/wire.hpp"

#include <doctest/doctest.h>

#include <string>

using namespace troupe;
using namespace troupe::remote;
using wire::frame_type;

namespace {

std::string hex(std::span<const std::uint8_t> d) {
  static const char* digits = "0123456789abcdef";
  std::string s;
  for (auto b : d) {
    s += digits[b >> 4];
    s += digits[b & 15];
  }
  return s;
}

std::span<const std::uint8_t> bytes_of(std::string_view s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

wire::frame_view only_frame(const wire::bytes& buf) {
  wire::frame_view f{};
  std::size_t consumed = 0;
  error err;
  REQUIRE(wire::scan_frame(buf, UINT32_MAX, f, consumed, err) == wire::scan_status::frame);
  REQUIRE(consumed == buf.size());
  return f;
}

handshake_settings settings(std::uint64_t incarnation, std::string cluster = "c",
                            std::string secret = "") {
  return {node_identity{node_address{"127.0.0.1", static_cast<std::uint16_t>(7000 + incarnation)},
                        incarnation},
          std::move(cluster), std::move(secret), 65536};
}

/// Runs both sides of a handshake over in-memory frames.
struct handshake_pair {
  handshake initiator;
  handshake acceptor;
  std::vector<wire::bytes> to_acceptor;  // what the initiator sent, frame by frame

  handshake_pair(handshake_settings i, handshake_settings a)
    : initiator(handshake::role::initiator, std::move(i), {1}),
      acceptor(handshake::role::acceptor, std::move(a), {2}) {
  }

  void run() {
    wire::bytes hello;
    initiator.start(hello);
    to_acceptor.push_back(hello);
    wire::bytes welcome;
    acceptor.on_frame(only_frame(hello), welcome);
    if (acceptor.current() == handshake::state::failed || welcome.empty())
      return;
    wire::bytes auth;
    initiator.on_frame(only_frame(welcome), auth);
    if (auth.empty())
      return;
    to_acceptor.push_back(auth);
    wire::bytes ignored;
    acceptor.on_frame(only_frame(auth), ignored);
  }
};

} // namespace

TEST_CASE("SHA-256 and HMAC-SHA256 match the published test vectors") {
  CHECK(hex(sha256::of(bytes_of(""))) ==
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(hex(sha256::of(bytes_of("abc"))) ==
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK(hex(sha256::of(bytes_of("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"))) ==
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  sha256 million;
  std::string chunk(1000, 'a');
  for (int i = 0; i < 1000; ++i)
    million.update(chunk);
  CHECK(hex(million.finish()) ==
        "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
  // RFC 4231 test cases 1, 2 and 6 (a key longer than the block).
  std::vector<std::uint8_t> key1(20, 0x0b);
  CHECK(hex(hmac_sha256(key1, {bytes_of("Hi There")})) ==
        "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
  CHECK(hex(hmac_sha256(bytes_of("Jefe"), {bytes_of("what do ya want "), bytes_of("for nothing?")})) ==
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  std::vector<std::uint8_t> key6(131, 0xaa);
  CHECK(hex(hmac_sha256(key6, {bytes_of("Test Using Larger Than Block-Size Key - Hash Key First")})) ==
        "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
}

TEST_CASE("varints round-trip and malformed ones are errors") {
  for (std::uint64_t x : {0ull, 1ull, 127ull, 128ull, 300ull, 1ull << 35, ~0ull}) {
    wire::bytes b;
    wire::put_varint(b, x);
    wire::reader r{b};
    std::uint64_t y = 0;
    CHECK(r.varint(y));
    CHECK(y == x);
    CHECK(r.at_end());
  }
  wire::bytes too_long(11, 0x80);
  std::uint64_t y = 0;
  wire::reader r1{too_long};
  CHECK_FALSE(r1.varint(y));
  wire::bytes overflow(9, 0xff);
  overflow.push_back(0x02);  // bit 64
  wire::reader r2{overflow};
  CHECK_FALSE(r2.varint(y));
  CHECK(r2.what() == "varint overflows 64 bits");
  wire::bytes truncated{0x80};
  wire::reader r3{truncated};
  CHECK_FALSE(r3.varint(y));
}

TEST_CASE("frames are length-prefixed, and partial, empty and oversize frames are told apart") {
  wire::bytes buf;
  wire::put_goodbye(buf, true, "bye");
  wire::frame_view f{};
  std::size_t consumed = 0;
  error err;
  CHECK(wire::scan_frame({buf.data(), 3}, 1024, f, consumed, err) == wire::scan_status::need_more);
  CHECK(consumed == 0);  // header incomplete
  CHECK(wire::scan_frame({buf.data(), buf.size() - 1}, 1024, f, consumed, err) ==
        wire::scan_status::need_more);
  CHECK(consumed == buf.size());  // the whole frame's size is known
  CHECK(wire::scan_frame(buf, 1024, f, consumed, err) == wire::scan_status::frame);
  CHECK(f.type == frame_type::goodbye);
  auto bye = wire::decode_goodbye(f);
  REQUIRE(bye);
  CHECK(bye->node_stopping);
  CHECK(bye->reason == "bye");
  wire::bytes zero{0, 0, 0, 0, 16};
  CHECK(wire::scan_frame(zero, 1024, f, consumed, err) == wire::scan_status::error);
  CHECK(err.code() == errc::protocol_error);
  wire::bytes huge{0x7f, 0xff, 0xff, 0xff, 16};
  CHECK(wire::scan_frame(huge, 1024, f, consumed, err) == wire::scan_status::error);
  CHECK(err.code() == errc::oversize);
}

TEST_CASE("message, request and response frames round-trip and every truncation is an error") {
  wire::bytes buf;
  auto at = wire::begin_message(buf, 42, "sharding/account", 2);
  auto e1 = wire::begin_element(buf, "bank.deposit", 3);
  buf.insert(buf.end(), {1, 2, 3});
  wire::end_element(buf, e1);
  auto e2 = wire::begin_element(buf, "troupe.i64", 1);
  wire::end_element(buf, e2);
  wire::end_frame(buf, at);
  wire::message_view m;
  REQUIRE(wire::decode_message(only_frame(buf), m));
  CHECK(m.correlation == 42);
  CHECK(m.target == "sharding/account");
  REQUIRE(m.count == 2);
  CHECK(m.elements[0].manifest == "bank.deposit");
  CHECK(m.elements[0].version == 3);
  CHECK(m.elements[0].payload.size() == 3);
  CHECK(m.elements[1].payload.empty());
  for (std::size_t n = wire::header_size; n < buf.size(); ++n) {
    wire::bytes cut(buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(n));
    // Keep the frame self-consistent: patch the length to what is left.
    wire::end_frame(cut, 0);
    CHECK_FALSE(wire::decode_message(only_frame(cut), m));
  }
  wire::bytes err;
  wire::put_error_response(err, 42, static_cast<std::uint8_t>(errc::not_found), "no such actor");
  wire::response_view r;
  REQUIRE(wire::decode_response(only_frame(err), r));
  CHECK(r.is_error);
  CHECK(r.error_code == static_cast<std::uint8_t>(errc::not_found));
  CHECK(r.error_text == "no such actor");
  wire::bytes zero_corr;
  auto z = wire::begin_response(zero_corr, 0, 0);
  wire::end_frame(zero_corr, z);
  CHECK_FALSE(wire::decode_response(only_frame(zero_corr), r));
}

TEST_CASE("the handshake connects peers of one cluster, with and without a secret") {
  handshake_pair open{settings(1), settings(2)};
  open.run();
  CHECK(open.initiator.current() == handshake::state::established);
  CHECK(open.acceptor.current() == handshake::state::established);
  CHECK(open.acceptor.peer().incarnation == 1);
  CHECK(open.initiator.peer().incarnation == 2);
  CHECK(open.initiator.peer().address.port == 7002);
  const std::string key = "correct horse battery staple";
  handshake_pair secret{settings(1, "c", key), settings(2, "c", key)};
  secret.run();
  CHECK(secret.initiator.current() == handshake::state::established);
  CHECK(secret.acceptor.current() == handshake::state::established);
  // The secret never travels.
  for (auto& frame : secret.to_acceptor)
    CHECK(std::string(frame.begin(), frame.end()).find(key) == std::string::npos);
}

TEST_CASE("the handshake refuses other clusters, versions, secrets and itself, saying why") {
  handshake_pair cluster{settings(1, "x"), settings(2, "y")};
  cluster.run();
  CHECK(cluster.acceptor.failure_kind() == refusal::cluster_mismatch);
  CHECK(cluster.acceptor.failure().message().find("'x'") != std::string::npos);

  handshake_pair wrong_secret{settings(1, "c", "a"), settings(2, "c", "b")};
  wrong_secret.run();
  CHECK(wrong_secret.initiator.failure_kind() == refusal::unauthorized);

  handshake_pair no_secret{settings(1), settings(2, "c", "b")};
  no_secret.run();
  CHECK(no_secret.initiator.failure_kind() == refusal::unauthorized);

  handshake_pair itself{settings(1), settings(1)};
  itself.run();
  CHECK(itself.acceptor.failure_kind() == refusal::self_connection);

  // An initiator without the secret that answers with a made-up proof.
  handshake acceptor{handshake::role::acceptor, settings(2, "c", "b"), {}};
  handshake intruder{handshake::role::initiator, settings(1, "c", ""), {}};
  wire::bytes hello;
  intruder.start(hello);
  wire::bytes welcome;
  acceptor.on_frame(only_frame(hello), welcome);
  wire::bytes forged;
  std::vector<std::uint8_t> zeros(32, 0);
  wire::put_auth(forged, zeros);
  wire::bytes refuse;
  CHECK(acceptor.on_frame(only_frame(forged), refuse) == handshake::state::failed);
  CHECK(acceptor.failure_kind() == refusal::unauthorized);
  auto told = wire::decode_refuse(only_frame(refuse));
  REQUIRE(told);
  CHECK(told->code == static_cast<std::uint8_t>(errc::unauthorized));

  // A future protocol version is refused by version, not as garbage.
  wire::hello_msg v2{.version = 2, .incarnation = 9, .max_frame = 65536, .port = 1,
                     .host = "h", .cluster = "c"};
  wire::bytes future;
  wire::put_hello(future, frame_type::hello, v2);
  handshake a2{handshake::role::acceptor, settings(2), {}};
  wire::bytes out;
  CHECK(a2.on_frame(only_frame(future), out) == handshake::state::failed);
  CHECK(a2.failure_kind() == refusal::version_mismatch);
  CHECK(a2.failure().message().find("version 2") != std::string::npos);
  CHECK_FALSE(out.empty());  // a refuse frame for the peer
}
