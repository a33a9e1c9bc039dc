// Which message types may cross the transport, and how.
//
//   struct deposit { std::string account; std::int64_t amount; };
//   NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(deposit, account, amount)   // the codec
//   CAF_ALLOW_UNSAFE_MESSAGE_TYPE(deposit)                         // CAF may hold it
//   ...
//   troupe::remote::add_message_type<deposit>(node, "bank.deposit", 1);
//
// One call per type and node, before messages of the type flow (typically before
// transport::start): it registers T in the node's codec registry under the
// manifest and version (so the bytes on the wire are exactly the codec's CBOR, and
// upcasters apply to older versions) and tells the transport how to turn a T
// inside a CAF message into bytes and back. Registering the same type again with
// the same manifest and version is a no-op (several nodes may share one codec).
//
// CAF needs `inspect` or CAF_ALLOW_UNSAFE_MESSAGE_TYPE(T) for any type it carries,
// even locally; troupe never uses CAF's serialization, so the latter is enough.
//
// Built in (no registration): caf atoms, std::string, bool, double, std::int32_t,
// std::int64_t, std::uint64_t and caf::unit_t, under the reserved manifests
// "troupe.atom", "troupe.string", ... A message is a tuple of up to 16 such values.
//
// Thread-safety: add_message_type must not race with traffic of the same node
// (register first); lookups are concurrent.
#pragma once

#include "troupe/actors/codec.hpp"
#include "troupe/actors/node.hpp"
#include "troupe/actors/remote/wire.hpp"

#include <caf/message.hpp>
#include <caf/message_builder.hpp>
#include <caf/rtti_pair.hpp>

#include <memory>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <typeindex>
#include <unordered_map>

namespace troupe::remote {

namespace detail {

/// How values of one type cross the wire.
struct message_adapter {
  std::string manifest;
  std::uint32_t version = 1;
  /// Appends the payload bytes of the value at `value` (a T) to `out`.
  expected<void> (*encode)(const codec_registry& codec, const void* value, wire::bytes& out);
  /// Decodes a payload written under `manifest` at `version` and appends the value.
  expected<void> (*decode)(const codec_registry& codec, std::string_view manifest,
                           std::uint32_t version, wire::byte_span payload,
                           caf::message_builder& out);
  /// Same, for the common single-value message (no builder).
  expected<caf::message> (*decode_one)(const codec_registry& codec, std::string_view manifest,
                                       std::uint32_t version, wire::byte_span payload);
};

/// The adapters of one node, found by the type inside a CAF message (sending) or by
/// manifest (receiving).
class message_types {
public:
  message_types();

  expected<void> add(message_adapter a, std::type_index type);
  const message_adapter* find(const caf::rtti_pair& type) const;
  const message_adapter* find(std::string_view manifest) const;

private:
  mutable std::shared_mutex mtx_;
  std::unordered_map<std::type_index, std::shared_ptr<const message_adapter>> by_type_;
  std::unordered_map<std::uint16_t, std::shared_ptr<const message_adapter>> by_builtin_;
  std::unordered_map<std::string, std::shared_ptr<const message_adapter>> by_manifest_;
};

/// The node's adapters (created on first use, shared with its transport).
std::shared_ptr<message_types> message_types_of(node_context& ctx);

template <class T>
expected<void> encode_value(const codec_registry& codec, const void* value, wire::bytes& out) {
  return codec.encode_into(*static_cast<const T*>(value), out);
}

template <class T>
expected<void> decode_value(const codec_registry& codec, std::string_view manifest,
                            std::uint32_t version, wire::byte_span payload,
                            caf::message_builder& out) {
  auto x = codec.decode<T>(manifest, version, payload);
  if (!x)
    return std::move(x).error();
  out.append(std::move(*x));
  return {};
}

template <class T>
expected<caf::message> decode_one_value(const codec_registry& codec, std::string_view manifest,
                                        std::uint32_t version, wire::byte_span payload) {
  auto x = codec.decode<T>(manifest, version, payload);
  if (!x)
    return std::move(x).error();
  return caf::make_message(std::move(*x));
}

} // namespace detail

/// Registers T for remote messaging on node `n` (see the file comment).
template <class T>
expected<void> add_message_type(node& n, std::string manifest, std::uint32_t version = 1) {
  auto& codec = n.codec();
  if (auto existing = codec.find<T>()) {
    if (existing->manifest != manifest || existing->version != version)
      return error{errc::invalid_argument,
                   "add_message_type: the type is already registered as '" + existing->manifest
                     + "' version " + std::to_string(existing->version) + ", not '" + manifest
                     + "' version " + std::to_string(version)};
  } else if (auto r = codec.add<T>(manifest, version); !r) {
    return r;
  }
  detail::message_adapter a{manifest, version, &detail::encode_value<T>,
                            &detail::decode_value<T>, &detail::decode_one_value<T>};
  return detail::message_types_of(n.context())->add(std::move(a), typeid(T));
}

} // namespace troupe::remote
