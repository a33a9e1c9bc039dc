// troupe-bench NAME [--seconds S] | troupe-bench all [--seconds S] | troupe-bench list
#include "harness.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
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
  auto usage = [] {
    std::fprintf(stderr, "usage: troupe-bench NAME|all|list [--seconds S]\nbenchmarks:\n");
    for (auto& [name, e] : registry())
      std::fprintf(stderr, "  %-24s %s\n", name.c_str(), e.description.c_str());
    return 2;
  };
  if (argc < 2)
    return usage();
  std::string what = argv[1];
  options opts;
  for (int i = 2; i < argc; ++i) {
    if (std::strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) {
      opts.seconds = std::atof(argv[++i]);
      if (opts.seconds <= 0) {
        std::fprintf(stderr, "troupe-bench: --seconds needs a positive number\n");
        return 2;
      }
    } else {
      std::fprintf(stderr, "troupe-bench: unknown argument '%s'\n", argv[i]);
      return usage();
    }
  }
  if (what == "list") {
    for (auto& [name, e] : registry())
      std::printf("%s\n", name.c_str());
    return 0;
  }
  std::vector<std::string> names;
  if (what == "all") {
    for (auto& [name, e] : registry())
      names.push_back(name);
  } else if (registry().count(what)) {
    names.push_back(what);
  } else {
    std::fprintf(stderr, "troupe-bench: no benchmark named '%s'\n", what.c_str());
    return usage();
  }
  for (auto& name : names) {
    for (auto& r : registry()[name].fn(opts)) {
      std::printf("%s\n", r.to_json_line().c_str());
      std::fflush(stdout);
    }
  }
  return 0;
}
