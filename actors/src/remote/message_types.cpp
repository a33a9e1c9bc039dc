#include "troupe/actors/remote/message_types.hpp"

#include <caf/atom.hpp>
#include <caf/type_nr.hpp>
#include <caf/unit.hpp>

#include <fmt/core.h>

#include <mutex>
#include <unordered_map>

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
expected<void> encode_builtin(const void* value, wire::bytes& out) {
  write_cbor(builtin_to_json(*static_cast<const T*>(value)), out);
  return {};
}

template <class T>
expected<T> decode_builtin_value(const message_adapter& self, const codec_registry&,
                                 std::uint32_t version, wire::byte_span payload) {
  if (version != 1)
    return error{errc::unsupported_version,
                 fmt::format("'{}' has only version 1, got {}", self.manifest, version)};
  nlohmann::json doc;
  std::string why;
  if (!read_cbor(payload, doc, why))
    return error{errc::decode_failed, fmt::format("'{}': {}", self.manifest, why)};
  try {
    return builtin_from_json<T>(doc);
  } catch (const std::exception& ex) {
    return error{errc::decode_failed, fmt::format("'{}': {}", self.manifest, ex.what())};
  }
}

struct string_hash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept {
    return std::hash<std::string_view>{}(s);
  }
};

} // namespace

struct message_types::tables {
  std::unordered_map<const std::type_info*, const message_adapter*> by_type_info;
  std::unordered_map<std::type_index, const message_adapter*> by_type;  // if type_infos differ
  std::unordered_map<std::uint16_t, const message_adapter*> by_builtin;
  std::unordered_map<std::string, const message_adapter*, string_hash, std::equal_to<>>
    by_manifest;
};

namespace {

template <class T>
void add_builtin(message_types::tables& t, std::vector<std::unique_ptr<message_adapter>>& all,
                 std::string manifest) {
  static_assert(caf::type_nr<T>::value != 0);
  all.push_back(std::make_unique<message_adapter>(message_adapter{
    std::move(manifest), 1, &encode_builtin<T>, &decode_into<T, &decode_builtin_value<T>>,
    &decode_element<T, &decode_builtin_value<T>>}));
  t.by_builtin[caf::type_nr<T>::value] = all.back().get();
  t.by_manifest[all.back()->manifest] = all.back().get();
}

} // namespace

message_types::message_types() {
  auto t = std::make_unique<tables>();
  add_builtin<caf::atom_value>(*t, adapters_, "troupe.atom");
  add_builtin<std::string>(*t, adapters_, "troupe.string");
  add_builtin<bool>(*t, adapters_, "troupe.bool");
  add_builtin<double>(*t, adapters_, "troupe.f64");
  add_builtin<std::int32_t>(*t, adapters_, "troupe.i32");
  add_builtin<std::int64_t>(*t, adapters_, "troupe.i64");
  add_builtin<std::uint64_t>(*t, adapters_, "troupe.u64");
  add_builtin<caf::unit_t>(*t, adapters_, "troupe.unit");
  current_.store(t.get());
  snapshots_.push_back(std::move(t));
}

message_types::~message_types() = default;

expected<void> message_types::add(message_adapter a, const std::type_info& type_info,
                                  bool troupe_layer) {
  std::type_index type{type_info};
  std::lock_guard<std::mutex> guard{write_mtx_};
  auto& t = *current_.load();
  if (!troupe_layer && a.manifest.rfind("troupe.", 0) == 0)
    return error{errc::invalid_argument,
                 fmt::format("manifest '{}': the 'troupe.' prefix is reserved", a.manifest)};
  auto by_manifest = t.by_manifest.find(a.manifest);
  auto by_type = t.by_type.find(type);
  if (by_manifest != t.by_manifest.end() || by_type != t.by_type.end()) {
    if (by_manifest != t.by_manifest.end() && by_type != t.by_type.end()
        && by_manifest->second == by_type->second && by_manifest->second->version == a.version)
      return {};  // the same registration again
    return error{errc::invalid_argument,
                 fmt::format("manifest '{}' or its type is already registered for remote "
                             "messaging",
                             a.manifest)};
  }
  auto copy = std::make_unique<tables>(t);
  adapters_.push_back(std::make_unique<message_adapter>(std::move(a)));
  auto* added = adapters_.back().get();
  copy->by_manifest[added->manifest] = added;
  copy->by_type[type] = added;
  copy->by_type_info[&type_info] = added;
  current_.store(copy.get(), std::memory_order_release);
  snapshots_.push_back(std::move(copy));
  return {};
}

const message_adapter* message_types::find(const caf::rtti_pair& type) const {
  auto& t = *current_.load(std::memory_order_acquire);
  if (type.first != 0) {
    auto i = t.by_builtin.find(type.first);
    return i == t.by_builtin.end() ? nullptr : i->second;
  }
  if (type.second == nullptr)
    return nullptr;
  // type_info objects are normally unique per type: a pointer lookup avoids
  // hashing the type's name on every message.
  if (auto i = t.by_type_info.find(type.second); i != t.by_type_info.end())
    return i->second;
  auto i = t.by_type.find(std::type_index{*type.second});
  return i == t.by_type.end() ? nullptr : i->second;
}

const message_adapter* message_types::find(std::string_view manifest) const {
  auto& t = *current_.load(std::memory_order_acquire);
  auto i = t.by_manifest.find(manifest);
  return i == t.by_manifest.end() ? nullptr : i->second;
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
