// starter: adds 5 to the counter "visits" in a SQLite journal and prints its value.
// Run it twice: the second run recovers the counter from the journal.
//   ./starter [--persistence.journal.path starter.db] [--help] [--help-config]
#include "counter.hpp"

#include <troupe/actors/node.hpp>
#include <troupe/command_line.hpp>
#include <troupe/persistence/entity.hpp>
#include <troupe/persistence/journal_service.hpp>

#include <chrono>
#include <cstdio>
#include <memory>
#include <string>

int main(int argc, char** argv) {
  auto schema = troupe::node_config_keys();
  troupe::persistence::add_config_keys(schema);
  schema.add("persistence.journal.path", troupe::config_type::string, std::string{"starter.db"},
             "The counter's SQLite journal.");
  schema.add("persistence.journal.create-if-missing", troupe::config_type::boolean, true,
             "Create the journal on the first run.");
  auto cl = troupe::parse_command_line(std::move(schema), argc, argv,
                                       {"starter", "An event-sourced counter on troupe."});
  if (!cl.config)
    return cl.exit_code;  // --help, --version: 0; a bad flag or value: 2

  auto codec = std::make_shared<troupe::codec_registry>();
  starter::register_types(*codec);
  auto node = troupe::node::start(std::move(*cl.config), {.codec = codec});
  if (!node) {
    std::fprintf(stderr, "starter: %s\n", node.error().to_string().c_str());
    return 1;
  }
  if (auto journal = troupe::persistence::install_journal(**node); !journal) {
    std::fprintf(stderr, "starter: %s\n", journal.error().to_string().c_str());
    return 1;
  }
  auto visits = troupe::persistence::spawn_entity<starter::counter>(**node, "visits");
  if (!visits) {
    std::fprintf(stderr, "starter: %s\n", visits.error().to_string().c_str());
    return 1;
  }
  using namespace std::chrono_literals;
  if (auto r = visits->ask(starter::add{5}, 2s); !r) {
    std::fprintf(stderr, "starter: add: %s\n", r.error().to_string().c_str());
    return 1;
  }
  auto value = visits->ask(starter::get{}, 2s);
  if (!value) {
    std::fprintf(stderr, "starter: get: %s\n", value.error().to_string().c_str());
    return 1;
  }
  std::printf("visits: %lld\n", static_cast<long long>(*value));
  return 0;
}
