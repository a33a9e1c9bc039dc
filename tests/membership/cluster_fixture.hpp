// In-process clusters for the membership shell's tests: several nodes in one
// process, each with its transport and cluster, talking over 127.0.0.1.
#pragma once

#include "support/node_fixture.hpp"
#include "support/wait.hpp"

#include "troupe/actors/remote/transport.hpp"
#include "troupe/membership/cluster.hpp"

#include <doctest/doctest.h>

#include <memory>
#include <vector>

namespace troupe::test {

/// Short timings (the tests wait on what the cluster reports, never on sleeps).
inline membership::membership_settings fast_cluster_settings() {
  using namespace std::chrono_literals;
  membership::membership_settings s;
  s.gossip_interval = 200ms;
  s.leader_actions_interval = 100ms;
  s.join_retry_interval = 200ms;
  s.seed_node_timeout = 1s;
  s.heartbeat_interval = 200ms;
  s.detector.acceptable_pause = 600ms;
  s.detector.first_heartbeat_estimate = 200ms;
  s.split_brain.stable_after = 1500ms;
  s.split_brain.down_all_when_unstable = s.split_brain.stable_after * 3 / 4;
  return s;
}

struct cluster_node {
  std::unique_ptr<node> n;
  std::shared_ptr<remote::transport> t;
  std::shared_ptr<membership::cluster> c;
};

/// `count` nodes with transports; clusters are started by start_clusters.
class in_process_cluster {
public:
  /// `schema`: the nodes' config keys (upper layers add theirs).
  explicit in_process_cluster(std::size_t count, const config_schema& schema = node_config_keys()) {
    for (std::size_t i = 0; i < count; ++i) {
      cluster_node cn;
      cn.n = make_node({"transport.heartbeat-interval=200ms", "transport.failure-timeout=1s"},
                       schema);
      auto t = remote::transport::start(*cn.n);
      REQUIRE(t);
      cn.t = *t;
      nodes_.push_back(std::move(cn));
    }
  }

  /// Starts every node's cluster with the first `seeds` nodes as seed nodes.
  void start_clusters(std::size_t seeds = 0) {
    std::vector<remote::node_address> seed_list;
    for (std::size_t i = 0; i < (seeds == 0 ? nodes_.size() : seeds); ++i)
      seed_list.push_back(nodes_[i].t->address());
    for (auto& cn : nodes_) {
      auto s = fast_cluster_settings();
      s.seed_nodes = seed_list;
      auto c = membership::cluster::start(*cn.n, s);
      REQUIRE(c);
      cn.c = *c;
    }
  }

  cluster_node& operator[](std::size_t i) { return nodes_[i]; }
  std::size_t size() const { return nodes_.size(); }

  /// Every node in `which` sees exactly those nodes up, converged.
  bool up(const std::vector<std::size_t>& which) {
    for (auto i : which) {
      auto v = nodes_[i].c->view();
      if (!v.converged || v.state->members.size() != which.size())
        return false;
      for (auto j : which) {
        auto m = v.state->find(nodes_[j].c->self());
        if (!m || m->status != membership::member_status::up)
          return false;
      }
    }
    return true;
  }
  bool all_up() {
    std::vector<std::size_t> all(nodes_.size());
    for (std::size_t i = 0; i < all.size(); ++i)
      all[i] = i;
    return up(all);
  }

private:
  std::vector<cluster_node> nodes_;
};

} // namespace troupe::test
