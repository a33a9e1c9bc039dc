// Helpers shared by the entity test suites (the counter entity is in
// counter_entity.hpp).
#pragma once

#include "counter_entity.hpp"

#include "troupe/persistence/entity.hpp"
#include "troupe/persistence/journal_service.hpp"
#include "troupe/persistence/memory_journal.hpp"

#include "support/node_fixture.hpp"
#include "support/wait.hpp"

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <atomic>
#include <cstdint>
#include <future>
#include <stdexcept>
#include <string>
#include <variant>
#include <vector>

namespace fx {

inline bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

inline void register_counter(troupe::codec_registry& codec) {
  REQUIRE(try_register_counter(codec));
}

/// A test node with the persistence config keys, the counter's types registered
/// and the given memory journal installed.
inline std::unique_ptr<troupe::node> make_node(std::shared_ptr<troupe::persistence::memory_journal> j,
                                               std::vector<std::string> overrides = {}) {
  auto schema = troupe::node_config_keys();
  troupe::persistence::add_config_keys(schema);
  auto codec = std::make_shared<troupe::codec_registry>();
  register_counter(*codec);
  auto n = troupe::test::make_node(std::move(overrides), std::move(schema),
                                   troupe::node::options{codec});
  REQUIRE(troupe::persistence::install_journal(*n, j, j));
  // Runs before the journal's hook: releases calls a test left blocked in a delay.
  n->add_stop_hook("clear faults", [j] { j->clear_faults(); });
  return n;
}

/// A test node with the counter's types and the SQLite journal at `path` (default
/// durability: WAL + synchronous=FULL).
inline std::unique_ptr<troupe::node> make_sqlite_node(const std::string& path,
                                                      std::vector<std::string> overrides = {}) {
  auto schema = troupe::node_config_keys();
  troupe::persistence::add_config_keys(schema);
  auto codec = std::make_shared<troupe::codec_registry>();
  register_counter(*codec);
  overrides.insert(overrides.begin(), "persistence.journal.create-if-missing=true");
  overrides.push_back("persistence.journal.path=" + path);
  auto n = troupe::test::make_node(std::move(overrides), std::move(schema),
                                   troupe::node::options{codec});
  auto j = troupe::persistence::install_journal(*n);
  INFO((j ? std::string{} : j.error().to_string()));
  REQUIRE(j);
  return n;
}

/// An event record of the counter at `seq` (valid unless the caller damages it).
inline troupe::persistence::event_record added_record(const std::string& pid,
                                                      troupe::persistence::sequence_nr seq,
                                                      std::int64_t n) {
  troupe::persistence::event_record e;
  e.persistence_id = pid;
  e.seq = seq;
  e.manifest = "test.added";
  e.version = 1;
  e.payload = nlohmann::json::to_cbor(nlohmann::json{{"n", n}});
  e.writer = "test";
  return e;
}

/// Commands waiting in the stashes of the node's counters.
inline double stashed(troupe::node& n) {
  return n.metrics()
    .gauge_value("troupe_persistence_entity_stashed_commands", {{"entity_type", "counter"}})
    .value_or(-1);
}

/// Asks from a thread of its own; the future holds the reply.
template <class Command>
auto ask_async(const troupe::persistence::entity_ref<counter>& ref, Command cmd,
               troupe::duration timeout = std::chrono::seconds{30}) {
  return std::async(std::launch::async, [ref, cmd, timeout] { return ref.ask(cmd, timeout); });
}

/// Writes records straight into a backend (as another writer would).
inline void store(troupe::persistence::journal_backend& j,
                  std::vector<troupe::persistence::event_record> events) {
  troupe::persistence::atomic_write w;
  w.persistence_id = events.at(0).persistence_id;
  w.events = std::move(events);
  auto r = j.write(std::span<const troupe::persistence::atomic_write>{&w, 1});
  REQUIRE(r.size() == 1);
  REQUIRE(r[0]);
}

} // namespace fx
