// my_app: the program of tests/install/subdirectory, a project that builds troupe
// with add_subdirectory (tests/install/add_subdirectory.cmake). Each run records one
// visit in a SQLite journal and prints the count, recovered from the journal:
//   ./my_app --persistence.journal.path=visits.db   # visits: 1, then 2, ...
#include <troupe/actors/codec.hpp>
#include <troupe/actors/config.hpp>
#include <troupe/actors/node.hpp>
#include <troupe/persistence/entity.hpp>
#include <troupe/persistence/journal_service.hpp>

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string_view>
#include <variant>

namespace my_app {

struct visit { using reply = std::int64_t; };  // command: replies the new count
struct visited { std::int64_t count = 0; };     // event: the count after the visit
struct visits { std::int64_t count = 0; };      // state

struct visit_log {
  static constexpr std::string_view entity_type = "visit-log";
  using command = std::variant<visit>;
  using event = std::variant<visited>;
  using state = visits;
  using effect = troupe::persistence::effect<visit_log>;

  static effect on_command(const state& s, const visit& c) {
    return effect::persist(visited{s.count + 1}).then_reply(c, [](const state& after) {
      return after.count;
    });
  }
  static state on_event(state, const visited& e) { return {e.count}; }
};

NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(visited, count)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(visits, count)
inline void to_json(nlohmann::json& j, const visit&) { j = nlohmann::json::object(); }
inline void from_json(const nlohmann::json&, visit&) {}

/// Reports a failure on stderr; exit code 1.
inline int fail(const troupe::error& e) {
  std::fprintf(stderr, "my_app: %s\n", e.to_string().c_str());
  return 1;
}

} // namespace my_app

int main(int argc, char** argv) {
  auto schema = troupe::node_config_keys();
  troupe::persistence::add_config_keys(schema);
  auto config = troupe::config::load(std::move(schema), argc, argv);
  if (!config) {
    my_app::fail(config.error());
    return 2;  // a bad flag or value
  }
  auto codec = std::make_shared<troupe::codec_registry>();
  codec->add<my_app::visited>("my-app.visited");
  codec->add<my_app::visits>("my-app.visits");
  codec->add<my_app::visit>("my-app.visit");
  codec->add<std::int64_t>("my-app.count");  // visit's reply
  auto node = troupe::node::start(std::move(*config), {.codec = codec});
  if (!node)
    return my_app::fail(node.error());
  if (auto journal = troupe::persistence::install_journal(**node); !journal)
    return my_app::fail(journal.error());
  auto log = troupe::persistence::spawn_entity<my_app::visit_log>(**node, "visits");
  if (!log)
    return my_app::fail(log.error());
  auto count = log->ask(my_app::visit{}, std::chrono::seconds{5});
  if (!count)
    return my_app::fail(count.error());
  std::printf("visits: %lld\n", static_cast<long long>(*count));
  return 0;
}
