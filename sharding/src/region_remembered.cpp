// The shard region's side of remember_entities (remembered_entities.hpp has the
// journal format): a starting shard's set is loaded before the shard starts,
// each entity started or passivated is written to it under the shard's fence (one
// write in flight per shard, the whole set every compact_after changes), and the
// remembered entities are started a few per tick.
#include "region_state.hpp"

#include <caf/all.hpp>

#include <algorithm>

namespace troupe::sharding::detail {

namespace {

/// Writes a remembered shard's pending changes (one write in flight per shard,
/// under the shard's fence).
void write_remembered(region_self self, shard_id s) {
  auto& st = *self->state;
  auto it = st.remembered.find(s);
  if (it == st.remembered.end())
    return;
  auto& r = it->second;
  if (r.writing || (r.started.empty() && r.stopped.empty()))
    return;
  persistence::atomic_write w;
  w.persistence_id = remembered_persistence_id(st.spec->name, s);
  // Every compact_after changes the whole set (r.ids has the pending changes).
  r.writing_set = r.changes_since_set >= compact_after;
  w.events.push_back(r.writing_set
                       ? remembered_set_record(w.persistence_id, r.next_seq, r.ids)
                       : remembered_record(w.persistence_id, r.next_seq, r.started, r.stopped));
  w.fence = persistence::write_fence{shard_fence_key(st.spec->name, s), r.epoch};
  r.started.clear();
  r.stopped.clear();
  r.writing = true;
  st.journal->write(std::move(w), [me = caf::actor_cast<caf::actor>(self), s,
                                   epoch = r.epoch](expected<void> result) {
    caf::anon_send(me, remembered_written{s, epoch, std::move(result)});
  });
}

} // namespace

/// Records that entity `id` of shard `s` started (or was passivated), if the
/// shard remembers its entities.
void remember(region_self self, shard_id s, const std::string& id, bool started) {
  auto& st = *self->state;
  auto it = st.remembered.find(s);
  if (it == st.remembered.end())
    return;
  auto& r = it->second;
  if (started ? !r.ids.insert(id).second : r.ids.erase(id) == 0)
    return;
  (started ? r.started : r.stopped).push_back(id);
  write_remembered(self, s);
}

/// The remembered entities of a starting shard are known: start the shard, and
/// its entities a few per tick.
void remembered_loaded_for(region_self self, remembered_loaded& m) {
  auto& st = *self->state;
  auto ls = st.core->local_shards().find(m.shard);
  if (ls == st.core->local_shards().end() || ls->second.epoch != m.epoch
      || ls->second.state != region_core::shard_state::starting)
    return;
  auto ids = m.events ? fold_remembered(*m.events) : expected<remembered_fold>{m.events.error()};
  if (!ids) {
    st.ctx->log().warn("sharding", "{}: shard {} (epoch {}) not started: its remembered entities "
                                   "cannot be read: {}",
                       st.spec->name, m.shard, m.epoch, ids.error().message());
    st.core->shard_start_failed(now(), m.shard, st.fx);
    apply(self);
    return;
  }
  auto& r = st.remembered[m.shard];
  r = remembered_shard{};
  r.epoch = m.epoch;
  r.ids = std::move(ids->ids);
  r.changes_since_set = ids->changes_since_set;
  r.next_seq = m.highest + 1;
  r.to_start.assign(r.ids.begin(), r.ids.end());
  st.ctx->log().info("sharding", "{}: hosting shard {} (epoch {}), {} remembered entities",
                     st.spec->name, m.shard, m.epoch, r.ids.size());
  st.core->shard_started(now(), m.shard, st.fx);
  apply(self);
}

void remembered_written_for(region_self self, remembered_written& m) {
  auto& st = *self->state;
  auto it = st.remembered.find(m.shard);
  if (it == st.remembered.end() || it->second.epoch != m.epoch)
    return;
  it->second.writing = false;
  if (!m.result) {
    // Fenced (a newer owner), or the journal failed: this region stops
    // remembering the shard's changes rather than guess what was stored.
    st.ctx->log().warn("sharding", "{}: shard {}: remembered entities not updated: {}",
                       st.spec->name, m.shard, m.result.error().message());
    st.remembered.erase(it);
    return;
  }
  auto& r = it->second;
  if (r.writing_set) {
    // The events before the whole set are folded into it: delete them (a failed
    // delete only leaves more to read; the set is stored either way).
    r.changes_since_set = 0;
    st.journal->delete_events_to(
      remembered_persistence_id(st.spec->name, m.shard), r.next_seq - 1,
      [log = &st.ctx->log(), type = st.spec->name, shard = m.shard](expected<void> d) {
        if (!d)
          log->warn("sharding", "{}: shard {}: compacting remembered entities: {}", type, shard,
                    d.error().message());
      });
  } else {
    ++r.changes_since_set;
  }
  ++r.next_seq;
  write_remembered(self, m.shard);
}

/// Starts remembered entities of active shards, at most
/// remembered_starts_per_second.
void start_remembered(region_self self) {
  auto& st = *self->state;
  auto budget = std::max<std::size_t>(1, st.spec->settings.remembered_starts_per_second / 10);
  for (auto& [s, r] : st.remembered) {
    auto ls = st.core->local_shards().find(s);
    if (ls == st.core->local_shards().end() || ls->second.state != region_core::shard_state::active)
      continue;
    while (budget > 0 && !r.to_start.empty()) {
      auto id = std::move(r.to_start.front());
      r.to_start.pop_front();
      if (auto e = st.entities.find(id); e != st.entities.end() && e->second.actor)
        continue;
      --budget;
      if (auto slot = slot_for(self, id, s); !slot)
        st.ctx->log().warn("sharding", "{}: remembered entity '{}' not started: {}",
                           st.spec->name, id, slot.error().message());
    }
  }
}

} // namespace troupe::sharding::detail
