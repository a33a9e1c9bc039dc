#include "troupe/actors/config.hpp"

#include "troupe/actors/shutdown_phase.hpp"

#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>

extern char** environ;

namespace troupe {

std::string_view to_string(config_type type) noexcept {
  switch (type) {
    case config_type::boolean: return "boolean";
    case config_type::integer: return "integer";
    case config_type::number: return "number";
    case config_type::string: return "string";
    case config_type::duration: return "duration";
    case config_type::string_list: return "list of strings";
  }
  return "?";
}

// -- ranges -----------------------------------------------------------------------

namespace {

std::string format_bound(std::int64_t x, config_type type) {
  return type == config_type::duration ? format_duration(duration{x}) : std::to_string(x);
}

/// Whether `v` (of the key's type) lies in the range.
bool in_range(const config_range& r, const config_value& v) {
  if (auto* s = std::get_if<std::string>(&v))
    return r.choices.empty() || std::find(r.choices.begin(), r.choices.end(), *s) != r.choices.end();
  std::int64_t x = 0;
  if (auto* i = std::get_if<std::int64_t>(&v))
    x = *i;
  else if (auto* d = std::get_if<duration>(&v))
    x = d->count();
  else if (auto* n = std::get_if<double>(&v))
    return *n >= static_cast<double>(r.min) && *n <= static_cast<double>(r.max);
  else
    return true;
  return (x >= r.min && x <= r.max) || (r.zero_allowed && x == 0);
}

/// Aborts when a layer declares a default outside its own range (a bug, caught by
/// the first test that builds the schema).
void check_default(const config_key& k) {
  if (!k.range || in_range(*k.range, k.default_value))
    return;
  std::fprintf(stderr, "troupe: the default of config key '%s' is outside its range %s\n",
               k.name.c_str(), to_string(*k.range, k.type).c_str());
  std::abort();
}

} // namespace

std::string to_string(const config_range& range, config_type type) {
  if (!range.choices.empty()) {
    std::string out;
    for (auto& c : range.choices)
      out += (out.empty() ? "" : ", ") + c;
    return out;
  }
  auto span = format_bound(range.min, type) + ".." + format_bound(range.max, type);
  return range.zero_allowed && range.min > 0 ? "0 or " + span : span;
}

// -- schema -----------------------------------------------------------------------

config_schema& config_schema::add(std::string name, config_type type, config_value default_value,
                                  std::string help, std::optional<config_range> range) {
  auto key = name;
  auto& k = keys_[key] = config_key{std::move(name), type, std::move(default_value),
                                    std::move(help), std::move(range)};
  check_default(k);
  return *this;
}

config_schema& config_schema::set_range(std::string_view name, config_range range) {
  auto i = keys_.find(name);
  if (i == keys_.end()) {
    std::fprintf(stderr, "troupe: set_range of the undeclared config key '%.*s'\n",
                 static_cast<int>(name.size()), name.data());
    std::abort();
  }
  i->second.range = std::move(range);
  check_default(i->second);
  return *this;
}

const config_key* config_schema::find(std::string_view name) const {
  auto i = keys_.find(name);
  return i == keys_.end() ? nullptr : &i->second;
}

std::vector<const config_key*> config_schema::keys() const {
  std::vector<const config_key*> result;
  for (auto& [name, key] : keys_)
    result.push_back(&key);
  return result;
}

namespace remote::detail {
void add_transport_config_keys(config_schema& schema);  // remote/transport_config_keys.cpp
} // namespace remote::detail

static void add_shutdown_phase_keys(config_schema& s) {
  using namespace std::chrono_literals;
  struct phase_default {
    shutdown_phase phase;
    duration timeout;
    const char* help;
  };
  for (auto [phase, timeout, help] : {
         phase_default{shutdown_phase::before_service_unbind, 2s,
                       "stop accepting new outside work"},
         phase_default{shutdown_phase::service_stop, 2s, "finish or refuse work in flight"},
         phase_default{shutdown_phase::cluster_sharding_shutdown_region, 10s,
                       "shard regions hand off their shards (hand-off timeouts derive from it)"},
         phase_default{shutdown_phase::cluster_leave, 5s,
                       "the node leaves the cluster (until it is exiting)"},
         phase_default{shutdown_phase::cluster_exiting, 5s,
                       "the node waits until the cluster removed it"},
         phase_default{shutdown_phase::before_actor_system_terminate, 2s,
                       "last steps before the actors stop"}})
    s.add(fmt::format("shutdown.phase.{}", to_string(phase)), config_type::duration, timeout,
          fmt::format("Timeout of the coordinated-shutdown phase in which {}.", help),
          config_range::of(0ms, 1h));
}

config_schema node_config_keys() {
  using namespace std::chrono_literals;
  config_schema s;
  s.add("node.name", config_type::string, std::string{"node"},
        "Node id shown in every log line and metric.");
  s.add("node.cluster-name", config_type::string, std::string{"troupe"},
        "Nodes only talk to peers with the same cluster name.");
  s.add("node.host", config_type::string, std::string{"127.0.0.1"},
        "Interface the node's transport listens on.");
  s.add("node.port", config_type::integer, std::int64_t{0},
        "TCP port of the node's transport; 0 picks a free port (the node reports it).",
        config_range::of(0, 65535));
  s.add("node.caf-middleman", config_type::boolean, false,
        "Load CAF's own remoting (io::middleman). troupe's transport does not need it; "
        "benchmarks and interop tests do.");
  s.add("scheduler.threads", config_type::integer, std::int64_t{0},
        "CAF scheduler worker threads; 0 means one per hardware thread but one (at least "
        "one): the last core runs the journal's writer and the transport's I/O thread.",
        config_range::of(0, 256));
  s.add("log.level", config_type::string, std::string{"info"},
        "Lowest level written: trace, debug, info, warn, error or off.",
        config_range::one_of({"trace", "debug", "info", "warn", "error", "off"}));
  s.add("log.stderr", config_type::boolean, true, "Write log lines to stderr.");
  s.add("log.file", config_type::string, std::string{},
        "Also append log lines to this file when not empty.");
  s.add("shutdown.timeout", config_type::duration, duration{30s},
        "Upper bound for node::shutdown(), its phases included; actors still running then "
        "are reported and abandoned.",
        config_range::of(10ms, 1h));
  s.add("shutdown.actor-timeout", config_type::duration, duration{3s},
        "How long shutdown waits for one actor to stop before killing it.",
        config_range::of(1ms, 1h));
  add_shutdown_phase_keys(s);
  remote::detail::add_transport_config_keys(s);
  return s;
}

// -- durations ----------------------------------------------------------------------

expected<duration> parse_duration(std::string_view text) {
  auto bad = [&] {
    return error{errc::invalid_config,
                 fmt::format("'{}' is not a duration (use e.g. 250ms, 2s, 1.5s, 1m, 100us)",
                             text)};
  };
  if (text == "0")
    return duration{0};
  size_t i = 0;
  while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.'))
    ++i;
  if (i == 0 || i == text.size())
    return bad();
  double number = 0;
  try {
    size_t used = 0;
    number = std::stod(std::string{text.substr(0, i)}, &used);
    if (used != i)
      return bad();
  } catch (...) {
    return bad();
  }
  auto unit = text.substr(i);
  double ns_per_unit = 0;
  if (unit == "ns")
    ns_per_unit = 1;
  else if (unit == "us")
    ns_per_unit = 1e3;
  else if (unit == "ms")
    ns_per_unit = 1e6;
  else if (unit == "s")
    ns_per_unit = 1e9;
  else if (unit == "m" || unit == "min")
    ns_per_unit = 60e9;
  else if (unit == "h")
    ns_per_unit = 3600e9;
  else
    return bad();
  // 2^63 ns (292 years) is beyond what a duration holds; there llround is
  // undefined (it wrapped to negative values, silently disabling timeouts).
  auto ns = number * ns_per_unit;
  if (!(ns < 0x1p63))
    return error{errc::invalid_config,
                 fmt::format("'{}' is too large for a duration (at most about 292 years)", text)};
  return duration{static_cast<std::int64_t>(std::llround(ns))};
}

std::string format_duration(duration d) {
  auto ns = d.count();
  if (ns == 0)
    return "0";
  if (ns % 3'600'000'000'000 == 0)
    return fmt::format("{}h", ns / 3'600'000'000'000);
  if (ns % 60'000'000'000 == 0)
    return fmt::format("{}m", ns / 60'000'000'000);
  if (ns % 1'000'000'000 == 0)
    return fmt::format("{}s", ns / 1'000'000'000);
  if (ns % 1'000'000 == 0)
    return fmt::format("{}ms", ns / 1'000'000);
  if (ns % 1'000 == 0)
    return fmt::format("{}us", ns / 1'000);
  return fmt::format("{}ns", ns);
}

// -- conversions --------------------------------------------------------------------

namespace {

error wrong_type(std::string_view key, config_type type, std::string_view source,
                 std::string_view got) {
  return error{errc::invalid_config,
               fmt::format("config key '{}' ({}): expected a {}, got {}", key, source,
                           to_string(type), got)};
}

error unknown_key(std::string_view key, std::string_view source) {
  return error{errc::invalid_config, fmt::format("unknown config key '{}' ({})", key, source)};
}

expected<config_value> parse_text(const config_key& key, std::string_view text,
                                  std::string_view source) {
  auto quoted = fmt::format("'{}'", text);
  switch (key.type) {
    case config_type::boolean:
      if (text == "true" || text == "1" || text == "yes" || text == "on")
        return config_value{true};
      if (text == "false" || text == "0" || text == "no" || text == "off")
        return config_value{false};
      return wrong_type(key.name, key.type, source, quoted);
    case config_type::integer: {
      try {
        size_t used = 0;
        auto x = std::stoll(std::string{text}, &used);
        if (used == text.size())
          return config_value{static_cast<std::int64_t>(x)};
      } catch (const std::out_of_range&) {
        return error{errc::invalid_config,
                     fmt::format("config key '{}' ({}): {} does not fit in a 64-bit integer",
                                 key.name, source, quoted)};
      } catch (...) {
      }
      return wrong_type(key.name, key.type, source, quoted);
    }
    case config_type::number: {
      try {
        size_t used = 0;
        auto x = std::stod(std::string{text}, &used);
        if (used == text.size())
          return config_value{x};
      } catch (...) {
      }
      return wrong_type(key.name, key.type, source, quoted);
    }
    case config_type::string:
      return config_value{std::string{text}};
    case config_type::duration: {
      auto d = parse_duration(text);
      if (!d)
        return error{errc::invalid_config, fmt::format("config key '{}' ({}): {}", key.name,
                                                       source, d.error().message())};
      return config_value{*d};
    }
    case config_type::string_list: {
      // Comma-separated, or a JSON array.
      std::vector<std::string> items;
      if (!text.empty() && text.front() == '[') {
        auto doc = nlohmann::json::parse(text, nullptr, false);
        if (doc.is_discarded() || !doc.is_array())
          return wrong_type(key.name, key.type, source, quoted);
        for (auto& x : doc) {
          if (!x.is_string())
            return wrong_type(key.name, key.type, source, quoted);
          items.push_back(x.get<std::string>());
        }
        return config_value{std::move(items)};
      }
      size_t start = 0;
      while (start <= text.size() && !text.empty()) {
        auto end = text.find(',', start);
        if (end == std::string_view::npos)
          end = text.size();
        items.emplace_back(text.substr(start, end - start));
        start = end + 1;
      }
      return config_value{std::move(items)};
    }
  }
  return wrong_type(key.name, key.type, source, quoted);
}

expected<config_value> parse_json(const config_key& key, const nlohmann::json& j,
                                  std::string_view source) {
  auto got = [&] { return std::string{j.type_name()} + " " + j.dump(); };
  switch (key.type) {
    case config_type::boolean:
      if (j.is_boolean())
        return config_value{j.get<bool>()};
      break;
    case config_type::integer:
      if (j.is_number_unsigned() && j.get<std::uint64_t>() > INT64_MAX)
        return error{errc::invalid_config,
                     fmt::format("config key '{}' ({}): {} does not fit in a 64-bit integer",
                                 key.name, source, j.dump())};
      if (j.is_number_integer())
        return config_value{j.get<std::int64_t>()};
      break;
    case config_type::number:
      if (j.is_number())
        return config_value{j.get<double>()};
      break;
    case config_type::string:
      if (j.is_string())
        return config_value{j.get<std::string>()};
      break;
    case config_type::duration:
      if (j.is_string())
        return parse_text(key, j.get<std::string>(), source);
      break;
    case config_type::string_list:
      if (j.is_array()) {
        std::vector<std::string> items;
        for (auto& x : j) {
          if (!x.is_string())
            return wrong_type(key.name, key.type, source, got());
          items.push_back(x.get<std::string>());
        }
        return config_value{std::move(items)};
      }
      break;
  }
  return wrong_type(key.name, key.type, source, got());
}

/// A value of the key's type checked against its range. `shown` is the value as
/// the source spelled it. Errors of the type check gain the allowed range too.
expected<config_value> in_key_range(const config_key& key, expected<config_value> v,
                                    std::string_view shown, std::string_view source) {
  if (!key.range)
    return v;
  auto allowed = to_string(*key.range, key.type);
  if (!v)
    return error{errc::invalid_config,
                 fmt::format("{}; allowed: {}", v.error().message(), allowed)};
  if (in_range(*key.range, *v))
    return v;
  return error{errc::invalid_config,
               fmt::format("config key '{}' ({}): {} is out of range; allowed: {}", key.name,
                           source, shown, allowed)};
}

expected<config_value> from_text(const config_key& key, std::string_view text,
                                 std::string_view source) {
  return in_key_range(key, parse_text(key, text, source), fmt::format("'{}'", text), source);
}

expected<config_value> from_json_value(const config_key& key, const nlohmann::json& j,
                                       std::string_view source) {
  return in_key_range(key, parse_json(key, j, source), j.dump(), source);
}

nlohmann::json to_json_value(const config_value& v) {
  return std::visit(
    [](const auto& x) -> nlohmann::json {
      using T = std::decay_t<decltype(x)>;
      if constexpr (std::is_same_v<T, duration>)
        return format_duration(x);
      else
        return x;
    },
    v);
}

std::string env_name_for(std::string_view key) {
  std::string result = "TROUPE_";
  for (char c : key)
    result += (c == '.' || c == '-') ? '_' : static_cast<char>(std::toupper(c));
  return result;
}

bool matches_type(const config_value& v, config_type type) {
  return static_cast<size_t>(type) == v.index();
}

} // namespace

// -- config -------------------------------------------------------------------------

config::config(config_schema schema) : schema_(std::move(schema)) {
  for (auto* key : schema_.keys())
    values_[key->name] = key->default_value;
}

expected<void> config::set(std::string_view key, config_value value) {
  auto k = schema_.find(key);
  if (!k)
    return unknown_key(key, "set programmatically");
  if (!matches_type(value, k->type))
    return wrong_type(key, k->type, "set programmatically", "a value of another type");
  auto shown = to_json_value(value).dump();
  auto v = in_key_range(*k, std::move(value), shown, "set programmatically");
  if (!v)
    return std::move(v).error();
  values_[k->name] = std::move(*v);
  return {};
}

expected<void> config::set_text(std::string_view key, std::string_view text) {
  auto k = schema_.find(key);
  if (!k)
    return unknown_key(key, "set programmatically");
  auto v = from_text(*k, text, "set programmatically");
  if (!v)
    return std::move(v).error();
  values_[k->name] = std::move(*v);
  return {};
}

namespace {

// Flattens {"a": {"b": 1}} into "a.b" -> 1; a JSON object is always a section, never
// a value (no key has an object type).
void flatten(const nlohmann::json& j, const std::string& prefix,
             std::vector<std::pair<std::string, const nlohmann::json*>>& out) {
  for (auto& [k, v] : j.items()) {
    auto name = prefix.empty() ? k : prefix + "." + k;
    if (v.is_object())
      flatten(v, name, out);
    else
      out.emplace_back(name, &v);
  }
}

} // namespace

expected<config> config::load(config_schema schema, const config_sources& sources) {
  config result{std::move(schema)};
  // 2. file
  if (sources.file) {
    std::ifstream in{*sources.file};
    if (!in)
      return error{errc::invalid_config,
                   fmt::format("cannot read config file '{}'", *sources.file)};
    auto doc = nlohmann::json::parse(in, nullptr, false, true);
    if (doc.is_discarded())
      return error{errc::invalid_config,
                   fmt::format("config file '{}' is not valid JSON", *sources.file)};
    if (!doc.is_object())
      return error{errc::invalid_config,
                   fmt::format("config file '{}' must hold a JSON object", *sources.file)};
    std::vector<std::pair<std::string, const nlohmann::json*>> entries;
    flatten(doc, "", entries);
    auto source = fmt::format("in file '{}'", *sources.file);
    for (auto& [name, value] : entries) {
      auto k = result.schema_.find(name);
      if (!k)
        return unknown_key(name, source);
      auto v = from_json_value(*k, *value, source);
      if (!v)
        return std::move(v).error();
      result.values_[k->name] = std::move(*v);
    }
  }
  // 3. environment: every TROUPE_* variable must name a key (or be TROUPE_CONFIG).
  std::map<std::string, const config_key*> env_keys;
  for (auto* k : result.schema_.keys())
    env_keys[env_name_for(k->name)] = k;
  for (auto& [name, text] : sources.environment) {
    if (name.rfind("TROUPE_", 0) != 0 || name == "TROUPE_CONFIG")
      continue;
    auto i = env_keys.find(name);
    if (i == env_keys.end())
      return error{errc::invalid_config,
                   fmt::format("unknown config key in environment variable {}", name)};
    auto v = from_text(*i->second, text, fmt::format("from environment variable {}", name));
    if (!v)
      return std::move(v).error();
    result.values_[i->second->name] = std::move(*v);
  }
  // 4. flags
  for (auto& flag : sources.flags) {
    auto body = std::string_view{flag}.substr(2);
    auto eq = body.find('=');
    if (eq == std::string_view::npos)
      return error{errc::invalid_config,
                   fmt::format("config flag '{}' needs a value (--key=value)", flag)};
    auto name = body.substr(0, eq);
    auto k = result.schema_.find(name);
    if (!k)
      return unknown_key(name, "on the command line");
    auto v = from_text(*k, body.substr(eq + 1), "on the command line");
    if (!v)
      return std::move(v).error();
    result.values_[k->name] = std::move(*v);
  }
  return result;
}

expected<config> config::load(config_schema schema, int argc, const char* const* argv,
                              std::vector<std::string>* rest) {
  config_sources sources;
  for (char** e = environ; e && *e; ++e) {
    std::string_view entry{*e};
    auto eq = entry.find('=');
    if (eq != std::string_view::npos && entry.rfind("TROUPE_", 0) == 0)
      sources.environment.emplace(entry.substr(0, eq), entry.substr(eq + 1));
  }
  if (auto i = sources.environment.find("TROUPE_CONFIG"); i != sources.environment.end())
    sources.file = i->second;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg{argv[i]};
    if (arg.rfind("--config=", 0) == 0) {
      sources.file = std::string{arg.substr(9)};
      continue;
    }
    auto name = arg.substr(0, arg.find('='));
    if (arg.rfind("--", 0) == 0 && name.find('.') != std::string_view::npos) {
      sources.flags.emplace_back(arg);
      continue;
    }
    if (rest)
      rest->emplace_back(arg);
  }
  return load(std::move(schema), sources);
}

const config_value& config::raw(std::string_view key, config_type type) const {
  auto k = schema_.find(key);
  if (!k || k->type != type) {
    std::fprintf(stderr, "troupe: config key '%.*s' read as %.*s but declared %s\n",
                 static_cast<int>(key.size()), key.data(),
                 static_cast<int>(to_string(type).size()), to_string(type).data(),
                 k ? std::string{to_string(k->type)}.c_str() : "nowhere");
    std::abort();
  }
  return values_.find(key)->second;
}

bool config::get_bool(std::string_view key) const {
  return std::get<bool>(raw(key, config_type::boolean));
}
std::int64_t config::get_int(std::string_view key) const {
  return std::get<std::int64_t>(raw(key, config_type::integer));
}
double config::get_number(std::string_view key) const {
  return std::get<double>(raw(key, config_type::number));
}
const std::string& config::get_string(std::string_view key) const {
  return std::get<std::string>(raw(key, config_type::string));
}
duration config::get_duration(std::string_view key) const {
  return std::get<duration>(raw(key, config_type::duration));
}
const std::vector<std::string>& config::get_string_list(std::string_view key) const {
  return std::get<std::vector<std::string>>(raw(key, config_type::string_list));
}

std::string config::dump() const {
  nlohmann::json doc = nlohmann::json::object();
  for (auto& [name, value] : values_)
    doc[name] = to_json_value(value);
  return doc.dump(2);
}

} // namespace troupe
