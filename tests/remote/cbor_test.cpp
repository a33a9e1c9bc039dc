// The transport's CBOR fast path produces and accepts exactly the codec's bytes.
#include "remote/fuzz/wire_fuzz_entry.hpp"
#include "remote/remote_support.hpp"
#include "support/node_fixture.hpp"

#include "troupe/actors/remote/cbor.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <limits>

using namespace troupe;
using namespace troupe::test;

namespace {

struct mixed {
  std::int64_t negative = 0;
  std::uint64_t big = 0;
  double ratio = 0;
  float small = 0;
  bool flag = false;
  std::vector<std::string> names;
  std::map<std::string, std::vector<std::int32_t>> table;
  std::vector<std::uint8_t> raw;
  nlohmann::json extra;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(mixed, negative, big, ratio, small, flag, names, table, raw,
                                   extra)

template <class T>
void same_as_codec(node& n, const T& value) {
  auto codec_bytes = n.codec().encode(value);
  REQUIRE(codec_bytes);
  auto types = remote::detail::message_types_of(n.context());
  auto msg = caf::make_message(value);
  auto adapter = types->find(msg.content().type(0));
  REQUIRE(adapter != nullptr);
  remote::wire::bytes ours;
  REQUIRE(adapter->encode(msg.content().get(0), ours));
  CHECK(ours == *codec_bytes);
  auto back = adapter->decode_element(*adapter, n.codec(), adapter->version, *codec_bytes,
                                      nullptr, caf::make_message_id());
  REQUIRE(back);
  // Compared as documents: the types need no operator==.
  auto& content = (*back)->content();
  REQUIRE(content.size() == 1);
  CHECK(nlohmann::json(*static_cast<const T*>(content.get(0))) == nlohmann::json(value));
}

} // namespace

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(mixed)

TEST_CASE("message values travel as exactly the codec registry's CBOR") {
  auto n = make_node();
  REQUIRE(add_test_message_types(*n));
  REQUIRE(remote::add_message_type<mixed>(*n, "test.mixed"));
  same_as_codec(*n, ping{-42, "h\xc3\xa9llo"});
  same_as_codec(*n, numbered{"s", std::numeric_limits<std::uint64_t>::max(), std::string(300, 'x')});
  same_as_codec(*n, mixed{std::numeric_limits<std::int64_t>::min(), 1ull << 40, 0.1, 1.5f, true,
                          {"a", ""}, {{"k", {1, -2, 70000}}}, {0, 255, 7}, nullptr});
  same_as_codec(*n, mixed{-24, 23, std::numeric_limits<double>::infinity(), -0.0f, false, {}, {},
                          {}, nlohmann::json::binary({9, 8})});
}

TEST_CASE("the fast CBOR reader agrees with nlohmann and refuses what would overflow the stack") {
  for (auto doc : {nlohmann::json::parse(R"({"a":[1,-1,2.5,null,true,"x"],"b":{"c":{}}})"),
                   nlohmann::json(std::numeric_limits<std::int64_t>::min()),
                   nlohmann::json(std::numeric_limits<std::uint64_t>::max()),
                   nlohmann::json(std::nan("")), nlohmann::json::binary({1, 2, 3}),
                   nlohmann::json::array()}) {
    auto bytes = nlohmann::json::to_cbor(doc);
    nlohmann::json ours;
    std::string why;
    REQUIRE(remote::detail::read_cbor(bytes, ours, why));
    CHECK(fuzz_detail::same_document(ours, nlohmann::json::from_cbor(bytes)));
    remote::wire::bytes written;
    remote::detail::write_cbor(doc, written);
    CHECK(written == bytes);
  }
  remote::wire::bytes deep(1 << 20, 0x81);  // [[[[...]]]] a million levels down
  deep.push_back(0xf6);
  nlohmann::json ours;
  std::string why;
  CHECK_FALSE(remote::detail::read_cbor(deep, ours, why));
  CHECK(why == "CBOR nested too deeply");
  remote::wire::bytes tagged{0xc1, 0x00};
  CHECK_FALSE(remote::detail::read_cbor(tagged, ours, why));
  remote::wire::bytes trailing{0x01, 0x02};
  CHECK_FALSE(remote::detail::read_cbor(trailing, ours, why));
}
