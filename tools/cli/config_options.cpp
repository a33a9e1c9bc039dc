// cli::config_options and --help-config (command_line.hpp). Apart from the rest so
// that the journal rows fuzzer links the parsing helpers without the config code.
#include "troupe/cli/command_line.hpp"
#include "troupe/command_line.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace troupe::cli {

config_options::config_options(CLI::App& app, const config_schema& schema) {
  app.add_option_function<std::string>(
       "--config", [this](const std::string& file) { set("config", file); },
       "JSON configuration file (also TROUPE_CONFIG)")
    ->type_name("FILE");
  app.add_flag_callback(
    "--help-config",
    [&schema] {
      print_config_help(schema, stdout);
      throw CLI::Success{};
    },
    "List every configuration key (--KEY=VALUE or --KEY VALUE) and exit");
  // Hidden from --help (group ""): --help-config lists them with types and defaults.
  for (auto* k : schema.keys())
    app.add_option_function<std::string>(
         "--" + k->name, [this, name = k->name](const std::string& v) { set(name, v); },
         k->help)
      ->group("");
}

void config_options::set(const std::string& key, const std::string& value) {
  flags_.push_back(fmt::format("--{}={}", key, value));
}

expected<config> config_options::load(config_schema schema) const {
  std::vector<const char*> argv{"troupe"};
  for (auto& f : flags_)
    argv.push_back(f.c_str());
  return config::load(std::move(schema), static_cast<int>(argv.size()), argv.data());
}

void print_config_help(const config_schema& schema, std::FILE* out) {
  auto defaults = nlohmann::json::parse(config{schema}.dump());
  std::fprintf(out, "Configuration keys: --KEY=VALUE or --KEY VALUE, a JSON file (--config FILE "
                    "or TROUPE_CONFIG), or TROUPE_<KEY> variables (docs/configuration.md).\n");
  for (auto* k : schema.keys()) {
    auto& def = defaults[k->name];
    auto shown = def.is_string() ? def.get<std::string>() : def.dump();
    std::fprintf(out, "\n  --%s <%s>  default: %s", k->name.c_str(),
                 std::string{to_string(k->type)}.c_str(), shown.empty() ? "\"\"" : shown.c_str());
    if (k->range)
      std::fprintf(out, "  allowed: %s", to_string(*k->range, k->type).c_str());
    std::fprintf(out, "\n      %s\n", k->help.c_str());
  }
}

} // namespace troupe::cli

namespace troupe {

command_line parse_command_line(config_schema schema, int argc, const char* const* argv,
                                const program_info& info) {
  CLI::App app{info.description, info.name};
  cli::apply_conventions(app);
  cli::config_options keys{app, schema};
  if (auto rc = cli::parse(app, argc, argv))
    return {std::nullopt, *rc};
  auto cfg = keys.load(std::move(schema));
  if (!cfg)
    return {std::nullopt, cli::config_error(app, cfg.error())};
  return {std::move(*cfg), cli::exit_ok};
}

} // namespace troupe
