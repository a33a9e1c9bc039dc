#include "troupe/actors/codec.hpp"

#include "troupe/actors/remote/cbor.hpp"

#include <fmt/core.h>

namespace troupe {

expected<void> codec_registry::insert(codec_entry e) {
  if (e.manifest.empty())
    return error{errc::invalid_argument, "codec: a manifest must not be empty"};
  if (e.version == 0)
    return error{errc::invalid_argument,
                 fmt::format("codec: '{}': versions start at 1", e.manifest)};
  if (by_manifest_.count(e.manifest) != 0)
    return error{errc::invalid_argument,
                 fmt::format("codec: manifest '{}' is already registered", e.manifest)};
  if (auto i = by_type_.find(e.type); i != by_type_.end())
    return error{errc::invalid_argument,
                 fmt::format("codec: type {} is already registered as '{}'", e.type.name(),
                             i->second->manifest)};
  auto ptr = std::make_unique<codec_entry>(std::move(e));
  by_type_.emplace(ptr->type, ptr.get());
  by_manifest_.emplace(ptr->manifest, std::move(ptr));
  return {};
}

expected<void> codec_registry::add_upcaster(std::string_view manifest, std::uint32_t from_version,
                                            upcaster fn) {
  auto i = by_manifest_.find(manifest);
  if (i == by_manifest_.end())
    return error{errc::unknown_manifest,
                 fmt::format("codec: cannot add an upcaster for unregistered manifest '{}'",
                             manifest)};
  auto& e = *i->second;
  if (from_version == 0 || from_version >= e.version)
    return error{errc::invalid_argument,
                 fmt::format("codec: '{}' is at v{}; an upcaster from v{} makes no sense",
                             manifest, e.version, from_version)};
  e.upcasters[from_version] = std::move(fn);
  return {};
}

const codec_entry* codec_registry::find(std::string_view manifest) const {
  auto i = by_manifest_.find(manifest);
  return i == by_manifest_.end() ? nullptr : i->second.get();
}

const codec_entry* codec_registry::find(std::type_index type) const {
  auto i = by_type_.find(type);
  return i == by_type_.end() ? nullptr : i->second;
}

std::vector<std::string> codec_registry::manifests() const {
  std::vector<std::string> result;
  for (auto& [name, entry] : by_manifest_)
    result.push_back(name);
  return result;
}

error codec_registry::encode_failed(const codec_entry& e, std::string_view why) {
  return error{errc::encode_failed,
               fmt::format("codec: cannot encode '{}' v{}: {}", e.manifest, e.version, why)};
}

error codec_registry::unregistered(std::string_view type_name) {
  return error{errc::unknown_manifest,
               fmt::format("codec: type {} is not registered (call codec_registry::add)",
                           type_name)};
}

error codec_registry::rejected(std::string_view manifest, std::uint32_t version,
                               std::string_view why) {
  return error{errc::decode_failed,
               fmt::format("codec: cannot decode '{}' v{}: {}", manifest, version, why)};
}

// The transport's CBOR reader and writer (remote/cbor.hpp): the same documents and
// bytes as nlohmann's from_cbor (strict, tags refused) and to_cbor, held to that by
// a differential fuzzer, several times faster (replay decodes every event).
expected<nlohmann::json> codec_registry::cbor_to_json(byte_span payload) {
  nlohmann::json doc;
  std::string why;
  if (!remote::detail::read_cbor(payload, doc, why))
    return error{errc::decode_failed, fmt::format("malformed CBOR: {}", why)};
  return doc;
}

void codec_registry::append_cbor(const nlohmann::json& doc, bytes& out) {
  remote::detail::write_cbor(doc, out);
}

expected<nlohmann::json> codec_registry::decode_document(std::string_view manifest,
                                                         std::uint32_t version, byte_span payload,
                                                         std::type_index expected_type) const {
  auto e = find(manifest);
  if (e == nullptr)
    return error{errc::unknown_manifest,
                 fmt::format("codec: no type is registered for manifest '{}'", manifest)};
  if (expected_type != std::type_index{typeid(void)} && expected_type != e->type)
    return error{errc::decode_failed,
                 fmt::format("codec: manifest '{}' belongs to type {}, not {}", manifest,
                             e->type.name(), expected_type.name())};
  if (version > e->version)
    return error{errc::unsupported_version,
                 fmt::format("codec: '{}' v{} is newer than this build knows (v{})", manifest,
                             version, e->version)};
  if (version == 0)
    return error{errc::unsupported_version,
                 fmt::format("codec: '{}' v0 is not a valid version", manifest)};
  auto doc = cbor_to_json(payload);
  if (!doc)
    return rejected(manifest, version, doc.error().message());
  for (auto v = version; v < e->version; ++v) {
    auto up = e->upcasters.find(v);
    if (up == e->upcasters.end())
      return error{errc::unsupported_version,
                   fmt::format("codec: no upcaster from '{}' v{} to v{}", manifest, v, v + 1)};
    try {
      auto lifted = up->second(std::move(*doc));
      if (!lifted)
        return rejected(manifest, version,
                        fmt::format("upcaster v{} failed: {}", v, lifted.error().message()));
      doc = std::move(*lifted);
    } catch (const std::exception& ex) {
      return rejected(manifest, version, fmt::format("upcaster v{} threw: {}", v, ex.what()));
    }
  }
  return doc;
}

expected<nlohmann::json> codec_registry::to_json(std::string_view manifest, std::uint32_t version,
                                                 byte_span payload) const {
  auto doc = decode_document(manifest, version, payload, std::type_index{typeid(void)});
  if (!doc)
    return doc;
  try {
    if (auto ok = find(manifest)->check(*doc); !ok)
      return std::move(ok).error();
  } catch (const std::exception& ex) {
    return rejected(manifest, version, ex.what());
  }
  return doc;
}

expected<bytes> codec_registry::from_json(std::string_view manifest,
                                          const nlohmann::json& doc) const {
  auto e = find(manifest);
  if (e == nullptr)
    return error{errc::unknown_manifest,
                 fmt::format("codec: no type is registered for manifest '{}'", manifest)};
  try {
    if (auto ok = e->check(doc); !ok)
      return std::move(ok).error();
  } catch (const std::exception& ex) {
    return rejected(manifest, e->version, ex.what());
  }
  bytes out;
  append_cbor(doc, out);
  return out;
}

} // namespace troupe
