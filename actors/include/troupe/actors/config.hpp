// troupe::config: typed settings from defaults, a JSON file, environment variables
// and command-line flags, validated against a schema.
//
// Every key is declared once in a config_schema with its type, default and help
// text; docs/configuration.md lists them all (a test keeps the two in sync). Each
// layer contributes its keys (node_config_keys(), persistence::add_config_keys(),
// ...). Sources, later ones winning:
//
//   1. the schema's defaults
//   2. a JSON file: --config=FILE (or the TROUPE_CONFIG variable); nested objects
//      spell dotted keys: {"node": {"port": 7355}} sets node.port
//   3. environment variables: node.cluster-name <- TROUPE_NODE_CLUSTER_NAME
//   4. flags: --node.port=7355 (any flag whose name contains a '.')
//
// An unknown key, a value of the wrong type or a value outside the key's range is
// an invalid_config error naming the key, the source and (for ranges) what is
// allowed, never a silent default or clamp. Flags without a '.' are left for the
// program (config::load reports them in `rest`).
//
// Durations are strings with a unit: "250ms", "2s", "1.5s", "1m", "100us"; one that
// does not fit in 64 bits of nanoseconds (about 292 years) is an error.
// Thread-safety: a loaded config is immutable and may be read concurrently.
#pragma once

#include "troupe/actors/expected.hpp"

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace troupe {

using duration = std::chrono::nanoseconds;

enum class config_type { boolean, integer, number, string, duration, string_list };

std::string_view to_string(config_type type) noexcept;

using config_value =
  std::variant<bool, std::int64_t, double, std::string, duration, std::vector<std::string>>;

/// The values a key accepts beyond its type. Integer and duration keys (durations
/// in nanoseconds): min..max, and 0 as well when `zero_allowed` (for "0 disables");
/// number keys: min..max; string keys: exactly one of `choices`.
struct config_range {
  std::int64_t min = 0;
  std::int64_t max = 0;
  bool zero_allowed = false;
  std::vector<std::string> choices;

  static config_range of(std::int64_t min, std::int64_t max) { return {min, max, false, {}}; }
  static config_range of(duration min, duration max) { return of(min.count(), max.count()); }
  /// 0, or min..max.
  static config_range zero_or(duration min, duration max) {
    return {min.count(), max.count(), true, {}};
  }
  static config_range one_of(std::vector<std::string> choices) {
    return {0, 0, false, std::move(choices)};
  }
};

/// "1..64", "10ms..1h", "0 or 10ms..1h", "full, normal, off" (docs/configuration.md).
std::string to_string(const config_range& range, config_type type);

struct config_key {
  std::string name;
  config_type type;
  config_value default_value;
  std::string help;
  std::optional<config_range> range;  ///< none: every value of the type is accepted
};

class config_schema {
public:
  /// Declares a key. Declaring a name twice replaces the first declaration. A
  /// default outside `range` is a bug in the declaring layer: it aborts, naming the key.
  config_schema& add(std::string name, config_type type, config_value default_value,
                     std::string help, std::optional<config_range> range = std::nullopt);
  /// Sets the range of a declared key (aborts for an unknown key or a default
  /// outside the range: bugs in the declaring layer).
  config_schema& set_range(std::string_view name, config_range range);
  const config_key* find(std::string_view name) const;
  /// All keys, sorted by name.
  std::vector<const config_key*> keys() const;

private:
  std::map<std::string, config_key, std::less<>> keys_;
};

/// The keys of the actors layer (node, log, scheduler, shutdown, ask, transport).
config_schema node_config_keys();

/// Parses "250ms" / "2s" / "1.5s" / "1m" / "2h" / "100us" / "0". Negative values and
/// values beyond the 64-bit nanosecond range are errors.
expected<duration> parse_duration(std::string_view text);
/// Renders a duration the way parse_duration reads it ("250ms", "10m", "1h").
std::string format_duration(duration d);

struct config_sources {
  std::optional<std::string> file;                ///< JSON file
  std::map<std::string, std::string> environment; ///< NAME -> value
  std::vector<std::string> flags;                 ///< "--key=value" entries
};

class config {
public:
  /// A config holding only the schema's defaults.
  explicit config(config_schema schema);

  /// Loads from explicit sources.
  static expected<config> load(config_schema schema, const config_sources& sources);

  /// Loads from argv and the process environment. Arguments that are not config
  /// flags (no '.' in the name, or not starting with "--") are returned in `rest`
  /// in their original order, argv[0] excluded.
  static expected<config> load(config_schema schema, int argc, const char* const* argv,
                               std::vector<std::string>* rest = nullptr);

  /// Overrides one key programmatically; type- and range-checked like any source.
  expected<void> set(std::string_view key, config_value value);
  /// Sets a key from its textual form (as a flag would).
  expected<void> set_text(std::string_view key, std::string_view text);

  bool get_bool(std::string_view key) const;
  std::int64_t get_int(std::string_view key) const;
  double get_number(std::string_view key) const;
  const std::string& get_string(std::string_view key) const;
  duration get_duration(std::string_view key) const;
  const std::vector<std::string>& get_string_list(std::string_view key) const;

  const config_schema& schema() const noexcept { return schema_; }

  /// Every key and its current value as a JSON object text (for --dump-config).
  std::string dump() const;

private:
  const config_value& raw(std::string_view key, config_type type) const;

  config_schema schema_;
  std::map<std::string, config_value, std::less<>> values_;
};

} // namespace troupe
