// How a shard region carries the commands and replies of an entity type between
// nodes: each command and reply becomes (manifest, version, CBOR bytes) through the
// node's codec, and back.
//
// Every command type of the entity's variant, and every command's reply type, must
// be registered in the codec (codec_registry::add) under a stable manifest; making
// the protocol checks this and names the first type that is not. Replies of the
// built-in types (persistence::done, bool, std::int64_t, std::uint64_t, double,
// std::string) need no registration.
//
// Thread-safety: an entity_protocol is immutable once made; its functions may be
// called from any thread.
#pragma once

#include "troupe/actors/codec.hpp"
#include "troupe/actors/expected.hpp"
#include "troupe/persistence/detail/entity_model.hpp"
#include "troupe/persistence/effect.hpp"

#include <fmt/format.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <type_traits>
#include <variant>

namespace troupe::sharding {

/// One value on the wire: its codec manifest, version and CBOR bytes.
struct wire_payload {
  std::string manifest;
  std::uint32_t version = 1;
  bytes data;
};

using persistence::detail::command_box;
using persistence::detail::command_ptr;
using persistence::detail::reply_box;

/// The type-erased codec of one entity type's commands and replies.
struct entity_protocol {
  std::string entity_type;
  std::function<expected<wire_payload>(const command_box&)> encode_command;
  std::function<expected<command_ptr>(const wire_payload&)> decode_command;
  /// The reply to `cmd` (its type follows from the command's type).
  std::function<expected<wire_payload>(const command_box& cmd, const reply_box&)> encode_reply;
  std::function<expected<reply_box>(const command_box& cmd, const wire_payload&)> decode_reply;
};

namespace detail {

/// The manifest of a built-in reply type, or an empty view.
template <class R>
constexpr std::string_view builtin_manifest() {
  if constexpr (std::is_same_v<R, persistence::done>)
    return "troupe.done";
  else if constexpr (std::is_same_v<R, bool>)
    return "troupe.bool";
  else if constexpr (std::is_same_v<R, std::int64_t>)
    return "troupe.int64";
  else if constexpr (std::is_same_v<R, std::uint64_t>)
    return "troupe.uint64";
  else if constexpr (std::is_same_v<R, double>)
    return "troupe.double";
  else if constexpr (std::is_same_v<R, std::string>)
    return "troupe.string";
  else
    return {};
}

expected<void> check_registered(const codec_registry& codec, std::type_index type,
                                std::string_view entity_type, std::string_view role);
error wrong_manifest(std::string_view entity_type, std::string_view what,
                     std::string_view manifest);

template <class T>
expected<wire_payload> encode_value(const codec_registry& codec, const T& value) {
  constexpr auto builtin = builtin_manifest<T>();
  if constexpr (!builtin.empty()) {
    wire_payload p{std::string{builtin}, 1, {}};
    if constexpr (!std::is_same_v<T, persistence::done>)
      codec_registry::append_cbor(nlohmann::json(value), p.data);
    return p;
  } else {
    auto* entry = codec.find<T>();
    if (entry == nullptr)
      return error{errc::unknown_manifest,
                   fmt::format("{} is not registered in the codec",
                               persistence::detail::type_name(typeid(T)))};
    wire_payload p{entry->manifest, entry->version, {}};
    if (auto r = codec.encode_into(value, p.data); !r)
      return std::move(r).error();
    return p;
  }
}

template <class T>
expected<T> decode_value(const codec_registry& codec, const wire_payload& p) {
  constexpr auto builtin = builtin_manifest<T>();
  if constexpr (!builtin.empty()) {
    if (p.manifest != builtin)
      return error{errc::decode_failed,
                   fmt::format("expected a {} reply, got '{}'", builtin, p.manifest)};
    if constexpr (std::is_same_v<T, persistence::done>) {
      return persistence::done{};
    } else {
      auto doc = codec_registry::cbor_to_json(p.data);
      if (!doc)
        return std::move(doc).error();
      try {
        return doc->template get<T>();
      } catch (const std::exception& ex) {
        return error{errc::decode_failed, fmt::format("{} reply: {}", builtin, ex.what())};
      }
    }
  } else {
    return codec.decode<T>(p.manifest, p.version, p.data);
  }
}

template <class T>
expected<void> check_value_type(const codec_registry& codec, std::string_view entity_type,
                                std::string_view role) {
  if constexpr (!builtin_manifest<T>().empty())
    return {};
  else
    return check_registered(codec, typeid(T), entity_type, role);
}

} // namespace detail

/// The protocol of entity type `Entity` over `codec`; fails with unknown_manifest
/// naming the first command or reply type the codec lacks.
template <class Entity>
expected<entity_protocol> make_protocol(std::shared_ptr<const codec_registry> codec) {
  using command = typename Entity::command;
  using typed = persistence::detail::typed_command<Entity>;
  std::string type{Entity::entity_type};
  expected<void> ok;
  auto check_all = [&]<class... Cs>(std::variant<Cs...>*) {
    ((ok = ok ? detail::check_value_type<Cs>(*codec, type, "command") : ok), ...);
    ((ok = ok ? detail::check_value_type<typename Cs::reply>(*codec, type, "reply") : ok), ...);
  };
  check_all(static_cast<command*>(nullptr));
  if (!ok)
    return std::move(ok).error();
  entity_protocol p;
  p.entity_type = type;
  p.encode_command = [codec](const command_box& box) -> expected<wire_payload> {
    return std::visit([&](const auto& c) { return detail::encode_value(*codec, c); },
                      static_cast<const typed&>(box).value);
  };
  p.decode_command = [codec, type](const wire_payload& w) -> expected<command_ptr> {
    expected<command_ptr> result = detail::wrong_manifest(type, "command", w.manifest);
    auto try_one = [&]<class C>(C*) {
      auto* entry = codec->find<C>();
      if (entry == nullptr || entry->manifest != w.manifest)
        return false;
      auto c = codec->decode<C>(w.manifest, w.version, w.data);
      if (c)
        result = command_ptr{std::make_shared<typed>(command{std::move(*c)})};
      else
        result = std::move(c).error();
      return true;
    };
    [&]<class... Cs>(std::variant<Cs...>*) {
      (try_one(static_cast<Cs*>(nullptr)) || ...);
    }(static_cast<command*>(nullptr));
    return result;
  };
  p.encode_reply = [codec](const command_box& box, const reply_box& r) -> expected<wire_payload> {
    return std::visit(
      [&](const auto& c) {
        using reply = typename std::decay_t<decltype(c)>::reply;
        return detail::encode_value(*codec, *std::static_pointer_cast<reply>(r));
      },
      static_cast<const typed&>(box).value);
  };
  p.decode_reply = [codec](const command_box& box, const wire_payload& w) -> expected<reply_box> {
    return std::visit(
      [&](const auto& c) -> expected<reply_box> {
        using reply = typename std::decay_t<decltype(c)>::reply;
        auto v = detail::decode_value<reply>(*codec, w);
        if (!v)
          return std::move(v).error();
        return persistence::detail::box_reply(std::move(*v));
      },
      static_cast<const typed&>(box).value);
  };
  return p;
}

} // namespace troupe::sharding
