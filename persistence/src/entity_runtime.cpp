#include "entity_runtime.hpp"

#include "troupe/actors/node_context.hpp"

#include <fmt/core.h>

#include <random>

namespace troupe::persistence::detail {

namespace {

std::int64_t int_or(const config& cfg, const char* key, std::int64_t fallback) {
  auto* k = cfg.schema().find(key);
  return k && k->type == config_type::integer ? cfg.get_int(key) : fallback;
}

bool bool_or(const config& cfg, const char* key, bool fallback) {
  auto* k = cfg.schema().find(key);
  return k && k->type == config_type::boolean ? cfg.get_bool(key) : fallback;
}

duration duration_or(const config& cfg, const char* key, duration fallback) {
  auto* k = cfg.schema().find(key);
  return k && k->type == config_type::duration ? cfg.get_duration(key) : fallback;
}

} // namespace

entity_runtime::entity_runtime(node_context& ctx) : registry_(ctx.metrics()) {
  // Nodes whose schema lacks the persistence keys (add_config_keys) get the defaults.
  auto& cfg = ctx.config();
  stash_capacity = static_cast<std::size_t>(std::max<std::int64_t>(
    1, int_or(cfg, key_stash_capacity, static_cast<std::int64_t>(stash_capacity))));
  recovery_page_size = static_cast<std::size_t>(std::max<std::int64_t>(
    1, int_or(cfg, key_recovery_page_size, static_cast<std::int64_t>(recovery_page_size))));
  recovery_timeout = duration_or(cfg, key_recovery_timeout, recovery_timeout);
  replay_read_ahead = bool_or(cfg, key_replay_read_ahead, replay_read_ahead);
  restart_backoff_min = duration_or(cfg, key_restart_backoff_min, restart_backoff_min);
  restart_backoff_max = duration_or(cfg, key_restart_backoff_max, restart_backoff_max);
  watchdog = recovery_watchdog::make(recovery_timeout);
  permits = recovery_permits::make(
    static_cast<std::size_t>(std::max<std::int64_t>(1, int_or(cfg, key_max_concurrent_recoveries, 50))));
  recovering = &registry_.gauge("troupe_persistence_entity_recoveries_in_progress", {},
                                "Entity recoveries holding a permit.");
  waiting_for_permit = &registry_.gauge("troupe_persistence_entity_recoveries_waiting", {},
                                        "Entities waiting for a recovery permit.");
  std::random_device rd;
  // Short enough (<= 15 characters with the counter) for the string's inline
  // buffer: every event carries a copy.
  writer_prefix_ = fmt::format("{:08x}", rd());
}

std::shared_ptr<entity_runtime> entity_runtime::of(node_context& ctx) {
  if (auto rt = ctx.extension<entity_runtime>())
    return rt;
  // Creation is rare (once per node); one lock for all nodes keeps two entities
  // starting at the same time from creating two runtimes.
  static std::mutex creation;
  std::lock_guard<std::mutex> guard{creation};
  if (auto rt = ctx.extension<entity_runtime>())
    return rt;
  auto rt = std::shared_ptr<entity_runtime>{new entity_runtime{ctx}};
  ctx.set_extension<entity_runtime>(rt);
  return rt;
}

entity_metrics& entity_runtime::metrics_for(const std::string& entity_type) {
  std::lock_guard<std::mutex> guard{mtx_};
  if (auto i = metrics_.find(entity_type); i != metrics_.end())
    return *i->second;
  metric_labels labels{{"entity_type", entity_type}};
  auto c = [&](const char* name, const char* help) -> counter_metric& {
    return registry_.counter(name, labels, help);
  };
  auto m = std::unique_ptr<entity_metrics>{new entity_metrics{
    c("troupe_persistence_entity_commands_total", "Commands handled by entities."),
    c("troupe_persistence_entity_events_persisted_total", "Events persisted by entities."),
    c("troupe_persistence_entity_persist_rejected_total",
      "Persists rejected (event did not encode, or the journal refused it)."),
    c("troupe_persistence_entity_persist_failed_total",
      "Persists that failed or conflicted; each stopped its entity."),
    c("troupe_persistence_entity_stash_overflow_total",
      "Commands refused with `overloaded` because the entity's stash was full."),
    c("troupe_persistence_entity_recoveries_total", "Recoveries completed."),
    c("troupe_persistence_entity_recovery_failures_total",
      "Recoveries that failed; each stopped its entity."),
    c("troupe_persistence_entity_events_replayed_total", "Events replayed during recoveries."),
    c("troupe_persistence_entity_snapshots_saved_total", "Snapshots saved."),
    c("troupe_persistence_entity_snapshot_failures_total",
      "Snapshots that could not be encoded or saved (the entity went on)."),
    c("troupe_persistence_entity_journal_stops_total",
      "Entity incarnations stopped by a journal failure (a failed persist or recovery)."),
    c("troupe_persistence_entity_restarts_total",
      "Entities started again by a command after such a stop."),
    c("troupe_persistence_entity_persist_throttled_total",
      "Persists deferred because the journal's write queue was full (retried after a "
      "short backoff)."),
    c("troupe_persistence_entity_passivations_total",
      "Entities stopped by an idle timeout or a stop and hand back."),
    registry_.gauge("troupe_persistence_entity_stashed_commands", labels,
                    "Commands waiting in entity stashes."),
    registry_.histogram("troupe_persistence_entity_recovery_seconds",
                        histogram_metric::exponential_bounds(0.0001, 4, 10), labels,
                        "How long entity recoveries took, from their recovery permit to "
                        "running: the snapshot and the replay (not the wait for a permit)."),
  }};
  auto& ref = *m;
  metrics_.emplace(entity_type, std::move(m));
  return ref;
}

std::string entity_runtime::writer_id(std::uint64_t n) const {
  // Built in one allocation: every persisting command spells it.
  char digits[16];  // 36^13 > 2^64
  char* end = digits + sizeof digits;
  char* p = end;
  do {
    *--p = "0123456789abcdefghijklmnopqrstuvwxyz"[n % 36];
    n /= 36;
  } while (n > 0);
  std::string id;
  id.reserve(writer_prefix_.size() + 1 + static_cast<std::size_t>(end - p));
  id += writer_prefix_;
  id += '-';
  id.append(p, end);
  return id;
}

} // namespace troupe::persistence::detail
