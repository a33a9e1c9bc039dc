#include "troupe/actors/health.hpp"

namespace troupe {

node_health::node_health(metrics_registry& metrics)
  : metrics_(metrics),
    healthy_(metrics.gauge("troupe_node_healthy", {},
                           "1 while the node is healthy; 0 while a component reports a problem "
                           "(see troupe_node_unhealthy).")) {
  healthy_.set(1);
}

bool node_health::mark_unhealthy(std::string_view component, std::string reason) {
  std::lock_guard<std::mutex> guard{mtx_};
  if (problems_.find(component) != problems_.end())
    return false;
  problems_.emplace(std::string{component},
                    problem{std::string{component}, std::move(reason),
                            std::chrono::system_clock::now()});
  metrics_
    .gauge("troupe_node_unhealthy", {{"component", std::string{component}}},
           "1 while the component reports a problem that makes the node unhealthy.")
    .set(1);
  healthy_.set(0);
  return true;
}

bool node_health::mark_healthy(std::string_view component) {
  std::lock_guard<std::mutex> guard{mtx_};
  auto i = problems_.find(component);
  if (i == problems_.end())
    return false;
  problems_.erase(i);
  metrics_.gauge("troupe_node_unhealthy", {{"component", std::string{component}}}).set(0);
  healthy_.set(problems_.empty() ? 1 : 0);
  return true;
}

bool node_health::healthy() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return problems_.empty();
}

std::vector<node_health::problem> node_health::problems() const {
  std::lock_guard<std::mutex> guard{mtx_};
  std::vector<problem> result;
  for (auto& [name, p] : problems_)
    result.push_back(p);
  return result;
}

} // namespace troupe
