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
// (register first); lookups are concurrent and lock-free.
#pragma once

#include "troupe/actors/codec.hpp"
#include "troupe/actors/node.hpp"
#include "troupe/actors/remote/cbor.hpp"
#include "troupe/actors/remote/wire.hpp"

#include <caf/mailbox_element.hpp>
#include <caf/message.hpp>
#include <caf/message_builder.hpp>
#include <caf/rtti_pair.hpp>

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <typeindex>
#include <vector>

namespace troupe::remote {

namespace detail {

/// How values of one type cross the wire.
struct message_adapter {
  std::string manifest;
  std::uint32_t version = 1;
  /// Appends the payload bytes of the value at `value` (a T) to `out`.
  expected<void> (*encode)(const void* value, wire::bytes& out);
  /// Decodes a payload written at `version` and appends the value to `out`.
  expected<void> (*decode)(const message_adapter& self, const codec_registry& codec,
                           std::uint32_t version, wire::byte_span payload,
                           caf::message_builder& out);
  /// Same, for the common single-value message: the value goes right into a
  /// mailbox element (one allocation, no builder, no separate message).
  expected<caf::mailbox_element_ptr> (*decode_element)(const message_adapter& self,
                                                       const codec_registry& codec,
                                                       std::uint32_t version,
                                                       wire::byte_span payload,
                                                       caf::strong_actor_ptr sender,
                                                       caf::message_id mid);
};

/// The adapters of one node, found by the type inside a CAF message (sending) or by
/// manifest (receiving). Lookups are lock-free: they read an immutable snapshot
/// that add() replaces (registration is rare and happens before traffic).
class message_types {
public:
  message_types();
  ~message_types();
  message_types(const message_types&) = delete;
  message_types& operator=(const message_types&) = delete;

  /// `troupe_layer`: a layer of troupe registers its own type under a reserved
  /// "troupe." manifest (users may not).
  expected<void> add(message_adapter a, const std::type_info& type, bool troupe_layer = false);
  const message_adapter* find(const caf::rtti_pair& type) const;
  const message_adapter* find(std::string_view manifest) const;

  struct tables;

private:
  std::mutex write_mtx_;
  std::atomic<const tables*> current_{nullptr};
  // Every adapter and snapshot ever published, freed with this object: readers
  // hold plain pointers into them without reference counts.
  std::vector<std::unique_ptr<message_adapter>> adapters_;
  std::vector<std::unique_ptr<const tables>> snapshots_;
};

/// The node's adapters (created on first use, shared with its transport).
std::shared_ptr<message_types> message_types_of(node_context& ctx);

// Values of the registered version go straight to and from nlohmann's CBOR, exactly
// as codec_registry::encode / decode do (a test checks that the bytes match), without
// the registry's lookups on every message; older versions go through the registry,
// which applies the upcasters.

template <class T>
expected<void> encode_value(const void* value, wire::bytes& out) {
  try {
    nlohmann::json doc = *static_cast<const T*>(value);
    write_cbor(doc, out);
    return {};
  } catch (const std::exception& ex) {
    return error{errc::encode_failed, ex.what()};
  }
}

template <class T>
expected<T> decode_value(const message_adapter& self, const codec_registry& codec,
                         std::uint32_t version, wire::byte_span payload) {
  if (version != self.version)
    return codec.decode<T>(self.manifest, version, payload);
  // The document is reused by the next message of this type on this thread
  // (read_cbor updates it in place); a large one is released.
  thread_local nlohmann::json doc;
  struct release_large {
    std::size_t size;
    ~release_large() {
      if (size > 64 * 1024)
        doc = nullptr;
    }
  } release{payload.size()};
  std::string why;
  if (!read_cbor(payload, doc, why)) {
    doc = nullptr;
    return error{errc::decode_failed, "codec: cannot decode '" + self.manifest + "' v"
                                        + std::to_string(version) + ": " + why};
  }
  try {
    return doc.template get<T>();
  } catch (const std::exception& ex) {
    return error{errc::decode_failed, "codec: cannot decode '" + self.manifest + "' v"
                                        + std::to_string(version) + ": " + ex.what()};
  }
}

/// How the values of one type are decoded (decode_value, or the builtins').
template <class T>
using value_decoder = expected<T> (*)(const message_adapter&, const codec_registry&,
                                      std::uint32_t, wire::byte_span);

template <class T, value_decoder<T> Decode>
expected<void> decode_into(const message_adapter& self, const codec_registry& codec,
                           std::uint32_t version, wire::byte_span payload,
                           caf::message_builder& out) {
  auto x = Decode(self, codec, version, payload);
  if (!x)
    return std::move(x).error();
  out.append(std::move(*x));
  return {};
}

template <class T, value_decoder<T> Decode>
expected<caf::mailbox_element_ptr>
decode_element(const message_adapter& self, const codec_registry& codec, std::uint32_t version,
               wire::byte_span payload, caf::strong_actor_ptr sender, caf::message_id mid) {
  auto x = Decode(self, codec, version, payload);
  if (!x)
    return std::move(x).error();
  return caf::make_mailbox_element(std::move(sender), mid, {}, std::move(*x));
}

} // namespace detail

namespace detail {

template <class T>
expected<void> add_message_type(node& n, std::string manifest, std::uint32_t version,
                                bool troupe_layer) {
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
  message_adapter a{manifest, version, &encode_value<T>, &decode_into<T, &decode_value<T>>,
                    &decode_element<T, &decode_value<T>>};
  return message_types_of(n.context())->add(std::move(a), typeid(T), troupe_layer);
}

} // namespace detail

/// Registers T for remote messaging on node `n` (see the file comment).
template <class T>
expected<void> add_message_type(node& n, std::string manifest, std::uint32_t version = 1) {
  return detail::add_message_type<T>(n, std::move(manifest), version, false);
}

/// The same for troupe's own layers, under a reserved "troupe." manifest.
template <class T>
expected<void> add_troupe_message_type(node& n, std::string manifest, std::uint32_t version = 1) {
  return detail::add_message_type<T>(n, std::move(manifest), version, true);
}

} // namespace troupe::remote
