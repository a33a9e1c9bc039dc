#include "troupe/actors/codec.hpp"

#include <doctest/doctest.h>

#include <random>

namespace {

struct deposited {
  std::int64_t amount = 0;
  std::string note;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(deposited, amount, note)

struct renamed {
  std::string owner;
  std::vector<std::string> history;
  double score = 0;
  bool active = false;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(renamed, owner, history, score, active)

struct opened_v2 {
  std::string owner;
  std::string currency;  // added in v2
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(opened_v2, owner, currency)

troupe::codec_registry& registry() {
  static troupe::codec_registry r;
  static bool once = [] {
    REQUIRE(r.add<deposited>("test.deposited", 1));
    REQUIRE(r.add<renamed>("test.renamed", 1));
    REQUIRE(r.add<opened_v2>("test.opened", 2));
    REQUIRE(r.add_upcaster("test.opened", 1, [](nlohmann::json j) -> troupe::expected<nlohmann::json> {
      j["currency"] = "EUR";
      return j;
    }));
    return true;
  }();
  (void) once;
  return r;
}

} // namespace

TEST_CASE("codec round-trips registered types through CBOR") {
  auto& r = registry();
  deposited d{42, "salary"};
  auto bytes = r.encode(d);
  REQUIRE(bytes);
  auto back = r.decode<deposited>("test.deposited", 1, *bytes);
  REQUIRE(back);
  CHECK(back->amount == 42);
  CHECK(back->note == "salary");
  auto doc = r.to_json("test.deposited", 1, *bytes);
  REQUIRE(doc);
  CHECK((*doc)["amount"] == 42);
  auto again = r.from_json("test.deposited", *doc);
  REQUIRE(again);
  CHECK(*again == *bytes);
}

TEST_CASE("codec refuses double registration") {
  troupe::codec_registry r;
  REQUIRE(r.add<deposited>("a", 1));
  auto same_manifest = r.add<renamed>("a", 1);
  REQUIRE_FALSE(same_manifest);
  CHECK(same_manifest.error().code() == troupe::errc::invalid_argument);
  auto same_type = r.add<deposited>("b", 1);
  REQUIRE_FALSE(same_type);
  CHECK(same_type.error().message().find("'a'") != std::string::npos);
}

TEST_CASE("decoding an unknown manifest names it") {
  auto r = registry().decode<deposited>("test.nope", 1, troupe::bytes{0xa0});
  REQUIRE_FALSE(r);
  CHECK(r.error().code() == troupe::errc::unknown_manifest);
  CHECK(r.error().message().find("test.nope") != std::string::npos);
}

TEST_CASE("a newer version without upcaster is an error naming the manifest") {
  auto bytes = *registry().encode(deposited{1, "x"});
  auto r = registry().decode<deposited>("test.deposited", 2, bytes);
  REQUIRE_FALSE(r);
  CHECK(r.error().code() == troupe::errc::unsupported_version);
  CHECK(r.error().message().find("test.deposited") != std::string::npos);
}

TEST_CASE("older versions are upcast before from_json") {
  nlohmann::json v1 = {{"owner", "ada"}};
  auto bytes = nlohmann::json::to_cbor(v1);
  auto r = registry().decode<opened_v2>("test.opened", 1, bytes);
  REQUIRE(r);
  CHECK(r->owner == "ada");
  CHECK(r->currency == "EUR");
}

TEST_CASE("a missing upcaster step is an error") {
  troupe::codec_registry r;
  REQUIRE(r.add<opened_v2>("x.opened", 3));
  REQUIRE(r.add_upcaster("x.opened", 2, [](nlohmann::json j) -> troupe::expected<nlohmann::json> {
    return j;
  }));
  auto result = r.decode<opened_v2>("x.opened", 1, nlohmann::json::to_cbor(nlohmann::json{{"owner", "a"}}));
  REQUIRE_FALSE(result);
  CHECK(result.error().code() == troupe::errc::unsupported_version);
  CHECK(result.error().message().find("v1") != std::string::npos);
}

TEST_CASE("a document missing a field is rejected, not default-constructed") {
  auto bytes = nlohmann::json::to_cbor(nlohmann::json{{"amount", 5}});
  auto r = registry().decode<deposited>("test.deposited", 1, bytes);
  REQUIRE_FALSE(r);
  CHECK(r.error().code() == troupe::errc::decode_failed);
  CHECK(r.error().message().find("test.deposited") != std::string::npos);
}

TEST_CASE("decoding with the wrong C++ type is an error") {
  auto bytes = *registry().encode(deposited{1, "x"});
  auto r = registry().decode<renamed>("test.deposited", 1, bytes);
  REQUIRE_FALSE(r);
  CHECK(r.error().code() == troupe::errc::decode_failed);
}

TEST_CASE("random and truncated bytes never crash the decoder of any registered type") {
  auto& r = registry();
  std::mt19937 rng{12345};
  std::vector<troupe::bytes> samples = {*r.encode(deposited{-7, "some note"}),
                                        *r.encode(renamed{"o", {"a", "b"}, 2.5, true}),
                                        *r.encode(opened_v2{"x", "USD"})};
  for (auto& manifest : r.manifests()) {
    auto version = r.find(manifest)->version;
    int rejected = 0;
    // Every prefix of every valid sample, decoded as this manifest.
    for (auto& sample : samples) {
      for (size_t n = 0; n < sample.size(); ++n) {
        auto result = r.to_json(manifest, version, troupe::byte_span{sample.data(), n});
        if (!result) {
          ++rejected;
          CHECK(result.error().message().find(manifest) != std::string::npos);
        }
      }
    }
    // Random bytes, and valid samples with one byte flipped.
    for (int i = 0; i < 2000; ++i) {
      troupe::bytes junk(rng() % 64);
      for (auto& b : junk)
        b = static_cast<std::uint8_t>(rng());
      if (i % 2 == 1 && !samples.empty()) {
        junk = samples[rng() % samples.size()];
        junk[rng() % junk.size()] ^= static_cast<std::uint8_t>(1 + rng() % 255);
      }
      auto result = r.to_json(manifest, version, junk);
      if (!result) {
        ++rejected;
        CHECK(result.error().message().find(manifest) != std::string::npos);
      }
    }
    CHECK(rejected > 0);
  }
}

// nlohmann's recursive CBOR reader would exhaust the stack on such a payload (a
// journal row or a frame of 0x81 bytes); the codec refuses it as malformed.
TEST_CASE("a payload nested deeper than the codec's limit is an error naming the manifest") {
  troupe::bytes deep(1'000'000, 0x81);  // [[[[...
  deep.push_back(0x00);
  auto r = registry().decode<renamed>("test.renamed", 1, deep);
  REQUIRE_FALSE(r);
  CHECK(r.error().code() == troupe::errc::decode_failed);
  CHECK(r.error().message().find("test.renamed") != std::string::npos);
}
