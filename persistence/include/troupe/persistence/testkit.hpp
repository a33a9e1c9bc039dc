// testkit: run commands against one entity on an in-memory journal and look at
// what happened (like Akka's EventSourcedBehaviorTestKit).
//
//   troupe::persistence::testkit<bank::account> kit{bank::register_types};
//   auto r = kit.run(bank::deposit{100});
//   CHECK(r.reply);                                   // expected<done>
//   CHECK(r.events.size() == 1);                      // what the command persisted
//   CHECK(r.state.balance == 100);                    // the state after it
//   CHECK(kit.restart());                             // recovery yields the same state
//   kit.journal().fail(troupe::persistence::journal_op::write);   // fault injection
//
// The entity runs for real: a troupe node with the in-memory journal
// (memory_journal) behind the journal_service, the same runtime and codec paths as
// production. Every persisted event is decoded again and compared with the
// original before it is written (entity_options::verify_round_trip); an event type
// whose to_json / from_json lose information makes the persist fail with
// encode_failed in the reply.
//
// Thread-safety: use a testkit from one (non-actor) thread.
#pragma once

#include "troupe/persistence/detail/entity_control.hpp"
#include "troupe/persistence/entity.hpp"
#include "troupe/persistence/memory_journal.hpp"

#include <concepts>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace troupe::persistence {

struct testkit_options {
  /// The entity's options (default: the entity type's own); verify_round_trip is
  /// always switched on.
  std::optional<entity_options> entity;
  /// Bound for every command, query and restart.
  duration timeout = std::chrono::seconds{10};
  /// "key=value" config overrides for the test node (e.g. stash capacity).
  std::vector<std::string> config;
};

template <class Entity, class Reply>
struct command_result {
  expected<Reply> reply;
  /// The events this command persisted, in order (decoded from the journal).
  std::vector<typename Entity::event> events;
  /// The state after the command; when the command stopped the entity, the last
  /// state the entity had before it (see `stopped`).
  typename Entity::state state{};
  /// The entity is no longer running after this command: its actor stopped
  /// (effect::stop, a handler that threw, a sequence conflict), or a journal
  /// failure stopped its incarnation (the next command after the backoff,
  /// persistence.entity.restart-backoff-min, starts a new one that recovers).
  bool stopped = false;
};

namespace detail {

/// The non-template part of the testkit (testkit.cpp).
class testkit_base {
public:
  testkit_base(const std::function<void(codec_registry&)>& register_types,
               const std::vector<std::string>& config, duration timeout);
  ~testkit_base();
  testkit_base(const testkit_base&) = delete;
  testkit_base& operator=(const testkit_base&) = delete;

  node& the_node() { return *node_; }
  memory_journal& journal() { return *journal_; }
  caf::actor_system& system();
  std::shared_ptr<const codec_registry> codec() const { return codec_; }
  const caf::actor& actor() const { return actor_; }
  duration timeout() const { return timeout_; }

  /// Starts (or restarts) the entity from the blueprint.
  expected<void> start(blueprint_ptr bp);
  /// Stops the entity and waits for it.
  expected<void> stop();
  /// Whether the entity is still running.
  bool running() const;
  /// Waits until the entity terminated; false if it still runs after `timeout`.
  bool wait_stopped(duration timeout);
  /// The boxed state of the running entity.
  expected<std::shared_ptr<void>> state();
  /// The highest sequence nr stored for the entity.
  sequence_nr highest(const std::string& pid);
  /// The stored events of the entity with from <= seq <= to.
  std::vector<event_record> events(const std::string& pid, sequence_nr from, sequence_nr to);

private:
  std::shared_ptr<memory_journal> journal_;
  std::shared_ptr<codec_registry> codec_;
  std::unique_ptr<node> node_;
  caf::actor actor_;
  std::shared_ptr<void> terminated_;  // set when actor_ terminates
  duration timeout_;
};

} // namespace detail

template <class Entity>
class testkit {
public:
  using state_type = typename Entity::state;
  using event_type = typename Entity::event;

  /// `register_types` registers the entity's event types (and its state type, for
  /// snapshots) in the test node's codec.
  explicit testkit(std::function<void(codec_registry&)> register_types,
                   std::string entity_id = "test-1", testkit_options opts = {})
    : base_(register_types, opts.config, opts.timeout) {
    auto eo = opts.entity ? *opts.entity : detail::default_options<Entity>();
    eo.verify_round_trip = true;
    bp_ = detail::make_blueprint<Entity>(std::move(entity_id), eo);
    auto started = base_.start(bp_);
    if (!started)
      start_error_ = started.error();
    else
      last_state_ = fetch_state();
  }

  /// An error if the entity could not start (e.g. an unregistered event type).
  const error& start_error() const { return start_error_; }

  /// Sends one command, waits for its reply, and collects the persisted events
  /// and the resulting state.
  template <class Command>
  command_result<Entity, typename Command::reply> run(Command cmd) {
    command_result<Entity, typename Command::reply> result{
      error{errc::internal, "not run"}};
    const auto& pid = bp_->persistence_id;
    auto before = base_.highest(pid);
    result.reply = troupe::ask<typename Command::reply>(base_.system(), ref(), base_.timeout(),
                                                       std::move(cmd));
    auto after = base_.highest(pid);
    if (after > before)
      result.events = decode(base_.events(pid, before + 1, after));
    // The state query is answered after every earlier command. After a journal
    // failure the incarnation is stopped (no state; the next command starts a new
    // one after a backoff); after effect::stop or a bug the actor terminates
    // promptly.
    if (auto s = fetch_state()) {
      last_state_ = std::move(*s);
    } else if (!incarnation_stopped_) {
      base_.wait_stopped(base_.timeout());
    }
    result.stopped = incarnation_stopped_ || !base_.running();
    result.state = last_state_ ? *last_state_ : state_type{};
    return result;
  }

  /// Stops the entity and starts a new incarnation that recovers from the journal.
  /// Fails if recovery fails or if the recovered state differs from the state
  /// before the restart (compared with ==, else as JSON, when the type allows).
  expected<void> restart() {
    auto before = base_.running() ? fetch_state() : std::optional<state_type>{};
    if (auto r = base_.stop(); !r)
      return r;
    if (auto r = base_.start(bp_); !r)
      return r;
    auto after = fetch_state();
    if (!after)
      return error{errc::actor_down, bp_->persistence_id + " did not recover: " + last_error_};
    last_state_ = after;
    if (before && !same(*before, *after))
      return error{errc::internal, bp_->persistence_id
                                     + ": the recovered state differs from the state before "
                                       "the restart"
                                     + describe(*before, *after)};
    return {};
  }

  /// The current state of the running entity.
  state_type state() {
    if (auto s = fetch_state())
      last_state_ = std::move(*s);
    return last_state_ ? *last_state_ : state_type{};
  }

  /// Every event stored for the entity, decoded.
  std::vector<event_type> persisted_events() {
    const auto& pid = bp_->persistence_id;
    return decode(base_.events(pid, 1, max_sequence_nr));
  }

  entity_ref<Entity> ref() const { return entity_ref<Entity>{base_.actor()}; }
  const std::string& persistence_id() const { return bp_->persistence_id; }
  bool running() const { return base_.running(); }

  /// The in-memory journal and snapshot store: inspect it, inject faults.
  memory_journal& journal() { return base_.journal(); }
  node& the_node() { return base_.the_node(); }

private:
  std::optional<state_type> fetch_state() {
    auto s = base_.state();
    incarnation_stopped_ = s && !*s;
    if (!s || !*s) {
      last_error_ = s ? "the entity is stopped after a journal failure" : s.error().to_string();
      return std::nullopt;
    }
    return *std::static_pointer_cast<state_type>(*s);
  }

  std::vector<event_type> decode(const std::vector<event_record>& records) {
    std::vector<event_type> result;
    auto view = detail::cached_codec<Entity>(base_.codec());
    if (!view)
      return result;
    for (auto& r : records) {
      auto i = (*view)->index_of(r.manifest);
      if (i == detail::entity_codec<Entity>::npos)
        continue;
      if (auto e = (*view)->decoders[i](*(*view)->registry, r))
        result.push_back(std::move(*e));
    }
    return result;
  }

  static bool same(const state_type& a, const state_type& b) {
    if constexpr (std::equality_comparable<state_type>)
      return a == b;
    else if constexpr (detail::json_encodable<state_type>)
      return nlohmann::json(a) == nlohmann::json(b);
    else
      return true;
  }

  static std::string describe(const state_type& a, const state_type& b) {
    if constexpr (detail::json_encodable<state_type>)
      return ": before " + nlohmann::json(a).dump() + ", after " + nlohmann::json(b).dump();
    else
      return {};
  }

  detail::testkit_base base_;
  detail::blueprint_ptr bp_;
  error start_error_;
  std::optional<state_type> last_state_;
  std::string last_error_;
  bool incarnation_stopped_ = false;  ///< the last state query found no incarnation
};

} // namespace troupe::persistence
