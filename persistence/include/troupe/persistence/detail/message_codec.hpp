// Internal: how one entity type's commands and replies map to the codec, so that
// they can travel between nodes (entity_protocol.hpp). Built once per entity type
// and registry; building it checks that every command type of Entity::command and
// every reply type (Command::reply) is registered, and spawning an entity requires
// that (entity.hpp, make_blueprint).
//
// `done` is troupe's own reply type: it travels under the manifest "troupe.done"
// without a registration.
//
// Thread-safety: immutable once built; every member may be called concurrently.
#pragma once

#include "troupe/persistence/detail/entity_model.hpp"

#include <fmt/core.h>

#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <variant>

namespace troupe::persistence {

/// A value encoded for the wire: the codec's manifest, version and CBOR bytes.
struct encoded_message {
  std::string manifest;
  std::uint32_t version = 1;
  bytes payload;
  friend bool operator==(const encoded_message&, const encoded_message&) = default;
};

/// The manifest under which `done` replies travel (no registration needed).
inline constexpr std::string_view done_manifest = "troupe.done";

} // namespace troupe::persistence

namespace troupe::persistence::detail {

/// One entity type's commands and replies, type-erased.
class message_codec {
public:
  virtual ~message_codec() = default;
  virtual const std::string& entity_type() const = 0;
  /// A command of this entity type from its manifest, version and bytes.
  virtual expected<command_ptr> decode_command(std::string_view manifest, std::uint32_t version,
                                               byte_span payload) const = 0;
  virtual expected<encoded_message> encode_command(const command_box& cmd) const = 0;
  /// Encodes `reply`, the entity's answer to `cmd` (of type `Command::reply`).
  virtual expected<encoded_message> encode_reply(const command_box& cmd,
                                                 const reply_box& reply) const = 0;
  /// A reply of any of this entity type's commands, boxed as the entity boxes it.
  virtual expected<reply_box> decode_reply(std::string_view manifest, std::uint32_t version,
                                           byte_span payload) const = 0;
};

template <class Entity>
class typed_message_codec final : public message_codec {
public:
  using command_type = typename Entity::command;
  static constexpr std::size_t command_count = variant_size<command_type>::value;

  /// Fails with unknown_manifest naming the first unregistered command or reply type.
  static expected<std::shared_ptr<const typed_message_codec>>
  make(std::shared_ptr<const codec_registry> codec) {
    auto result = std::make_shared<typed_message_codec>();
    result->registry_ = std::move(codec);
    result->type_ = std::string{Entity::entity_type};
    error missing;
    fill<0>(*result, missing);
    if (missing)
      return missing;
    return std::shared_ptr<const typed_message_codec>{std::move(result)};
  }

  bool same_registry(const std::shared_ptr<const codec_registry>& codec) const {
    return registry_ == codec;
  }

  const std::string& entity_type() const override { return type_; }

  expected<command_ptr> decode_command(std::string_view manifest, std::uint32_t version,
                                       byte_span payload) const override {
    auto i = command_decoders_.find(std::string{manifest});
    if (i == command_decoders_.end())
      return error{errc::unknown_manifest,
                   fmt::format("'{}' is not a command of entity type '{}'", manifest, type_)};
    return i->second(*registry_, manifest, version, payload);
  }

  expected<encoded_message> encode_command(const command_box& box) const override {
    const auto& cmd = static_cast<const typed_command<Entity>&>(box).value;
    return std::visit([this](const auto& c) { return encode(c); }, cmd);
  }

  expected<encoded_message> encode_reply(const command_box& box,
                                         const reply_box& reply) const override {
    const auto& cmd = static_cast<const typed_command<Entity>&>(box).value;
    return std::visit(
      [&](const auto& c) -> expected<encoded_message> {
        using reply_type = typename std::decay_t<decltype(c)>::reply;
        if constexpr (std::is_same_v<reply_type, done>) {
          return encoded_message{std::string{done_manifest}, 1, bytes{0xa0}};  // CBOR {}
        } else {
          if (!reply)
            return error{errc::internal,
                         fmt::format("entity type '{}': an empty reply to {}", type_,
                                     type_name(typeid(c)))};
          return encode(*std::static_pointer_cast<const reply_type>(reply));
        }
      },
      cmd);
  }

  expected<reply_box> decode_reply(std::string_view manifest, std::uint32_t version,
                                   byte_span payload) const override {
    if (manifest == done_manifest)
      return box_reply(done{});
    auto i = reply_decoders_.find(std::string{manifest});
    if (i == reply_decoders_.end())
      return error{errc::unknown_manifest,
                   fmt::format("'{}' is not a reply of entity type '{}'", manifest, type_)};
    return i->second(*registry_, manifest, version, payload);
  }

private:
  using command_decoder = expected<command_ptr> (*)(const codec_registry&, std::string_view,
                                                    std::uint32_t, byte_span);
  using reply_decoder = expected<reply_box> (*)(const codec_registry&, std::string_view,
                                                std::uint32_t, byte_span);

  static error unregistered(std::string_view what, std::string_view type_name_text,
                            std::string_view entity_type) {
    return error{errc::unknown_manifest,
                 fmt::format("{} {} of entity type '{}' is not registered in the codec "
                             "(codec_registry::add): commands and replies must be, so that "
                             "they can travel between nodes",
                             what, type_name_text, entity_type)};
  }

  template <std::size_t I>
  static void fill(typed_message_codec& self, error& missing) {
    if constexpr (I < command_count) {
      using command = std::variant_alternative_t<I, command_type>;
      using reply_type = typename command::reply;
      auto* c = self.registry_->template find<command>();
      if (c == nullptr) {
        missing = unregistered("command type", type_name(typeid(command)), self.type_);
        return;
      }
      self.command_decoders_.emplace(
        c->manifest, [](const codec_registry& r, std::string_view m, std::uint32_t v,
                        byte_span p) -> expected<command_ptr> {
          auto x = r.template decode<command>(m, v, p);
          if (!x)
            return std::move(x).error();
          return std::make_shared<typed_command<Entity>>(
            command_type{std::in_place_index<I>, std::move(*x)});
        });
      if constexpr (!std::is_same_v<reply_type, done>) {
        auto* rep = self.registry_->template find<reply_type>();
        if (rep == nullptr) {
          missing = unregistered(fmt::format("reply type {} of command", type_name(typeid(reply_type))),
                                 type_name(typeid(command)), self.type_);
          return;
        }
        self.reply_decoders_.emplace(
          rep->manifest, [](const codec_registry& r, std::string_view m, std::uint32_t v,
                            byte_span p) -> expected<reply_box> {
            auto x = r.template decode<reply_type>(m, v, p);
            if (!x)
              return std::move(x).error();
            return box_reply(std::move(*x));
          });
      }
      fill<I + 1>(self, missing);
    }
  }

  template <class T>
  expected<encoded_message> encode(const T& x) const {
    auto* entry = registry_->template find<T>();
    if (entry == nullptr)
      return unregistered("type", type_name(typeid(T)), type_);
    encoded_message out{entry->manifest, entry->version, {}};
    if (auto ok = registry_->encode_into(x, out.payload); !ok)
      return std::move(ok).error();
    return out;
  }

  std::shared_ptr<const codec_registry> registry_;
  std::string type_;
  std::unordered_map<std::string, command_decoder> command_decoders_;
  std::unordered_map<std::string, reply_decoder> reply_decoders_;
};

/// The message codec of Entity for one registry, shared by every spawn against it.
template <class Entity>
expected<std::shared_ptr<const typed_message_codec<Entity>>>
cached_message_codec(std::shared_ptr<const codec_registry> codec) {
  return cached_view<typed_message_codec<Entity>>(std::move(codec));
}

} // namespace troupe::persistence::detail
