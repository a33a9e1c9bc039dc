// troupe::parse_command_line: the command line of a program whose flags are
// configuration keys, with the convention every troupe binary follows:
//
//   int main(int argc, char** argv) {
//     auto schema = troupe::node_config_keys();
//     troupe::persistence::add_config_keys(schema);
//     auto cl = troupe::parse_command_line(std::move(schema), argc, argv,
//                                          {"my-app", "What my-app does."});
//     if (!cl.config)
//       return cl.exit_code;  // --help, --version, --help-config: 0; a usage error: 2
//     auto node = troupe::node::start(std::move(*cl.config));
//     ...
//   }
//
// -h/--help prints usage on stdout; --version prints "<name> <troupe version>";
// --help-config lists every key of the schema with its type, default, range and
// description; --config FILE reads a JSON file; every key is a flag, written
// --KEY VALUE or --KEY=VALUE. An unknown flag (with "did you mean" for a near miss),
// a stray argument or a bad value is reported on stderr and gives exit code 2.
// A program that also needs flags of its own uses troupe::node_main's options or
// CLI11 directly. Thread-safety: call from main() before starting threads.
#pragma once

#include "troupe/actors/config.hpp"

#include <optional>
#include <string>

namespace troupe {

struct program_info {
  std::string name;         ///< as in usage lines and error messages
  std::string description;  ///< the first line of --help
};

/// What the command line decided.
struct command_line {
  std::optional<troupe::config> config;  ///< set: run with this configuration
  int exit_code = 0;             ///< otherwise: return this from main (0 or 2)
};

command_line parse_command_line(config_schema schema, int argc, const char* const* argv,
                                const program_info& info);

} // namespace troupe
