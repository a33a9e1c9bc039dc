// Internal: what the cluster handle and its actor share.
#pragma once

#include "troupe/actors/remote/transport.hpp"
#include "troupe/membership/cluster.hpp"

#include <atomic>
#include <condition_variable>
#include <map>
#include <mutex>

namespace troupe::membership::detail {

struct cluster_shared {
  node_identity self;
  membership_settings settings;
  std::weak_ptr<remote::transport> transport;

  mutable std::mutex mtx;
  mutable std::condition_variable changed;
  cluster_view view;  // guarded by mtx
  std::optional<cluster_event> terminated;
  std::atomic<std::uint64_t> next_callback{1};
  std::vector<std::function<void(const cluster_event&)>> on_terminated;
  caf::actor actor;
};

} // namespace troupe::membership::detail
