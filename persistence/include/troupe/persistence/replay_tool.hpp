// replay_tool: `replay ID --db FILE` for a user's own binary. Prints the entity's
// state (as JSON) after each stored event, one line per event, for recovery tests
// and debugging:
//
//   int main(int argc, char** argv) {
//     auto codec = std::make_shared<troupe::codec_registry>();
//     bank::register_types(*codec);
//     if (argc > 1 && std::string_view{argv[1]} == "replay")
//       return troupe::persistence::replay_main<bank::account>(argc - 1, argv + 1, codec);
//     ...
//   }
//
//   $ troupe-bank replay acct-42 --db bank.db
//   {"seq":1,"manifest":"bank.account-opened","event":{"owner":"ada"},"state":{...}}
//   {"seq":2,"manifest":"bank.deposited","event":{"amount":100},"state":{...}}
//
// Arguments (argv[0] is the subcommand's name): ID (the entity id, or the full
// persistence id "account|acct-42"), --db FILE (a SQLite journal, opened read-only),
// optional --from SEQ (print from there; earlier events are folded silently) and
// --to SEQ (stop there). It folds the events exactly as recovery does (the
// same codec, the same event handler), starting from the empty state, or from the
// snapshot right before the first stored event when older events were deleted.
// Exit codes: 0 ok, 1 an event or snapshot did not decode or apply (the error names
// the persistence id and sequence number; lines before it were printed), 2 bad
// arguments or the journal could not be opened.
//
// Thread-safety: call from one thread; it does not start actors.
#pragma once

#include "troupe/persistence/entity.hpp"

#include <nlohmann/json.hpp>

#include <cstdio>
#include <functional>
#include <iostream>
#include <memory>
#include <string>

namespace troupe::persistence {

namespace detail {

struct replay_args {
  std::string id;  ///< as given: entity id or persistence id
  std::string db;
  sequence_nr from = 1;
  sequence_nr to = max_sequence_nr;
};

expected<replay_args> parse_replay_args(int argc, const char* const* argv);

/// What the tool needs from the typed side.
struct replay_steps {
  /// Restores the state from a snapshot; returns the state as JSON.
  std::function<expected<nlohmann::json>(const snapshot_record&)> restore;
  /// Applies one event; returns {event as JSON, state as JSON}.
  std::function<expected<std::pair<nlohmann::json, nlohmann::json>>(const event_record&)> apply;
};

/// Opens the journal read-only and walks the entity's events (replay_tool.cpp).
int run_replay(const replay_args& args, const std::string& persistence_id,
               const replay_steps& steps, std::ostream& out, std::ostream& err);

} // namespace detail

/// The `replay` subcommand; returns the process exit code.
template <class Entity>
int replay_main(int argc, const char* const* argv, std::shared_ptr<const codec_registry> codec,
                std::ostream& out = std::cout, std::ostream& err = std::cerr) {
  auto args = detail::parse_replay_args(argc, argv);
  if (!args) {
    err << args.error().message() << "\n";
    return 2;
  }
  std::string prefix = std::string{Entity::entity_type} + "|";
  auto pid = args->id.rfind(prefix, 0) == 0 ? args->id
                                             : persistence_id_of(Entity::entity_type, args->id);
  auto view = detail::cached_codec<Entity>(codec);
  if (!view) {
    err << view.error().message() << "\n";
    return 2;
  }
  auto model = std::make_shared<detail::typed_model<Entity>>(pid, *view, false);
  detail::replay_steps steps;
  steps.restore = [model](const snapshot_record& s) -> expected<nlohmann::json> {
    if (auto r = model->restore(s); !r)
      return std::move(r).error();
    return model->state_json();
  };
  steps.apply = [model, codec](const event_record& r)
    -> expected<std::pair<nlohmann::json, nlohmann::json>> {
    if (auto ok = model->apply(r); !ok)
      return std::move(ok).error();
    auto state = model->state_json();
    if (!state)
      return std::move(state).error();
    auto event = codec->to_json(r.manifest, r.version, r.payload);
    if (!event)
      return std::move(event).error();
    return std::pair{std::move(*event), std::move(*state)};
  };
  return detail::run_replay(*args, pid, steps, out, err);
}

template <class Entity>
int replay_main(int argc, char** argv, std::shared_ptr<const codec_registry> codec,
                std::ostream& out = std::cout, std::ostream& err = std::cerr) {
  return replay_main<Entity>(argc, const_cast<const char* const*>(argv), std::move(codec), out,
                             err);
}

} // namespace troupe::persistence
