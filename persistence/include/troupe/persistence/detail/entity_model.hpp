// Internal: the type-erased boundary between a user's entity type (templates, in
// the user's translation unit) and the entity runtime (one CAF actor implementation
// in persistence/src/entity_actor.cpp, compiled once).
//
// entity_model is one entity incarnation's typed logic: it owns the state, runs the
// command and event handlers, encodes and decodes events and snapshots through the
// codec. The runtime owns everything asynchronous: mailbox, stash, journal calls,
// recovery, replies. A model is used by exactly one actor, on that actor's thread.
//
// No exception leaves a model: exceptions thrown by user handlers or by to_json /
// from_json become errors naming the persistence id.
#pragma once

#include "troupe/actors/codec.hpp"
#include "troupe/actors/expected.hpp"
#include "troupe/persistence/effect.hpp"
#include "troupe/persistence/journal.hpp"

#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include <array>
#include <concepts>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <typeindex>
#include <unordered_map>
#include <variant>
#include <vector>

namespace troupe::persistence {

/// "<entity type>|<entity id>".
inline std::string persistence_id_of(std::string_view entity_type, std::string_view entity_id) {
  std::string result;
  result.reserve(entity_type.size() + 1 + entity_id.size());
  result.append(entity_type).append("|").append(entity_id);
  return result;
}

} // namespace troupe::persistence

namespace troupe::persistence::detail {

/// "bank::withdraw" for typeid(bank::withdraw) (demangled; the mangled name if that
/// fails).
std::string type_name(const char* mangled);
inline std::string type_name(const std::type_info& type) {
  return type_name(type.name());
}
inline std::string type_name(std::type_index type) {
  return type_name(type.name());
}

/// A command on its way to an entity: the entity's command variant, type-erased.
class command_box {
public:
  virtual ~command_box() = default;
  /// The C++ type of the command inside, for error messages.
  virtual std::string name() const = 0;
};
using command_ptr = std::shared_ptr<command_box>;

template <class Entity>
class typed_command final : public command_box {
public:
  explicit typed_command(typename Entity::command&& c) : value(std::move(c)) {}
  std::string name() const override {
    return std::visit([](const auto& c) { return type_name(typeid(c)); }, value);
  }
  typename Entity::command value;
};

/// What the runtime does after the command handler ran.
struct handle_result {
  enum class kind {
    complete,   ///< nothing to store: call complete() now
    persist,    ///< store the encoded events, then complete() or discard()
    unhandled,  ///< reply `failure` (unexpected_message)
    rejected,   ///< the events cannot be stored (encoding failed): reply `failure`
    failed,     ///< the handler threw: reply `failure` and stop the entity
  };
  kind what = kind::complete;
  error failure;
};

/// The effect's follow-ups, run after the events are durable.
struct completion {
  reply_result reply;  ///< always set: a value, a replied error, or "no reply"
  bool stop = false;
  error failure;       ///< an event handler or follow-up threw: stop with this error
};

class entity_model {
public:
  virtual ~entity_model() = default;

  /// Runs the command handler on the current state. For a persist, appends the
  /// encoded events to `out` (manifest, version, payload, tags; the runtime fills
  /// in the rest) and keeps the effect pending until complete() or discard().
  virtual handle_result handle(const command_box& cmd, std::vector<event_record>& out) = 0;

  /// Applies the pending events (if any) and runs the follow-ups.
  virtual completion complete() = 0;

  /// Forgets the pending effect: its events were not stored.
  virtual void discard() = 0;

  /// Recovery: decodes one stored event and applies it.
  virtual expected<void> apply(const event_record& record) = 0;

  /// Encodes the state as a snapshot (manifest, version, payload).
  virtual expected<void> encode_state(snapshot_record& out) const = 0;

  /// Recovery: replaces the state with a decoded snapshot.
  virtual expected<void> restore(const snapshot_record& snapshot) = 0;

  /// Runs the entity's on_recovery_completed hook, if it has one.
  virtual void recovery_completed() = 0;

  /// A copy of the state (a boxed Entity::state), for the testkit.
  virtual std::shared_ptr<void> state_copy() const = 0;

  /// The state as JSON (for the replay tool and for messages).
  virtual expected<nlohmann::json> state_json() const = 0;
};

// -- typed implementation ------------------------------------------------------------

template <class T>
concept json_encodable = requires(const T& x) { nlohmann::json(x); };

template <class Variant>
struct variant_size;
template <class... Ts>
struct variant_size<std::variant<Ts...>> : std::integral_constant<std::size_t, sizeof...(Ts)> {};

/// How one entity type's events and state map to the codec: built once per entity
/// type and node (it checks every event type is registered), shared by incarnations.
template <class Entity>
class entity_codec {
public:
  using event_type = typename Entity::event;
  using state_type = typename Entity::state;
  static constexpr std::size_t event_count = variant_size<event_type>::value;

  /// Fails with unknown_manifest naming the first unregistered event type.
  static expected<std::shared_ptr<const entity_codec>>
  make(std::shared_ptr<const codec_registry> codec) {
    return make(std::move(codec), Entity::entity_type, false);
  }

  /// Fails with unknown_manifest naming the first unregistered event type (or the
  /// state type, when `need_state`).
  static expected<std::shared_ptr<const entity_codec>>
  make(std::shared_ptr<const codec_registry> codec, std::string_view entity_type, bool need_state) {
    auto result = std::make_shared<entity_codec>();
    result->registry = std::move(codec);
    error missing;
    fill<0>(*result, entity_type, missing);
    if (missing)
      return missing;
    result->state_entry = result->registry->template find<state_type>();
    if (need_state && result->state_entry == nullptr)
      return error{errc::unknown_manifest,
                   fmt::format("entity type '{}' takes snapshots, but its state type {} is not "
                               "registered in the codec (codec_registry::add)",
                               entity_type, type_name(typeid(state_type)))};
    return std::shared_ptr<const entity_codec>{std::move(result)};
  }

  bool same_registry(const std::shared_ptr<const codec_registry>& codec) const {
    return registry == codec;
  }

  /// The alternative index of a manifest, or npos.
  std::size_t index_of(const std::string& manifest) const {
    auto i = by_manifest.find(manifest);
    return i == by_manifest.end() ? npos : i->second;
  }

  static constexpr std::size_t npos = ~std::size_t{0};
  using decode_fn = expected<event_type> (*)(const codec_registry&, const event_record&);

  std::shared_ptr<const codec_registry> registry;
  std::array<const codec_entry*, event_count> entries{};
  std::array<decode_fn, event_count> decoders{};
  std::unordered_map<std::string, std::size_t> by_manifest;
  const codec_entry* state_entry = nullptr;

private:
  template <std::size_t I>
  static void fill(entity_codec& self, std::string_view entity_type, error& missing) {
    if constexpr (I < event_count) {
      using alt = std::variant_alternative_t<I, event_type>;
      auto* e = self.registry->template find<alt>();
      if (e == nullptr) {
        if (!missing)
          missing = error{errc::unknown_manifest,
                          fmt::format("event type {} of entity type '{}' is not registered in "
                                      "the codec (codec_registry::add)",
                                      type_name(typeid(alt)), entity_type)};
        return;
      }
      self.entries[I] = e;
      self.by_manifest.emplace(e->manifest, I);
      self.decoders[I] = [](const codec_registry& c,
                            const event_record& r) -> expected<event_type> {
        auto x = c.template decode<alt>(r.manifest, r.version, r.payload);
        if (!x)
          return std::move(x).error();
        return event_type{std::in_place_index<I>, std::move(*x)};
      };
      fill<I + 1>(self, entity_type, missing);
    }
  }
};

/// A view built from one registry (an entity type's event codec, its message
/// codec), shared by everything built against that registry: rebuilt only when a
/// different registry is used. `View::make(registry)` builds one; the view keeps
/// its registry (`same_registry`).
template <class View>
expected<std::shared_ptr<const View>> cached_view(std::shared_ptr<const codec_registry> codec) {
  static std::mutex mtx;
  static std::shared_ptr<const View> cached;
  std::lock_guard<std::mutex> guard{mtx};
  if (cached && cached->same_registry(codec))
    return cached;
  auto made = View::make(std::move(codec));
  if (!made)
    return made;
  cached = *made;
  return cached;
}

/// The codec view of Entity for one registry, shared by every incarnation spawned
/// against that registry (rebuilt when a different registry is used).
template <class Entity>
expected<std::shared_ptr<const entity_codec<Entity>>>
cached_codec(std::shared_ptr<const codec_registry> codec) {
  return cached_view<entity_codec<Entity>>(std::move(codec));
}

template <class Entity>
class typed_model final : public entity_model {
public:
  using state_type = typename Entity::state;
  using event_type = typename Entity::event;
  using effect_type = effect<Entity>;

  /// `persistence_id` must outlive the model (it is the blueprint's).
  typed_model(const std::string& persistence_id, std::shared_ptr<const entity_codec<Entity>> codec,
              bool verify_round_trip)
    : pid_(persistence_id), codec_(std::move(codec)), verify_(verify_round_trip) {}

  handle_result handle(const command_box& box, std::vector<event_record>& out) override {
    const auto& cmd = static_cast<const typed_command<Entity>&>(box).value;
    return std::visit([&](const auto& c) { return run(c, out); }, cmd);
  }

  completion complete() override {
    completion result;
    if (!pending_) {
      result.reply = error{errc::internal, pid_ + ": no command is pending"};
      return result;
    }
    auto fx = std::move(*pending_);
    pending_.reset();
    try {
      for (auto& e : fx.events_)
        apply_event(e);
    } catch (const std::exception& ex) {
      result.failure = error{errc::actor_failed,
                             fmt::format("{}: the event handler threw on a persisted event: {}",
                                         pid_, ex.what())};
      result.reply = result.failure;
      return result;
    }
    bool replied = false;
    for (auto& s : fx.steps_) {
      try {
        if (s.reply) {
          if (replied)
            continue;  // one reply per command; later ones are ignored
          replied = true;
          if (s.reply_type != reply_type_) {
            result.reply = error{errc::internal,
                                 fmt::format("{}: the reply to {} has type {}, not {}", pid_,
                                             command_name(), type_name(s.reply_type),
                                             type_name(reply_type_))};
          } else {
            result.reply = s.reply(state_);
          }
        } else if (s.run) {
          s.run(state_);
        } else if (s.stop) {
          result.stop = true;
        }
      } catch (const std::exception& ex) {
        result.failure = error{errc::actor_failed,
                               fmt::format("{}: a follow-up of {} threw: {}", pid_,
                                           command_name(), ex.what())};
        if (!replied)
          result.reply = result.failure;
        return result;
      }
    }
    if (!replied) {
      if (reply_is_done_)
        result.reply = box_reply(done{});
      else
        result.reply = error{errc::unexpected_message,
                             fmt::format("{}: the effect for {} has no reply", pid_,
                                         command_name())};
    }
    return result;
  }

  void discard() override { pending_.reset(); }

  expected<void> apply(const event_record& r) override {
    auto i = codec_->index_of(r.manifest);
    if (i == entity_codec<Entity>::npos)
      return error{errc::unknown_manifest,
                   fmt::format("{} seq {}: manifest '{}' is not an event type of this entity",
                               pid_, r.seq, r.manifest)};
    auto e = codec_->decoders[i](*codec_->registry, r);
    if (!e)
      return error{e.error().code(),
                   fmt::format("{} seq {}: {}", pid_, r.seq, e.error().message())};
    try {
      apply_event(*e);
    } catch (const std::exception& ex) {
      return error{errc::actor_failed,
                   fmt::format("{} seq {}: the event handler threw: {}", pid_, r.seq, ex.what())};
    }
    return {};
  }

  expected<void> encode_state(snapshot_record& out) const override {
    auto* entry = codec_->state_entry;
    if (entry == nullptr)
      return error{errc::unknown_manifest,
                   fmt::format("{}: the state type {} is not registered in the codec", pid_,
                               type_name(typeid(state_type)))};
    out.manifest = entry->manifest;
    out.version = entry->version;
    out.payload.clear();
    if constexpr (json_encodable<state_type>) {
      return codec_->registry->encode_into(state_, out.payload);
    } else {
      return error{errc::encode_failed, pid_ + ": the state type has no to_json"};
    }
  }

  expected<void> restore(const snapshot_record& s) override {
    if constexpr (json_encodable<state_type>) {
      auto x = codec_->registry->template decode<state_type>(s.manifest, s.version, s.payload);
      if (!x)
        return error{x.error().code(), fmt::format("{} snapshot at seq {}: {}", pid_, s.seq,
                                                   x.error().message())};
      state_ = std::move(*x);
      return {};
    } else {
      return error{errc::decode_failed, pid_ + ": the state type has no from_json"};
    }
  }

  void recovery_completed() override {
    if constexpr (requires(const state_type& s) { Entity::on_recovery_completed(s); })
      Entity::on_recovery_completed(std::as_const(state_));
  }

  std::shared_ptr<void> state_copy() const override {
    return std::make_shared<state_type>(state_);
  }

  expected<nlohmann::json> state_json() const override {
    if constexpr (json_encodable<state_type>) {
      try {
        return nlohmann::json(state_);
      } catch (const std::exception& ex) {
        return error{errc::encode_failed, fmt::format("{}: state to_json threw: {}", pid_, ex.what())};
      }
    } else {
      return error{errc::encode_failed, pid_ + ": the state type has no to_json"};
    }
  }

  const state_type& state() const noexcept { return state_; }

private:
  void apply_event(const event_type& e) {
    std::visit([this](const auto& x) { state_ = Entity::on_event(std::move(state_), x); }, e);
  }

  std::string command_name() const { return type_name(*command_type_); }

  template <class Command>
  handle_result run(const Command& c, std::vector<event_record>& out) {
    using reply_type = typename Command::reply;
    reply_type_ = typeid(reply_type);
    reply_is_done_ = std::is_same_v<reply_type, done>;
    command_type_ = &typeid(Command);
    try {
      pending_.emplace(Entity::on_command(std::as_const(state_), c));
    } catch (const std::exception& ex) {
      pending_.reset();
      return {handle_result::kind::failed,
              error{errc::actor_failed, fmt::format("{}: the command handler threw on {}: {}",
                                                    pid_, command_name(), ex.what())}};
    }
    if (pending_->is_unhandled()) {
      pending_.reset();
      return {handle_result::kind::unhandled,
              error{errc::unexpected_message,
                    fmt::format("{} does not handle {} in its current state", pid_,
                                command_name())}};
    }
    if (!pending_->persists())
      return {};
    auto first = out.size();
    for (const auto& e : pending_->events_) {
      auto r = encode(e, out.emplace_back());
      if (!r) {
        out.resize(first);
        pending_.reset();
        return {handle_result::kind::rejected, std::move(r).error()};
      }
    }
    return {handle_result::kind::persist, {}};
  }

  expected<void> encode(const event_type& e, event_record& rec) {
    auto i = e.index();
    auto* entry = codec_->entries[i];
    rec.manifest = entry->manifest;
    rec.version = entry->version;
    rec.payload.reserve(128);  // typical events: one allocation instead of a doubling series
    auto r = std::visit(
      [&](const auto& x) -> expected<void> {
        if (auto ok = codec_->registry->encode_into(x, rec.payload); !ok)
          return ok;
        if (verify_)
          return verify(x, rec);
        return {};
      },
      e);
    if (!r)
      return error{errc::journal_rejected,
                   fmt::format("{}: event {} cannot be stored: {}", pid_, entry->manifest,
                               r.error().message())};
    if constexpr (requires { Entity::tags(e); }) {
      try {
        rec.tags = Entity::tags(e);
      } catch (const std::exception& ex) {
        return error{errc::journal_rejected,
                     fmt::format("{}: tags() threw for event {}: {}", pid_, entry->manifest,
                                 ex.what())};
      }
    }
    return {};
  }

  /// Testkit check: the bytes decode back into an equal event.
  template <class T>
  expected<void> verify(const T& x, const event_record& rec) {
    auto back = codec_->registry->template decode<T>(rec.manifest, rec.version, rec.payload);
    if (!back)
      return error{errc::encode_failed,
                   "does not round-trip through the codec: " + back.error().message()};
    bool same = false;
    if constexpr (std::equality_comparable<T>) {
      same = *back == x;
    } else {
      bytes again;
      same = codec_->registry->encode_into(*back, again) && again == rec.payload;
    }
    if (!same)
      return error{errc::encode_failed,
                   "does not round-trip through the codec: the decoded value differs "
                   "(check to_json / from_json)"};
    return {};
  }

  const std::string& pid_;
  std::shared_ptr<const entity_codec<Entity>> codec_;
  bool verify_;
  state_type state_{};
  std::optional<effect_type> pending_;
  std::type_index reply_type_ = typeid(void);
  bool reply_is_done_ = false;
  const std::type_info* command_type_ = &typeid(void);
};

} // namespace troupe::persistence::detail
