// troupe::codec_registry: one registration per message or event type, used for the
// wire, the journal and the tools.
//
//   struct deposited { std::int64_t amount; };
//   NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(deposited, amount)
//   codec.add<deposited>("bank.deposited", 1);
//
// A type is registered once under a stable *manifest* (a name that survives renames
// of the C++ type) and a *version*. Values become CBOR bytes (compact, binary,
// self-describing, so tools can render any payload as JSON without the user's
// types) through the type's nlohmann `to_json` / `from_json`.
//
// Schema evolution: bytes written at an older version are lifted to the current
// one by upcasters (JSON -> JSON, one per version step) before `from_json` runs.
//
// Decoding never crashes and never returns a default-constructed value: an unknown
// manifest, a newer version, a missing upcaster, malformed or truncated bytes, or a
// `from_json` that rejects the document all yield an error naming the manifest.
// The bytes are exactly nlohmann's to_cbor / from_cbor (strict, tags refused),
// written and read by troupe's own faster CBOR code (remote/cbor.hpp), which also
// refuses documents nested deeper than 256 levels.
//
// Thread-safety: register types (add / add_upcaster) before the registry is shared;
// after that, every const member function may be called concurrently.
#pragma once

#include "troupe/actors/expected.hpp"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <typeindex>
#include <vector>

namespace troupe {

using bytes = std::vector<std::uint8_t>;
using byte_span = std::span<const std::uint8_t>;

/// Lifts a document from version v to v + 1.
using upcaster = std::function<expected<nlohmann::json>(nlohmann::json)>;

/// Everything the registry knows about one registered type.
struct codec_entry {
  std::string manifest;
  std::uint32_t version = 1;
  std::type_index type = typeid(void);
  std::map<std::uint32_t, upcaster> upcasters;  ///< keyed by the version they lift from
  /// Decodes a current-version document into a T and drops it; used by tools and
  /// tests that check bytes without knowing the C++ type.
  std::function<expected<void>(const nlohmann::json&)> check;
};

class codec_registry {
public:
  codec_registry() = default;
  codec_registry(const codec_registry&) = delete;
  codec_registry& operator=(const codec_registry&) = delete;

  /// Registers T under `manifest` at `version` (>= 1). Registering the same
  /// manifest twice, or one type under two manifests, is an invalid_argument error.
  template <class T>
  expected<void> add(std::string manifest, std::uint32_t version = 1) {
    codec_entry e;
    e.manifest = std::move(manifest);
    e.version = version;
    e.type = typeid(T);
    e.check = [](const nlohmann::json& j) -> expected<void> {
      T value = j.template get<T>();
      (void) value;
      return {};
    };
    return insert(std::move(e));
  }

  /// Registers how to lift `manifest` documents from `from_version` to the next.
  expected<void> add_upcaster(std::string_view manifest, std::uint32_t from_version,
                              upcaster fn);

  /// The entry for a manifest or a type; nullptr if none is registered.
  const codec_entry* find(std::string_view manifest) const;
  const codec_entry* find(std::type_index type) const;
  template <class T>
  const codec_entry* find() const {
    return find(std::type_index{typeid(T)});
  }

  /// All registered manifests, sorted.
  std::vector<std::string> manifests() const;

  /// Appends the CBOR encoding of x to `out`; fails if T is not registered.
  template <class T>
  expected<void> encode_into(const T& x, bytes& out) const {
    auto e = find<T>();
    if (e == nullptr)
      return unregistered(typeid(T).name());
    try {
      append_cbor(nlohmann::json(x), out);
      return {};
    } catch (const std::exception& ex) {
      return encode_failed(*e, ex.what());
    }
  }

  /// The CBOR encoding of x.
  template <class T>
  expected<bytes> encode(const T& x) const {
    bytes out;
    if (auto r = encode_into(x, out); !r)
      return std::move(r).error();
    return out;
  }

  /// Decodes bytes written under `manifest` at `version` into a T.
  template <class T>
  expected<T> decode(std::string_view manifest, std::uint32_t version, byte_span payload) const {
    auto doc = decode_document(manifest, version, payload, std::type_index{typeid(T)});
    if (!doc)
      return std::move(doc).error();
    try {
      return doc->template get<T>();
    } catch (const std::exception& ex) {
      return rejected(manifest, version, ex.what());
    }
  }

  /// Parses and upcasts bytes to the current version's JSON document, and checks
  /// that the registered type accepts it. Does not need the C++ type.
  expected<nlohmann::json> to_json(std::string_view manifest, std::uint32_t version,
                                   byte_span payload) const;

  /// Encodes a JSON document (current version) as CBOR after checking that the
  /// registered type accepts it.
  expected<bytes> from_json(std::string_view manifest, const nlohmann::json& doc) const;

  /// Renders any CBOR payload as JSON without a registration (for tools reading a
  /// journal written by someone else's types). Binary strings render as
  /// {"bytes": [...]} per nlohmann's convention.
  static expected<nlohmann::json> cbor_to_json(byte_span payload);

  /// Appends exactly the bytes nlohmann::json::to_cbor(doc) would write.
  static void append_cbor(const nlohmann::json& doc, bytes& out);

private:
  expected<void> insert(codec_entry e);
  /// The upcast, current-version document; checks that `expected_type` (if not
  /// void) is the type registered for the manifest.
  expected<nlohmann::json> decode_document(std::string_view manifest, std::uint32_t version,
                                           byte_span payload,
                                           std::type_index expected_type) const;
  static error unregistered(std::string_view type_name);
  static error encode_failed(const codec_entry& e, std::string_view why);
  static error rejected(std::string_view manifest, std::uint32_t version, std::string_view why);

  std::map<std::string, std::unique_ptr<codec_entry>, std::less<>> by_manifest_;
  std::map<std::type_index, codec_entry*> by_type_;
};

} // namespace troupe
