// replay_tool: `replay ID --db FILE` and `replay --verify --db FILE` for a user's
// own binary (it knows the entity's types).
//
//   int main(int argc, char** argv) {
//     auto codec = std::make_shared<troupe::codec_registry>();
//     bank::register_types(*codec);
//     if (argc > 1 && std::string_view{argv[1]} == "replay")
//       return troupe::persistence::replay_main<bank::account>(argc - 1, argv + 1, codec);
//     ...
//   }
//
// `replay ID` prints the entity's state (as JSON) after each stored event, one line
// per event, for recovery tests and debugging:
//
//   $ troupe-bank replay acct-42 --db bank.db
//   {"seq":1,"manifest":"bank.account-opened","event":{"owner":"ada"},"state":{...}}
//   {"seq":2,"manifest":"bank.deposited","event":{"amount":100},"state":{...}}
//
// `replay --verify` is the typed half of `troupe journal verify`: for every
// persistence id of the entity type it folds every stored event exactly as
// recovery would, and decodes every snapshot, and prints each problem (an event or
// snapshot that does not decode with its manifest, a handler that throws, a gap,
// a snapshot above the highest seq), naming the persistence id and sequence number.
//
// Arguments (argv[0] is the subcommand's name): ID (the entity id, or the full
// persistence id "account|acct-42"; for an entity id a note on `err` names the
// persistence id used) or --verify, --db FILE (a SQLite journal,
// opened read-only; immutable on read-only storage), optional --from SEQ (print
// from there; earlier events are folded silently) and --to SEQ (stop there). It
// folds the events exactly as recovery does (the same codec, the same event
// handler), starting from the empty state, or from the snapshot right before the
// first stored event when older events were deleted. Strings that are not valid
// UTF-8 are printed with \xNN escapes (json_text.hpp), never an abort.
// Exit codes: 0 ok, 1 an event or snapshot did not decode or apply (the error names
// the persistence id and sequence number; lines before it were printed) or verify
// found problems, 2 bad arguments or the journal could not be opened.
//
// Thread-safety: call from one thread; it does not start actors.
#pragma once

#include "troupe/persistence/detail/entity_model.hpp"

#include <nlohmann/json.hpp>

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
  bool verify = false;
};

expected<replay_args> parse_replay_args(int argc, const char* const* argv);

/// What the tool needs from the typed side: one fold (a fresh state) per call of
/// replay_model_factory.
struct replay_steps {
  /// Restores the state from a snapshot; returns the state as JSON.
  std::function<expected<nlohmann::json>(const snapshot_record&)> restore;
  /// Applies one event; returns {event as JSON, state as JSON}.
  std::function<expected<std::pair<nlohmann::json, nlohmann::json>>(const event_record&)> apply;
};
using replay_model_factory = std::function<replay_steps(const std::string& persistence_id)>;

/// Opens the journal read-only and walks the entity's events (replay_tool.cpp).
int run_replay(const replay_args& args, const std::string& persistence_id,
               const replay_model_factory& steps, std::ostream& out, std::ostream& err);

/// Folds every persistence id "<entity_type>|..." and reports problems.
int run_verify(const replay_args& args, const std::string& entity_type,
               const replay_model_factory& steps, std::ostream& out, std::ostream& err);

/// A model with the persistence id it refers to.
template <class Entity>
struct replay_model {
  std::string pid;
  typed_model<Entity> model;
  replay_model(std::string p, std::shared_ptr<const entity_codec<Entity>> view)
    : pid(std::move(p)), model(pid, std::move(view), false) {}
};

template <class Entity>
replay_steps typed_replay_steps(const std::string& pid,
                                std::shared_ptr<const entity_codec<Entity>> view) {
  auto holder = std::make_shared<replay_model<Entity>>(pid, view);
  auto model = std::shared_ptr<typed_model<Entity>>(holder, &holder->model);
  replay_steps steps;
  steps.restore = [model](const snapshot_record& s) -> expected<nlohmann::json> {
    if (auto r = model->restore(s); !r)
      return std::move(r).error();
    return model->state_json();
  };
  steps.apply = [model, view](const event_record& r)
    -> expected<std::pair<nlohmann::json, nlohmann::json>> {
    if (auto ok = model->apply(r); !ok)
      return std::move(ok).error();
    auto state = model->state_json();
    if (!state)
      return std::move(state).error();
    auto event = view->registry->to_json(r.manifest, r.version, r.payload);
    if (!event)
      return std::move(event).error();
    return std::pair{std::move(*event), std::move(*state)};
  };
  return steps;
}

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
  auto view = detail::cached_codec<Entity>(codec);
  if (!view) {
    err << view.error().message() << "\n";
    return 2;
  }
  detail::replay_model_factory steps = [v = *view](const std::string& pid) {
    return detail::typed_replay_steps<Entity>(pid, v);
  };
  std::string type{Entity::entity_type};
  if (args->verify)
    return detail::run_verify(*args, type, steps, out, err);
  auto pid = args->id.rfind(type + "|", 0) == 0 ? args->id : persistence_id_of(type, args->id);
  if (pid != args->id)  // the same note as `troupe journal events --id`
    err << "replay: note: '" << args->id << "' is persistence id '" << pid << "'\n";
  return detail::run_replay(*args, pid, steps, out, err);
}

template <class Entity>
int replay_main(int argc, char** argv, std::shared_ptr<const codec_registry> codec,
                std::ostream& out = std::cout, std::ostream& err = std::cerr) {
  return replay_main<Entity>(argc, const_cast<const char* const*>(argv), std::move(codec), out,
                             err);
}

} // namespace troupe::persistence
