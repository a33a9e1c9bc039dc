// A sensor as an event-sourced entity (samples/sensor_pipeline, docs/streams.md
// "Samples"): one per sensor id, fed readings, keeping a running aggregate.
//
// The line protocol the pipeline reads over TCP is here too, so that the node
// that parses it, the demo that writes it and the tests agree on one definition:
//
//   <sensor id> <value> <timestamp>\n        e.g. "sensor-17 21.5 1700000000123"
//
// Exactly once without a producer id: a sensor applies a reading only when its
// timestamp is after the last one it applied, and acknowledges any other reading
// without a second event. The stream sends one reading per sensor at a time, in
// arrival order, and retries a reading in its place (docs/streams.md, "Entity
// I/O"), so a reading sent again after a lost reply is a duplicate the timestamp
// absorbs. That needs each sensor's timestamps to increase along its readings and
// each sensor to report over one connection (lines of different connections
// interleave); a reading that breaks this is acknowledged and not applied.
#pragma once

#include "troupe/actors/codec.hpp"
#include "troupe/actors/error.hpp"
#include "troupe/actors/expected.hpp"
#include "troupe/persistence/entity.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>
#include <variant>

namespace sensors {

using troupe::persistence::done;

// Commands.
/// A reading to apply; acknowledged once its event is durable (or at once when
/// it is not after the last applied timestamp).
struct record { double value = 0; std::int64_t timestamp = 0; using reply = done; };
struct aggregate;
/// The running aggregate.
struct get_aggregate { using reply = aggregate; };

// Events.
struct recorded { double value = 0; std::int64_t timestamp = 0; };

// State, and get_aggregate's reply.
struct aggregate {
  std::uint64_t count = 0;
  double sum = 0;
  double min = 0;  ///< meaningful once count > 0
  double max = 0;
  std::int64_t last_timestamp = 0;

  double mean() const { return count == 0 ? 0.0 : sum / static_cast<double>(count); }
  /// Folds one reading in (the entity's event handler, and the tests' expectation).
  void add(double value, std::int64_t timestamp) {
    min = count == 0 ? value : std::min(min, value);
    max = count == 0 ? value : std::max(max, value);
    sum += value;
    ++count;
    last_timestamp = timestamp;
  }
  friend bool operator==(const aggregate&, const aggregate&) = default;
};

struct sensor {
  static constexpr std::string_view entity_type = "sensor";
  using command = std::variant<record, get_aggregate>;
  using event = std::variant<recorded>;
  using state = aggregate;
  using effect = troupe::persistence::effect<sensor>;

  static effect on_command(const state& s, const record& c) {
    if (!std::isfinite(c.value))
      return effect::reply_error(c, "the value must be a finite number");
    if (s.count > 0 && c.timestamp <= s.last_timestamp)
      return effect::reply(c, done{});  // a duplicate, or out of order: not applied
    return effect::persist(recorded{c.value, c.timestamp});
  }
  static effect on_command(const state& s, const get_aggregate& c) { return effect::reply(c, s); }

  static state on_event(state s, const recorded& e) {
    s.add(e.value, e.timestamp);
    return s;
  }

  // A snapshot every 1,000 readings keeps a sensor's recovery short.
  static troupe::persistence::entity_options options() {
    return {.snapshot_every = 1000, .keep_snapshots = 2};
  }
};

NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(record, value, timestamp)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(recorded, value, timestamp)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(aggregate, count, sum, min, max, last_timestamp)
inline void to_json(nlohmann::json& j, const get_aggregate&) { j = nlohmann::json::object(); }
inline void from_json(const nlohmann::json&, get_aggregate&) {}

// Stable manifests: the journal stores events under them, and commands and
// replies travel under them between nodes.
inline void register_types(troupe::codec_registry& codec) {
  codec.add<recorded>("sensor.recorded");
  codec.add<aggregate>("sensor.aggregate");  // snapshots and get_aggregate's reply
  codec.add<record>("sensor.record");
  codec.add<get_aggregate>("sensor.get-aggregate");
}

// -- the line protocol ---------------------------------------------------------

/// The longest sensor id; ids are letters, digits, '-', '_', '.' and ':'.
inline constexpr std::size_t max_id_length = 64;
/// The longest line the pipeline accepts (an id, a number, a timestamp, spaces).
inline constexpr std::size_t max_line_length = 160;

struct reading {
  std::string sensor;
  double value = 0;
  std::int64_t timestamp = 0;
};

inline std::string format_line(const reading& r) {
  return fmt::format("{} {} {}\n", r.sensor, r.value, r.timestamp);
}

/// Parses one line (without its '\n'): three fields separated by spaces or
/// tabs. An error (invalid_argument) says what is wrong with it.
inline troupe::expected<reading> parse_line(std::string_view line) {
  auto bad = [&](std::string_view what) {
    return troupe::error{troupe::errc::invalid_argument, std::string{what}};
  };
  std::string_view fields[3];
  std::size_t n = 0;
  for (std::size_t i = 0; i < line.size();) {
    if (line[i] == ' ' || line[i] == '\t') {
      ++i;
      continue;
    }
    auto end = line.find_first_of(" \t", i);
    end = end == std::string_view::npos ? line.size() : end;
    if (n == 3)
      return bad("more than three fields (expected: <sensor> <value> <timestamp>)");
    fields[n++] = line.substr(i, end - i);
    i = end;
  }
  if (n < 3)
    return bad("fewer than three fields (expected: <sensor> <value> <timestamp>)");
  auto id_char = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-'
           || c == '_' || c == '.' || c == ':';
  };
  if (fields[0].size() > max_id_length || !std::all_of(fields[0].begin(), fields[0].end(), id_char))
    return bad(fmt::format("bad sensor id (at most {} of a-z A-Z 0-9 - _ . :)", max_id_length));
  reading r{std::string{fields[0]}, 0, 0};
  auto whole = [](std::string_view f, auto& out) {
    auto [end, ec] = std::from_chars(f.data(), f.data() + f.size(), out);
    return ec == std::errc{} && end == f.data() + f.size();
  };
  if (!whole(fields[1], r.value) || !std::isfinite(r.value))
    return bad("the value is not a finite decimal number");
  if (!whole(fields[2], r.timestamp))
    return bad("the timestamp is not a decimal integer");
  return r;
}

} // namespace sensors
