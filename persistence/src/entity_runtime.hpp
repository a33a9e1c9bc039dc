// Internal: node-wide state of the entity runtime, hung on the node as an
// extension and created on first use: settings read once from the config, the
// recovery permits, metrics per entity type and writer ids.
//
// Thread-safety: every member may be used concurrently.
#pragma once

#include "recovery_permits.hpp"
#include "recovery_watchdog.hpp"

#include "troupe/actors/config.hpp"
#include "troupe/actors/metrics.hpp"
#include "troupe/actors/supervisor.hpp"

#include <algorithm>
#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <string>

namespace troupe {
class node_context;
} // namespace troupe

namespace troupe::persistence::detail {

inline constexpr const char* key_stash_capacity = "persistence.entity.stash-capacity";
inline constexpr const char* key_max_concurrent_recoveries =
  "persistence.entity.max-concurrent-recoveries";
inline constexpr const char* key_recovery_page_size = "persistence.entity.recovery-page-size";
inline constexpr const char* key_recovery_timeout = "persistence.entity.recovery-timeout";
inline constexpr const char* key_replay_read_ahead = "persistence.entity.replay-read-ahead";
inline constexpr const char* key_restart_backoff_min = "persistence.entity.restart-backoff-min";
inline constexpr const char* key_restart_backoff_max = "persistence.entity.restart-backoff-max";

/// Metrics of one entity type (label entity_type); references stay valid for the
/// node's lifetime.
struct entity_metrics {
  counter_metric& commands;
  counter_metric& events_persisted;
  counter_metric& persist_rejected;
  counter_metric& persist_failed;
  counter_metric& stash_overflow;
  counter_metric& recoveries;
  counter_metric& recovery_failures;
  counter_metric& events_replayed;
  counter_metric& snapshots_saved;
  counter_metric& snapshot_failures;
  counter_metric& journal_stops;  ///< incarnations ended by a journal failure
  counter_metric& restarts;       ///< incarnations started again after one
  counter_metric& persist_throttled;  ///< persists deferred: the journal's queue was full
  counter_metric& passivations;   ///< stopped by an idle timeout or a hand back
  gauge_metric& stashed;  ///< commands waiting in the stashes of this type's entities
  histogram_metric& recovery_seconds;  ///< from the recovery's start to running
};

class entity_runtime {
public:
  std::size_t stash_capacity = 4096;
  std::size_t recovery_page_size = 2000;
  duration recovery_timeout = std::chrono::seconds{30};
  bool replay_read_ahead = true;
  /// Backoff after a journal failure ended an incarnation (doubling, 20 % jitter).
  duration restart_backoff_min = std::chrono::milliseconds{100};
  duration restart_backoff_max = std::chrono::seconds{5};
  backoff_policy restart_backoff() const {
    return {.min = restart_backoff_min, .max = std::max(restart_backoff_min, restart_backoff_max)};
  }
  std::shared_ptr<recovery_permits> permits;
  std::shared_ptr<recovery_watchdog> watchdog;  ///< times recoveries (recovery_timeout)
  gauge_metric* recovering = nullptr;          ///< recoveries holding a permit
  gauge_metric* waiting_for_permit = nullptr;  ///< entities queued for a permit

  /// The runtime of a node (created on first use).
  static std::shared_ptr<entity_runtime> of(node_context& ctx);

  entity_metrics& metrics_for(const std::string& entity_type);

  /// A fresh writer (incarnation) number; writer_id() spells it for the journal.
  std::uint64_t next_writer() noexcept { return ++incarnations_; }

  /// The writer id of writer number `n`, unique per node incarnation and entity
  /// incarnation: "<random>-<n in base 36>". Made per write rather than kept per
  /// entity.
  std::string writer_id(std::uint64_t n) const;

private:
  explicit entity_runtime(node_context& ctx);

  metrics_registry& registry_;
  std::string writer_prefix_;
  std::atomic<std::uint64_t> incarnations_{0};
  std::mutex mtx_;
  std::map<std::string, std::unique_ptr<entity_metrics>, std::less<>> metrics_;
};

} // namespace troupe::persistence::detail
