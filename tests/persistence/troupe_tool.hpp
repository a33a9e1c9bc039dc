// Runs the real `troupe` binary (built in build/tools/) and collects its output.
#pragma once

#include "support/child_process.hpp"

#include <chrono>
#include <string>
#include <vector>

namespace troupe::test {

struct run_result {
  int status = -1;
  std::vector<std::string> lines;  ///< stdout and stderr

  std::string text() const {
    std::string all;
    for (auto& l : lines)
      all += l + "\n";
    return all;
  }
  bool has(const std::string& part) const {
    for (auto& l : lines)
      if (l.find(part) != std::string::npos)
        return true;
    return false;
  }
  /// The parts no line contains, one per line ("" when every part is there):
  /// CHECK(r.missing({...}) == "") names each one missing.
  std::string missing(const std::vector<std::string>& parts) const {
    std::string out;
    for (auto& p : parts)
      if (!has(p))
        out += "\n  " + p;
    return out;
  }
};

/// Runs `troupe journal ARGS...`, through `launcher` if given (a command line
/// prefix, e.g. "setpriv --reuid=65534 ... ").
inline run_result troupe_journal(std::vector<std::string> args, const std::string& launcher = {}) {
  std::string cmd = launcher + program_path("../../tools/troupe") + " journal";
  for (auto& a : args)
    cmd += " '" + a + "'";
  child_process p{"/bin/sh", {"-c", cmd + " 2>&1"}};
  run_result r;
  while (auto line = p.read_line(std::chrono::seconds{30}))
    r.lines.push_back(*line);
  r.status = p.wait(std::chrono::seconds{30}).value_or(-1);
  return r;
}

} // namespace troupe::test
