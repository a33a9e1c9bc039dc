#include "troupe/cli/command_line.hpp"

#include "troupe/version.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <charconv>
#include <limits>
#include <sstream>

namespace troupe::cli {

namespace {

/// Levenshtein distance, for "did you mean".
std::size_t distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j)
    row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    auto diagonal = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      auto up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] != b[j - 1] ? 1 : 0)});
      diagonal = up;
    }
  }
  return row[b.size()];
}

/// "troupe journal events" for the subcommand events of journal of troupe.
std::string full_name(const CLI::App& app) {
  std::string name = app.get_name();
  for (auto* p = app.get_parent(); p != nullptr; p = p->get_parent())
    name = p->get_name() + " " + name;
  return name;
}

/// The innermost subcommand the arguments selected (the app itself if none).
const CLI::App* innermost(const CLI::App& app) {
  for (auto* sub : app.get_subcommands())
    return innermost(*sub);
  return &app;
}

/// What may be written where `wrong` was: the options and subcommands of `app`.
std::vector<std::string> known_names(const CLI::App& app, bool dashed) {
  std::vector<std::string> names;
  if (dashed) {
    for (auto* opt : app.get_options())
      for (auto& l : opt->get_lnames())
        names.push_back("--" + l);
  } else {
    for (auto* sub : app.get_subcommands([](const CLI::App*) { return true; }))
      names.push_back(sub->get_name());
  }
  return names;
}

/// The message for a parse error: the bad argument named, a near miss suggested.
std::string describe(const CLI::App& app, const CLI::ParseError& e) {
  // Unknown arguments first: they explain a missing required one (--bd for --db).
  {
    auto extras = app.remaining(true);
    if (!extras.empty()) {
      auto& wrong = extras.front();
      bool dashed = wrong.rfind("-", 0) == 0;
      auto bare = wrong.substr(0, wrong.find('='));
      auto* at = innermost(app);
      return fmt::format("unknown {} '{}'{}", dashed ? "option" : "argument", bare,
                         did_you_mean(bare, known_names(*at, dashed)));
    }
  }
  if (dynamic_cast<const CLI::RequiredError*>(&e) != nullptr) {
    std::string_view what = e.what();
    if (what.find("subcommand") != std::string_view::npos)
      return fmt::format("a command is required: {}",
                         fmt::join(known_names(*innermost(app), false), ", "));
    // "--db is required" -> "--db FILE is required"
    auto name = std::string{what.substr(0, what.find(' '))};
    if (auto* opt = innermost(app)->get_option_no_throw(name);
        opt != nullptr && opt->get_type_name() != "TEXT" && !opt->get_type_name().empty())
      return fmt::format("{} {} is required", name, opt->get_type_name());
  }
  return e.what();
}

std::string range_error(std::string_view text, const std::string& what) {
  return fmt::format("'{}' is not {}", text, what);
}

} // namespace

void apply_conventions(CLI::App& app) {
  app.set_version_flag("--version", fmt::format("{} {}", app.get_name(), TROUPE_VERSION));
}

std::string did_you_mean(std::string_view wrong, const std::vector<std::string>& known) {
  std::string best;
  auto best_distance = std::max<std::size_t>(3, wrong.size() / 4 + 1);
  for (auto& k : known)
    if (auto d = distance(wrong, k); d < best_distance) {
      best_distance = d;
      best = k;
    }
  return best.empty() ? std::string{} : fmt::format("; did you mean '{}'?", best);
}

int usage_error(const CLI::App& app, const std::string& what, std::FILE* err) {
  auto name = full_name(app);
  std::fprintf(err, "%s: %s (see %s --help)\n", name.c_str(), what.c_str(), name.c_str());
  return exit_usage;
}

int config_error(const CLI::App& app, const error& e, std::FILE* err) {
  auto name = full_name(app);
  std::fprintf(err, "%s: %s (see %s --help-config)\n", name.c_str(), e.to_string().c_str(),
               name.c_str());
  return exit_usage;
}

std::optional<int> parse(CLI::App& app, std::vector<std::string> args, std::FILE* out,
                         std::FILE* err) {
  std::reverse(args.begin(), args.end());  // CLI11 takes them last first
  try {
    app.parse(args);
  } catch (const CLI::Success& e) {  // --help, --version, --help-config
    std::ostringstream o;
    std::ostringstream x;
    auto rc = app.exit(e, o, x);
    std::fputs(o.str().c_str(), out);
    std::fputs(x.str().c_str(), err);
    return rc;
  } catch (const CLI::ParseError& e) {
    return usage_error(*innermost(app), describe(app, e), err);
  }
  return std::nullopt;
}

std::optional<int> parse(CLI::App& app, int argc, const char* const* argv, std::FILE* out,
                         std::FILE* err) {
  return parse(app, std::vector<std::string>(argv + 1, argv + argc), out, err);
}

CLI::Option* add_integer(CLI::App& app, const std::string& name, std::int64_t& target,
                         std::int64_t min, std::int64_t max, const std::string& help) {
  auto what = max == std::numeric_limits<std::int64_t>::max()
                ? fmt::format("a whole number of at least {}", min)
                : fmt::format("a whole number in {}..{}", min, max);
  auto check = [=, &target](const std::string& text) {
    std::int64_t x = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), x);
    if (ec != std::errc{} || end != text.data() + text.size() || x < min || x > max)
      throw CLI::ValidationError(name, range_error(text, what));
    target = x;
  };
  return app.add_option_function<std::string>(name, check, help)->type_name("INT");
}

CLI::Option* add_number(CLI::App& app, const std::string& name, double& target, double min,
                        double max, const std::string& help) {
  auto what = fmt::format("a number in {}..{}", min, max);
  auto check = [=, &target](const std::string& text) {
    double x = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), x);
    if (ec != std::errc{} || end != text.data() + text.size() || !(x >= min && x <= max))
      throw CLI::ValidationError(name, range_error(text, what));
    target = x;
  };
  return app.add_option_function<std::string>(name, check, help)->type_name("NUMBER");
}

} // namespace troupe::cli
