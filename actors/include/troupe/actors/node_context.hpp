// troupe::node_context: what every actor of a node can reach — config, logger,
// metrics, health, codec, the guardian, and layer extensions.
//
// The context lives as long as the node's CAF actor system (it is owned by the
// system's configuration), so actors may use it until they stop, even while the
// node shuts down. Find it from inside an actor with `node_of(self)`.
//
// Extensions let upper layers hang node-wide services on the node without the
// actors layer knowing them (the journal, the transport, ...):
//   ctx.set_extension<journal_service>(ptr);  auto j = ctx.extension<journal_service>();
//
// Thread-safety: all members may be used concurrently.
#pragma once

#include "troupe/actors/codec.hpp"
#include "troupe/actors/config.hpp"
#include "troupe/actors/health.hpp"
#include "troupe/actors/log.hpp"
#include "troupe/actors/metrics.hpp"

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <caf/local_actor.hpp>

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <typeindex>

namespace troupe {

class node_context {
public:
  node_context(troupe::config cfg, std::shared_ptr<logger> log,
               std::shared_ptr<codec_registry> codec);

  const std::string& name() const noexcept { return name_; }
  const troupe::config& config() const noexcept { return config_; }
  logger& log() const noexcept { return *log_; }
  metrics_registry& metrics() noexcept { return metrics_; }
  /// Whether the node can do its job (health.hpp); layers mark problems here.
  node_health& health() noexcept { return health_; }
  codec_registry& codec() const noexcept { return *codec_; }
  std::shared_ptr<codec_registry> shared_codec() const noexcept { return codec_; }

  /// The root of the node's supervision tree.
  caf::actor guardian() const;
  void set_guardian(caf::actor g);

  /// True once node::shutdown() began; layers refuse new work from then on.
  bool stopping() const noexcept { return stopping_.load(); }
  void set_stopping() noexcept { stopping_.store(true); }

  template <class T>
  void set_extension(std::shared_ptr<T> x) {
    std::lock_guard<std::mutex> guard{mtx_};
    extensions_[typeid(T)] = std::move(x);
  }
  template <class T>
  std::shared_ptr<T> extension() const {
    std::lock_guard<std::mutex> guard{mtx_};
    auto i = extensions_.find(typeid(T));
    return i == extensions_.end() ? nullptr : std::static_pointer_cast<T>(i->second);
  }
  /// Drops all extensions (in no particular order); the node calls this after its
  /// stop hooks ran.
  void clear_extensions();

  // -- used by supervision -------------------------------------------------------------

  /// A flag that turns true as soon as the actor's handler throws, before CAF
  /// answers the failing request. A supervisor registers one per child incarnation
  /// so its stable handle stops forwarding to a child that is already dying.
  using failure_flag = std::shared_ptr<std::atomic<bool>>;
  void watch_failure(std::uint64_t actor_id, failure_flag flag);
  void unwatch_failure(std::uint64_t actor_id);
  /// Called by troupe's exception handler (see spawn.hpp).
  void mark_failing(std::uint64_t actor_id);

private:
  std::string name_;
  troupe::config config_;
  std::shared_ptr<logger> log_;
  std::shared_ptr<codec_registry> codec_;
  metrics_registry metrics_;
  node_health health_{metrics_};
  std::atomic<bool> stopping_{false};
  mutable std::mutex mtx_;
  caf::actor guardian_;
  std::map<std::type_index, std::shared_ptr<void>> extensions_;
  std::map<std::uint64_t, failure_flag> failure_flags_;
};

/// The context of the node that owns `sys`, or nullptr if `sys` was not created
/// by a troupe::node.
node_context* find_context(caf::actor_system& sys) noexcept;

/// The context of the node that owns `sys`. Precondition: `sys` was created by a
/// troupe::node (aborts with a message otherwise).
node_context& node_of(caf::actor_system& sys);
inline node_context& node_of(caf::local_actor* self) {
  return node_of(self->system());
}

} // namespace troupe
