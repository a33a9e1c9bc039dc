// Test nodes: a troupe::node with test-friendly settings (quiet logs, 2 threads).
#pragma once

#include "troupe/actors/node.hpp"

#include <doctest/doctest.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace troupe::test {

/// Starts a node; `overrides` are "key=value" settings. Fails the test on error.
inline std::unique_ptr<node> make_node(std::vector<std::string> overrides = {},
                                       config_schema schema = node_config_keys(),
                                       node::options opts = {}) {
  config cfg{std::move(schema)};
  REQUIRE(cfg.set_text("log.level", "warn"));
  REQUIRE(cfg.set_text("scheduler.threads", "2"));
  for (auto& kv : overrides) {
    auto eq = kv.find('=');
    REQUIRE(eq != std::string::npos);
    auto r = cfg.set_text(kv.substr(0, eq), kv.substr(eq + 1));
    INFO(kv);
    REQUIRE(r);
  }
  auto n = node::start(std::move(cfg), std::move(opts));
  REQUIRE(n);
  return std::move(*n);
}

} // namespace troupe::test
