// troupe-bench NAME [--seconds S] | troupe-bench all [--seconds S] | troupe-bench list
// (--help lists the benchmarks; the command-line rules: tools/cli/troupe/cli/command_line.hpp)
#include "harness.hpp"

#include "troupe/cli/command_line.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <string>

namespace troupe::bench {

namespace {

struct entry {
  std::string description;
  bench_fn fn;
};

std::map<std::string, entry>& registry() {
  static std::map<std::string, entry> r;
  return r;
}

double round_sig(double x) {
  if (x == 0 || !std::isfinite(x))
    return x;
  auto digits = 4 - static_cast<int>(std::ceil(std::log10(std::fabs(x))));
  auto scale = std::pow(10.0, digits);
  return std::round(x * scale) / scale;
}

} // namespace

bool register_benchmark(std::string name, std::string description, bench_fn fn) {
  registry()[std::move(name)] = entry{std::move(description), std::move(fn)};
  return true;
}

double result::ratio() const {
  if (lower_is_better)
    return troupe > 0 ? baseline / troupe : 0;
  return baseline > 0 ? troupe / baseline : 0;
}

std::string result::to_json_line() const {
  nlohmann::ordered_json j;
  j["bench"] = bench;
  j["unit"] = unit;
  j["troupe"] = round_sig(troupe);
  j["baseline"] = round_sig(baseline);
  j["ratio"] = std::round(ratio() * 1000) / 1000;
  for (auto& [k, v] : extra.items())
    j[k] = v.is_number_float() ? nlohmann::json(round_sig(v.get<double>())) : v;
  return j.dump();
}

double percentile(std::vector<double>& samples, double p) {
  if (samples.empty())
    return 0;
  std::sort(samples.begin(), samples.end());
  auto rank = static_cast<size_t>(std::ceil(p / 100.0 * static_cast<double>(samples.size())));
  return samples[std::clamp<size_t>(rank, 1, samples.size()) - 1];
}

} // namespace troupe::bench

int main(int argc, char** argv) {
  using namespace troupe::bench;
  std::vector<std::string> known{"all", "list"};
  std::string footer = "Benchmarks:";
  for (auto& [name, e] : registry()) {
    known.push_back(name);
    footer += fmt::format("\n  {:<24} {}", name, e.description);
  }
  CLI::App app{"troupe's benchmarks: one JSON line per figure (troupe, raw baseline, ratio; "
               "docs/benchmarks.md).",
               "troupe-bench"};
  troupe::cli::apply_conventions(app);
  std::string what;
  options opts;
  app.add_option("NAME", what, "A benchmark, 'all', or 'list' (their names)")->required();
  troupe::cli::add_number(app, "--seconds", opts.seconds, 0.01, 3600,
                          "Target duration of each measured phase");
  app.footer(footer);
  if (auto rc = troupe::cli::parse(app, argc, argv))
    return *rc;
  if (std::find(known.begin(), known.end(), what) == known.end())
    return troupe::cli::usage_error(app, fmt::format("no benchmark named '{}'{}", what,
                                                     troupe::cli::did_you_mean(what, known)));
  if (what == "list") {
    for (auto& [name, e] : registry())
      std::printf("%s\n", name.c_str());
    return 0;
  }
  std::vector<std::string> names;
  if (what == "all") {
    for (auto& [name, e] : registry())
      names.push_back(name);
  } else {
    names.push_back(what);
  }
  for (auto& name : names) {
    for (auto& r : registry()[name].fn(opts)) {
      std::printf("%s\n", r.to_json_line().c_str());
      std::fflush(stdout);
    }
  }
  return 0;
}
