#include "troupe/actors/remote/message_types.hpp"

#include <caf/atom.hpp>
#include <caf/type_nr.hpp>
#include <caf/unit.hpp>

#include <fmt/core.h>

#include <mutex>

namespace troupe::remote::detail {

namespace {

// Built-in types are CBOR documents of their value (atoms as their 64-bit code),
// outside the codec registry, under reserved "troupe." manifests.

template <class T>
nlohmann::json builtin_to_json(const T& x) {
  if constexpr (std::is_same_v<T, caf::atom_value>)
    return static_cast<std::uint64_t>(x);
  else if constexpr (std::is_same_v<T, caf::unit_t>)
    return nullptr;
  else
    return x;
}

template <class T>
T builtin_from_json(const nlohmann::json& j) {
  if constexpr (std::is_same_v<T, caf::atom_value>)
    return static_cast<caf::atom_value>(j.get<std::uint64_t>());
  else if constexpr (std::is_same_v<T, caf::unit_t>)
    return j.is_null() ? caf::unit : throw std::runtime_error("unit must be null");
  else
    return j.get<T>();
}

template <class T>
expected<void> encode_builtin(const codec_registry&, const void* value, wire::bytes& out) {
  nlohmann::json::to_cbor(builtin_to_json(*static_cast<const T*>(value)), out);
  return {};
}

template <class T>
expected<T> decode_builtin_value(std::string_view manifest, std::uint32_t version,
                                 wire::byte_span payload) {
  if (version != 1)
    return error{errc::unsupported_version,
                 fmt::format("'{}' has only version 1, got {}", manifest, version)};
  auto doc = nlohmann::json::from_cbor(payload.begin(), payload.end(), true, false);
  if (doc.is_discarded())
    return error{errc::decode_failed, fmt::format("'{}': malformed CBOR", manifest)};
  try {
    return builtin_from_json<T>(doc);
  } catch (const std::exception& ex) {
    return error{errc::decode_failed, fmt::format("'{}': {}", manifest, ex.what())};
  }
}

template <class T>
expected<void> decode_builtin(const codec_registry&, std::string_view manifest,
                              std::uint32_t version, wire::byte_span payload,
                              caf::message_builder& out) {
  auto x = decode_builtin_value<T>(manifest, version, payload);
  if (!x)
    return std::move(x).error();
  out.append(std::move(*x));
  return {};
}

template <class T>
expected<caf::message> decode_builtin_one(const codec_registry&, std::string_view manifest,
                                          std::uint32_t version, wire::byte_span payload) {
  auto x = decode_builtin_value<T>(manifest, version, payload);
  if (!x)
    return std::move(x).error();
  return caf::make_message(std::move(*x));
}

template <class T>
std::pair<std::uint16_t, std::shared_ptr<const message_adapter>> builtin(std::string manifest) {
  static_assert(caf::type_nr<T>::value != 0);
  return {caf::type_nr<T>::value,
          std::make_shared<const message_adapter>(message_adapter{
            std::move(manifest), 1, &encode_builtin<T>, &decode_builtin<T>,
            &decode_builtin_one<T>})};
}

} // namespace

message_types::message_types() {
  for (auto [nr, a] : {builtin<caf::atom_value>("troupe.atom"),
                       builtin<std::string>("troupe.string"), builtin<bool>("troupe.bool"),
                       builtin<double>("troupe.f64"), builtin<std::int32_t>("troupe.i32"),
                       builtin<std::int64_t>("troupe.i64"), builtin<std::uint64_t>("troupe.u64"),
                       builtin<caf::unit_t>("troupe.unit")}) {
    by_builtin_[nr] = a;
    by_manifest_[a->manifest] = a;
  }
}

expected<void> message_types::add(message_adapter a, std::type_index type) {
  std::unique_lock<std::shared_mutex> guard{mtx_};
  if (a.manifest.rfind("troupe.", 0) == 0)
    return error{errc::invalid_argument,
                 fmt::format("manifest '{}': the 'troupe.' prefix is reserved", a.manifest)};
  if (auto i = by_manifest_.find(a.manifest); i != by_manifest_.end()) {
    auto t = by_type_.find(type);
    if (t != by_type_.end() && t->second == i->second && i->second->version == a.version)
      return {};  // the same registration again
    return error{errc::invalid_argument,
                 fmt::format("manifest '{}' is already registered for remote messaging",
                             a.manifest)};
  }
  if (by_type_.count(type) != 0)
    return error{errc::invalid_argument,
                 fmt::format("the type of manifest '{}' is already registered under another "
                             "manifest",
                             a.manifest)};
  auto shared = std::make_shared<const message_adapter>(std::move(a));
  by_manifest_[shared->manifest] = shared;
  by_type_.emplace(type, shared);
  return {};
}

const message_adapter* message_types::find(const caf::rtti_pair& type) const {
  std::shared_lock<std::shared_mutex> guard{mtx_};
  if (type.first != 0) {
    auto i = by_builtin_.find(type.first);
    return i == by_builtin_.end() ? nullptr : i->second.get();
  }
  if (type.second == nullptr)
    return nullptr;
  auto i = by_type_.find(std::type_index{*type.second});
  return i == by_type_.end() ? nullptr : i->second.get();
}

const message_adapter* message_types::find(std::string_view manifest) const {
  std::shared_lock<std::shared_mutex> guard{mtx_};
  auto i = by_manifest_.find(std::string{manifest});
  return i == by_manifest_.end() ? nullptr : i->second.get();
}

std::shared_ptr<message_types> message_types_of(node_context& ctx) {
  // set_extension/extension are individually locked; this lock makes the
  // check-then-create atomic across threads.
  static std::mutex creation;
  std::lock_guard<std::mutex> guard{creation};
  auto existing = ctx.extension<message_types>();
  if (existing)
    return existing;
  auto created = std::make_shared<message_types>();
  ctx.set_extension<message_types>(created);
  return created;
}

} // namespace troupe::remote::detail
