// Event-sourced entities: state that is the fold of its persisted events.
//
// An entity type is a plain C++ type with (see docs/persistence.md, samples/bank):
//
//   struct account {
//     static constexpr std::string_view entity_type = "account";  // persistence id prefix
//     using command = std::variant<open_account, deposit, withdraw, get_balance>;
//     using event = std::variant<account_opened, deposited, withdrawn>;
//     struct state { ... };                                 // default-constructed = empty
//     using effect = troupe::persistence::effect<account>;
//
//     static effect on_command(const state&, const deposit&);   // one per command type
//     static state on_event(state, const deposited&);          // pure; one per event type
//
//     // optional:
//     static troupe::persistence::entity_options options();    // snapshots, stash, ...
//     static std::vector<std::string> tags(const event&);      // tags per event
//     static void on_recovery_completed(const state&);
//   };
//
// Every command type declares its reply type (`using reply = R;`). Every event type,
// every command type and every reply type (except troupe's `done`), and the state
// type when the entity takes snapshots, is registered in the node's codec
// (codec_registry::add) under a stable manifest; spawning checks this, naming the
// first unregistered type. (Commands and replies travel between nodes when the
// entity is sharded: entity_protocol.hpp.)
//
// Start an entity with spawn_entity<account>(node, "acct-42") (under the node's
// guardian, not restarted) or put entity_child<account>("acct-42") into a
// supervisor_spec (restarted with backoff when it fails). Its persistence id is
// "account|acct-42". Talk to it through an entity_ref:
//
//   auto acct = troupe::persistence::spawn_entity<account>(*node, "acct-42");
//   auto ok = troupe::ask<done>(node->system(), *acct, 2s, deposit{100});
//   auto balance = acct->ask(get_balance{}, 2s);    // expected<std::int64_t>
//
// Guarantees (docs/persistence.md has the details):
// - One command at a time. While a persist, a snapshot save or the recovery is in
//   flight, further commands wait in a bounded stash (entity_options::stash_capacity);
//   a command that finds the stash full gets an `overloaded` error at once.
// - A reply to a command that persisted events is sent only after the journal
//   acknowledged them as durable; follow-ups run once, after that, never on replay.
// - A persist that is rejected (the event does not encode, or the journal refused
//   it: journal_rejected) gets an error reply; the entity keeps its state and goes
//   on. A persist that conflicts (sequence_conflict: another writer) stops the
//   entity's actor (a supervisor restarts it; it recovers what was stored).
// - A journal failure (a persist that failed: the outcome is unknown; a recovery
//   that failed: undecodable event or snapshot, gap, journal error or timeout) is
//   not a bug in the entity: its incarnation stops with an error naming the
//   persistence id (and sequence number) and the cause, every held command gets
//   that error, commands are refused with it for a backoff
//   (persistence.entity.restart-backoff-min/max), and the next command after it
//   starts a new incarnation that recovers what was stored. The actor, and so
//   every handle to it, stays; no supervisor restart is spent.
// - Whenever an entity stops, every command it still holds gets an error reply: a
//   requester never waits out its timeout because the entity died. (Except a
//   graceful stop and hand back, owned_entity.hpp: the held commands go to the
//   requester, unanswered, to be forwarded.)
// - Fenced (owned_entity.hpp): an entity spawned with a fence persists under it; a
//   persist the journal refuses as `fenced` (a newer owner took over) ends the
//   actor: the command in flight and every stashed one get that `fenced` error
//   naming the entity, the fence key and the epochs, and the exit reason says so.
// - Idle timeout (entity_options::idle_timeout): an entity idle that long tells
//   its owner (entity_idle) or, without one, stops itself.
//
// Thread-safety: entity_ref is a value type usable from any thread; the blocking
// ask must not be called from inside an actor (use the in-actor ask there).
#pragma once

#include "troupe/actors/config.hpp"
#include "troupe/actors/expected.hpp"
#include "troupe/actors/supervisor.hpp"
#include "troupe/persistence/detail/entity_model.hpp"
#include "troupe/persistence/detail/message_codec.hpp"
#include "troupe/persistence/effect.hpp"

#include <caf/actor.hpp>
#include <caf/actor_addr.hpp>
#include <caf/event_based_actor.hpp>

#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <variant>

namespace caf {
class event_based_actor;
} // namespace caf

namespace troupe {
class node;
} // namespace troupe

namespace troupe::persistence {

/// Per entity type settings. Zero means "the node's default" where noted.
struct entity_options {
  /// Save a snapshot every N persisted events (0: never). Commands are stashed
  /// while a snapshot is saved; a failed save is logged and the entity goes on.
  std::uint64_t snapshot_every = 0;
  /// Keep the K newest snapshots; older ones are deleted after each save.
  std::uint32_t keep_snapshots = 2;
  /// After a snapshot save, also delete the events the oldest kept snapshot covers.
  bool delete_events_on_snapshot = false;
  /// Commands waiting while the entity is busy (0: persistence.entity.stash-capacity).
  std::size_t stash_capacity = 0;
  /// Events per replay page (0: persistence.entity.recovery-page-size).
  std::size_t recovery_page_size = 0;
  /// Decode every event again before persisting it and compare (the testkit sets
  /// this; a mismatch rejects the persist with encode_failed).
  bool verify_round_trip = false;
  /// After this long without a command (0: never), the entity tells its owner
  /// (entity_idle, owned_entity.hpp), which passivates it with a stop and hand
  /// back; an entity without an owner stops itself.
  duration idle_timeout{0};
};

namespace detail {

/// Everything the runtime needs to start incarnations of one entity.
struct entity_blueprint {
  std::string entity_type;
  std::string entity_id;
  std::string persistence_id;
  entity_options options;
  /// Every persist carries it (owned_entity.hpp); none for plain spawns.
  std::optional<write_fence> fence;
  /// Who is told entity_idle after options.idle_timeout; null: the entity stops
  /// itself instead.
  caf::actor_addr idle_to;
  /// The actor that spawned the entity (owned_entity.hpp): the entity stops when it
  /// stops. Null for plain spawns.
  caf::actor_addr owner;
  /// The entity type's model factory (make_blueprint sets it): a plain function,
  /// so a blueprint costs no allocation of its own beyond itself (a million idle
  /// entities hold a million blueprints).
  using model_factory = expected<std::unique_ptr<entity_model>> (*)(
    const entity_blueprint&, std::shared_ptr<const codec_registry>);
  model_factory model_of = nullptr;

  /// A fresh model (empty state) for a new incarnation; fails if the codec lacks a
  /// registration. The model refers to this blueprint's persistence_id: the
  /// blueprint must outlive it.
  expected<std::unique_ptr<entity_model>> make_model(std::shared_ptr<const codec_registry> codec) const {
    return model_of(*this, std::move(codec));
  }
};
using blueprint_ptr = std::shared_ptr<const entity_blueprint>;

// Implemented in entity_actor.cpp (the only CAF translation unit of the runtime).
expected<caf::actor> spawn_entity(node& n, blueprint_ptr bp);
child_spec entity_child(blueprint_ptr bp, restart_policy restart);
expected<reply_box> ask_entity(caf::actor_system& sys, const caf::actor& dest, duration timeout,
                               command_ptr cmd);
void ask_entity(caf::event_based_actor* self, const caf::actor& dest, duration timeout,
                command_ptr cmd, std::function<void(expected<reply_box>)> done);
void tell_entity(const caf::actor& dest, command_ptr cmd);

template <class T, class Variant>
struct is_alternative;
template <class T, class... Ts>
struct is_alternative<T, std::variant<Ts...>> : std::disjunction<std::is_same<T, Ts>...> {};

template <class Entity, class Command>
void check_command() {
  static_assert(is_alternative<Command, typename Entity::command>::value,
                "this type is not one of the entity's command types (Entity::command)");
}

template <class Entity>
expected<std::unique_ptr<entity_model>> make_typed_model(const entity_blueprint& bp,
                                                         std::shared_ptr<const codec_registry> codec) {
  auto view = cached_codec<Entity>(codec);
  if (!view)
    return std::move(view).error();
  if (auto messages = cached_message_codec<Entity>(std::move(codec)); !messages)
    return std::move(messages).error();
  if (bp.options.snapshot_every > 0 && (*view)->state_entry == nullptr)
    return error{errc::unknown_manifest,
                 fmt::format("entity type '{}' takes snapshots, but its state type {} is "
                             "not registered in the codec (codec_registry::add)",
                             Entity::entity_type, type_name(typeid(typename Entity::state)))};
  return std::unique_ptr<entity_model>{std::make_unique<typed_model<Entity>>(
    bp.persistence_id, std::move(*view), bp.options.verify_round_trip)};
}

template <class Entity>
std::shared_ptr<entity_blueprint> make_blueprint(std::string entity_id, entity_options opts) {
  auto bp = std::make_shared<entity_blueprint>();
  bp->entity_type = std::string{Entity::entity_type};
  bp->entity_id = std::move(entity_id);
  bp->persistence_id = persistence_id_of(bp->entity_type, bp->entity_id);
  bp->options = opts;
  bp->model_of = &make_typed_model<Entity>;
  return bp;
}

template <class Entity>
entity_options default_options() {
  if constexpr (requires { Entity::options(); })
    return Entity::options();
  else
    return {};
}

} // namespace detail

/// A handle to a running entity (or to a supervisor's stable handle of one).
template <class Entity>
class entity_ref {
public:
  entity_ref() = default;
  explicit entity_ref(caf::actor handle) : handle_(std::move(handle)) {}

  const caf::actor& actor() const noexcept { return handle_; }
  explicit operator bool() const noexcept { return static_cast<bool>(handle_); }

  /// Sends a command without waiting for the reply.
  template <class Command>
  void tell(Command cmd) const {
    detail::check_command<Entity, Command>();
    detail::tell_entity(handle_, wrap(std::move(cmd)));
  }

  /// Sends a command and blocks for its reply (not from inside an actor).
  template <class Command>
  expected<typename Command::reply> ask(Command cmd, duration timeout) const {
    detail::check_command<Entity, Command>();
    if (!handle_)
      return error{errc::actor_down, "ask to an invalid (null) entity handle"};
    auto r = detail::ask_entity(handle_->home_system(), handle_, timeout, wrap(std::move(cmd)));
    return unbox<typename Command::reply>(std::move(r));
  }

  /// Internal: the boxed form of a command.
  template <class Command>
  static detail::command_ptr wrap(Command cmd) {
    return std::make_shared<detail::typed_command<Entity>>(
      typename Entity::command{std::move(cmd)});
  }

  /// Internal: unboxes a reply.
  template <class R>
  static expected<R> unbox(expected<detail::reply_box> r) {
    if (!r)
      return std::move(r).error();
    if (!*r)
      return error{errc::internal, "entity replied with an empty box"};
    return std::move(*std::static_pointer_cast<R>(*r));
  }

private:
  caf::actor handle_;
};

/// Starts an entity under the node's guardian (a temporary child: stopped by
/// node::shutdown, not restarted when it fails). Fails if no journal is installed
/// (install_journal) or an event type is not registered in the node's codec.
template <class Entity>
expected<entity_ref<Entity>> spawn_entity(node& n, std::string entity_id,
                                          entity_options opts = detail::default_options<Entity>()) {
  auto bp = detail::make_blueprint<Entity>(std::move(entity_id), opts);
  auto a = detail::spawn_entity(n, std::move(bp));
  if (!a)
    return std::move(a).error();
  return entity_ref<Entity>{std::move(*a)};
}

/// A supervisor child running the entity. `transient` (the default) restarts it
/// after its actor failed (a handler that threw, a sequence conflict) but not after
/// it stopped itself (effect::stop). Journal failures the entity handles itself.
template <class Entity>
child_spec entity_child(std::string entity_id,
                        entity_options opts = detail::default_options<Entity>(),
                        restart_policy restart = restart_policy::transient) {
  return detail::entity_child(detail::make_blueprint<Entity>(std::move(entity_id), opts),
                              restart);
}

namespace detail {

/// An in-actor ask waiting for its continuation (see troupe::ask below).
template <class R, class Entity>
struct pending_ask {
  caf::event_based_actor* self;
  caf::actor dest;
  duration timeout;
  command_ptr cmd;

  /// `f(expected<R>)` runs exactly once, on the asking actor.
  template <class F>
  void then(F f) {
    ask_entity(self, dest, timeout, std::move(cmd),
               [f = std::move(f)](expected<reply_box> r) mutable {
                 f(entity_ref<Entity>::template unbox<R>(std::move(r)));
               });
  }
};

} // namespace detail

} // namespace troupe::persistence

namespace troupe {

/// Blocking ask of an entity: `troupe::ask<R>(sys, ref, timeout, command)`. R must be
/// the command's reply type. Do not call from inside an actor.
template <class R, class Entity, class Command>
expected<R> ask(caf::actor_system& sys, const persistence::entity_ref<Entity>& ref,
                duration timeout, Command&& cmd) {
  using command_type = std::decay_t<Command>;
  persistence::detail::check_command<Entity, command_type>();
  static_assert(std::is_same_v<R, typename command_type::reply>,
                "ask<R>: R must be the command's reply type (Command::reply)");
  if (!ref)
    return error{errc::actor_down, "ask to an invalid (null) entity handle"};
  auto r = persistence::detail::ask_entity(
    sys, ref.actor(), timeout,
    persistence::entity_ref<Entity>::wrap(command_type{std::forward<Command>(cmd)}));
  return persistence::entity_ref<Entity>::template unbox<R>(std::move(r));
}

/// In-actor ask of an entity (does not block):
///   troupe::ask<done>(self, ref, 2s, deposit{5}).then([=](expected<done> r) { ... });
/// The continuation runs exactly once, on the asking actor.
template <class R, class Self, class Entity, class Command>
auto ask(Self* self, const persistence::entity_ref<Entity>& ref, duration timeout,
         Command&& cmd) {
  using command_type = std::decay_t<Command>;
  persistence::detail::check_command<Entity, command_type>();
  static_assert(std::is_same_v<R, typename command_type::reply>,
                "ask<R>: R must be the command's reply type (Command::reply)");
  static_assert(std::is_base_of_v<caf::event_based_actor, Self>,
                "the in-actor ask needs an event-based actor");
  return persistence::detail::pending_ask<R, Entity>{
    self, ref.actor(), timeout,
    persistence::entity_ref<Entity>::wrap(command_type{std::forward<Command>(cmd)})};
}

} // namespace troupe
