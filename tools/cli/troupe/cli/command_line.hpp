// One command-line convention for every troupe binary (troupe, troupe-node and any
// program on troupe::node_main, the samples, troupe-bench), on CLI11:
//
//   -h, --help       usage on stdout, exit 0 (per subcommand: `troupe journal --help`)
//   --version        "<program> <version>" on stdout, exit 0
//   usage errors     one line on stderr naming the bad argument, with "did you mean"
//                    for a near miss, exit 2
//   --key value and --key=value both work; numbers are decimal and parsed strictly
//   (add_integer, add_number: "5x", "-3" for a count, " 5" are usage errors)
//   runtime failures exit 1 (the program's own code)
//
// Configuration keys (config_options): every key of the program's schema is a flag
// (`--node.port 7355`, `--node.port=7355`), `--config FILE` reads a JSON file, and
// `--help-config` lists every key with its type, default, range and description,
// rendered from the same schema that validates the values. A bad value is a usage
// error (exit 2) like a bad flag.
//
// Internal to troupe's own programs (not installed): the public entry point for a
// user's main is troupe::node_main (tools/node).
// Thread-safety: use from main(), before threads start.
#pragma once

#include "troupe/actors/config.hpp"
#include "troupe/actors/expected.hpp"

#include <CLI/CLI.hpp>

#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

namespace troupe::cli {

enum exit_code { exit_ok = 0, exit_failure = 1, exit_usage = 2 };

/// A CLI::App with --version and troupe's help layout.
void apply_conventions(CLI::App& app);

/// Parses argv (argv[0] is the program). Returns the exit code to return at once
/// (0 after --help, --version, --help-config; 2 after a usage error, reported on
/// `err`), or nothing when the program goes on.
std::optional<int> parse(CLI::App& app, int argc, const char* const* argv,
                         std::FILE* out = stdout, std::FILE* err = stderr);
/// The same for arguments without the program's name (a subcommand's own).
std::optional<int> parse(CLI::App& app, std::vector<std::string> args,
                         std::FILE* out = stdout, std::FILE* err = stderr);

/// Reports a usage error found after parsing (e.g. a combination of flags).
int usage_error(const CLI::App& app, const std::string& what, std::FILE* err = stderr);
/// Reports a configuration error (a bad value, file or variable) the same way.
int config_error(const CLI::App& app, const error& e, std::FILE* err = stderr);

/// An option holding a decimal integer in min..max (no sign where min >= 0, no
/// spaces, no hex or octal).
CLI::Option* add_integer(CLI::App& app, const std::string& name, std::int64_t& target,
                         std::int64_t min, std::int64_t max, const std::string& help);
/// An option holding a decimal number in min..max.
CLI::Option* add_number(CLI::App& app, const std::string& name, double& target, double min,
                        double max, const std::string& help);

/// "; did you mean 'x'?" for the closest of `known` when it is close, else "".
std::string did_you_mean(std::string_view wrong, const std::vector<std::string>& known);

/// Every key of the schema as a flag of `app`, plus --config and --help-config.
/// The schema must outlive the parse.
class config_options {
public:
  config_options(CLI::App& app, const config_schema& schema);
  config_options(const config_options&) = delete;
  config_options& operator=(const config_options&) = delete;

  /// Sets a key as a program flag does (--port -> node.port); later flags win.
  void set(const std::string& key, const std::string& value);
  /// Defaults, then the JSON file (--config or TROUPE_CONFIG), the environment and
  /// the flags, validated against the schema.
  expected<config> load(config_schema schema) const;

private:
  std::vector<std::string> flags_;  ///< "--key=value", in order
};

/// `--help-config`: every key, its type, default, range and description.
void print_config_help(const config_schema& schema, std::FILE* out);

} // namespace troupe::cli
