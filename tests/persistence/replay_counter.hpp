// replay_main for the counter entity, in-process, with its output collected.
#pragma once

#include "counter_entity.hpp"
#include "entity_fixtures.hpp"

#include "troupe/persistence/replay_tool.hpp"

#include <sstream>
#include <string>
#include <vector>

namespace fx {

/// Runs `replay ID --db PATH EXTRA...`; returns its exit code.
inline int replay_counter(const std::string& id, const std::string& path, std::string& out,
                          std::string& err, std::vector<std::string> extra = {}) {
  std::vector<std::string> args{"replay", id, "--db", path};
  args.insert(args.end(), extra.begin(), extra.end());
  std::vector<const char*> argv;
  for (auto& a : args)
    argv.push_back(a.c_str());
  auto codec = std::make_shared<troupe::codec_registry>();
  register_counter(*codec);
  std::ostringstream o, e;
  auto rc = troupe::persistence::replay_main<counter>(static_cast<int>(argv.size()), argv.data(),
                                                      codec, o, e);
  out = o.str();
  err = e.str();
  return rc;
}

} // namespace fx
