// troupe::node_health: whether a node can do its job, as the layers see it.
//
// A layer that finds a condition the node cannot recover from on its own (the
// journal file was deleted or replaced under it, ...) marks the node unhealthy
// with a reason, under a component name of its own ("persistence.journal"). The
// node stays up, so operators can look at it; an orchestrator or load balancer
// should stop sending it work. A layer that sees the condition end marks its
// component healthy again. The node is healthy while no component is unhealthy.
//
//   node.health().mark_unhealthy("persistence.journal", "the file was deleted");
//   if (!node.health().healthy()) for (auto& p : node.health().problems()) ...
//
// Metric: gauge `troupe_node_healthy` (1 healthy, 0 unhealthy) and, per unhealthy
// component, `troupe_node_unhealthy{component="..."}` = 1 (0 once healthy again).
// The management endpoint's readiness check (`GET /health/ready`, added with
// membership) reports problems() and answers "not ready" while any exists.
//
// Thread-safety: every member may be called concurrently.
#pragma once

#include "troupe/actors/metrics.hpp"

#include <chrono>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace troupe {

class node_health {
public:
  struct problem {
    std::string component;
    std::string reason;
    std::chrono::system_clock::time_point since;  ///< when it was first marked
  };

  explicit node_health(metrics_registry& metrics);
  node_health(const node_health&) = delete;
  node_health& operator=(const node_health&) = delete;

  /// Marks `component` unhealthy. Returns true if it was healthy before (callers
  /// use this to log a condition once); marking again keeps the first reason and
  /// time.
  bool mark_unhealthy(std::string_view component, std::string reason);

  /// Marks `component` healthy again; returns true if it was unhealthy.
  bool mark_healthy(std::string_view component);

  bool healthy() const;

  /// The unhealthy components, sorted by name.
  std::vector<problem> problems() const;

private:
  metrics_registry& metrics_;
  gauge_metric& healthy_;
  mutable std::mutex mtx_;
  std::map<std::string, problem, std::less<>> problems_;
};

} // namespace troupe
