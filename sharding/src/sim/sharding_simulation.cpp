#include "troupe/sharding/sim/sharding_simulation.hpp"
#include "troupe/sharding/snapshot.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <deque>

namespace troupe::sharding::sim {

using membership::member_status;
using membership::timestamp;

// ---- journal model ---------------------------------------------------------------

journal_model::result journal_model::append(const std::string& entity, std::uint64_t seq,
                                            shard_id shard, std::uint64_t epoch,
                                            std::uint64_t command) {
  // Both checks happen in the write's transaction, as in the SQLite journal.
  if (fence_of(shard) > epoch)
    return result::fenced;
  auto& events = events_[entity];
  if (seq != events.size() + 1)
    return result::conflict;
  events.push_back(command);
  return result::ok;
}

journal_model::result journal_model::fence(shard_id shard, std::uint64_t epoch) {
  auto& f = fences_[shard];
  if (f > epoch)
    return result::fenced;
  f = epoch;
  return result::ok;
}

journal_model::result journal_model::append_coordinator(std::uint64_t seq, coordinator_event e) {
  if (seq != coordinator_.size() + 1)
    return result::conflict;
  coordinator_.push_back(std::move(e));
  return result::ok;
}

std::uint64_t journal_model::fence_of(shard_id shard) const {
  auto i = fences_.find(shard);
  return i == fences_.end() ? 0 : i->second;
}

std::uint64_t journal_model::highest_seq(const std::string& entity) const {
  auto i = events_.find(entity);
  return i == events_.end() ? 0 : i->second.size();
}

// ---- per node state --------------------------------------------------------------

struct sharding_simulation::entity_state {
  shard_id shard = 0;
  std::uint64_t epoch = 0;
  std::uint64_t next_seq = 1;
  bool writing = false;
  std::deque<command> pending;
};

struct sharding_simulation::shard_state {
  enum class phase { fencing, active, stopping };
  std::uint64_t epoch = 0;
  phase at = phase::fencing;
  std::set<std::string> entities;
};

struct sharding_simulation::node_state {
  std::uint32_t starts = 0;
  std::shared_ptr<const membership::gossip> seen_state;  // the last membership state handled
  bool left = false;                                      // graceful shutdown begun
  std::unique_ptr<membership::singleton_core> singleton;
  std::unique_ptr<coordinator_core> coordinator;
  std::uint64_t coordinator_generation = 0;
  std::uint64_t coordinator_seq = 0;
  bool coordinator_writing = false;
  std::deque<coordinator_event> coordinator_queue;
  std::unique_ptr<region_core> region;
  std::map<shard_id, shard_state> shards;
  std::map<std::string, entity_state> entities;
  std::map<message_token, command> tokens;
  message_token next_token = 1;
};

namespace {

constexpr std::string_view coordinator_singleton = "coordinator";

double seconds(timestamp t) {
  return std::chrono::duration<double>(t).count();
}

} // namespace

sharding_simulation::sharding_simulation(sharding_sim_options options)
  : options_(std::move(options)), sim_(options_.membership), rng_(options_.membership.seed ^ 0x5eed) {
  options_.coordinator.number_of_shards = options_.number_of_shards;
  options_.region.number_of_shards = options_.number_of_shards;
  nodes_.resize(sim_.size());
  for (std::size_t e = 0; e < options_.entities; ++e)
    entity_ids_.push_back(fmt::format("e{}", e));
  sim_.on_effects = [this](node_index i, const membership::effects&) { on_membership(i); };
}

sharding_simulation::~sharding_simulation() = default;

void sharding_simulation::fail(std::string what) {
  if (violations_.size() < 50)
    violations_.push_back(fmt::format("t={:.3f}s: {}", seconds(sim_.now()), what));
}

std::optional<node_index> sharding_simulation::index_of(const node_identity& n) const {
  for (node_index i = 0; i < sim_.size(); ++i)
    if (sim_.at(i).address == n.address)
      return i;
  return std::nullopt;
}

sharding_simulation::node_state* sharding_simulation::state_of(node_index i) {
  auto& n = sim_.at(i);
  if (n.state != membership::sim::membership_simulation::node_state::running
      && n.state != membership::sim::membership_simulation::node_state::paused)
    return nullptr;
  auto& st = nodes_[i];
  if (!st || st->starts != n.starts) {
    // A new incarnation: everything of the old one is gone with its process.
    st = std::make_unique<node_state>();
    st->starts = n.starts;
    st->singleton = std::make_unique<membership::singleton_core>(
      n.core->self(), std::string{coordinator_singleton}, "", std::chrono::milliseconds{500});
    st->region = std::make_unique<region_core>(n.core->self(), options_.region);
    auto starts = n.starts;
    sim_.at(sim_.now() + options_.tick_interval, [this, i, starts] { tick(i, starts); });
    sim_.at(sim_.now() + options_.command_interval, [this, i, starts] { client_tick(i, starts); });
  }
  return st.get();
}

// ---- membership and timers -------------------------------------------------------

void sharding_simulation::on_membership(node_index i) {
  auto* st = state_of(i);
  if (!st)
    return;
  auto& core = *sim_.at(i).core;
  if (core.current_phase() != membership::membership_core::phase::member)
    return;
  if (st->seen_state == core.state_ptr())
    return;
  st->seen_state = core.state_ptr();
  auto now = sim_.now();
  auto snap = cluster_snapshot_of(core.state());
  region_effects rfx;
  st->region->members_changed(now, snap, rfx);
  st->region->coordinator_moved(now, coordinator_location(core.state()), rfx);
  auto me = core.self_member();
  if (me && !st->left
      && (me->status == member_status::leaving || me->status == member_status::exiting)) {
    st->left = true;
    st->region->graceful_shutdown(now, rfx);
  }
  apply_region(i, rfx);
  membership::singleton_effects sfx;
  st->singleton->update(now, core.state(), sfx);
  apply_singleton(i, sfx);
  if (st->coordinator) {
    coordinator_effects cfx;
    st->coordinator->members_changed(now, snap, cfx);
    apply_coordinator(i, cfx);
  }
}

/// Runs `fn` on node i's current incarnation `starts` at `t`: dropped if the node
/// stopped or restarted meanwhile, delayed while it is paused.
template <class F>
static void on_node(membership::sim::membership_simulation& sim, node_index i,
                    std::uint32_t starts, timestamp t, F fn) {
  sim.at(t, [&sim, i, starts, fn]() mutable {
    auto& n = sim.at(i);
    if (n.starts != starts)
      return;
    if (n.state == membership::sim::membership_simulation::node_state::paused)
      on_node(sim, i, starts, n.paused_until + membership::duration{1}, std::move(fn));
    else if (n.state == membership::sim::membership_simulation::node_state::running)
      fn();
  });
}

void sharding_simulation::tick(node_index i, std::uint32_t starts) {
  auto* st = state_of(i);
  if (!st || st->starts != starts)
    return;
  if (sim_.at(i).state == membership::sim::membership_simulation::node_state::running) {
    auto now = sim_.now();
    region_effects rfx;
    st->region->tick(now, rfx);
    apply_region(i, rfx);
    membership::singleton_effects sfx;
    st->singleton->tick(now, sfx);
    apply_singleton(i, sfx);
    if (st->coordinator) {
      coordinator_effects cfx;
      st->coordinator->tick(now, cfx);
      apply_coordinator(i, cfx);
    }
    if (now - last_periodic_ >= options_.tick_interval) {
      last_periodic_ = now;
      periodic_checks();
    }
  }
  on_node(sim_, i, starts, sim_.now() + options_.tick_interval, [this, i, starts] { tick(i, starts); });
}

void sharding_simulation::client_tick(node_index i, std::uint32_t starts) {
  auto* st = state_of(i);
  if (!st || st->starts != starts)
    return;
  auto& core = *sim_.at(i).core;
  if (clients_ && core.current_phase() == membership::membership_core::phase::member && !st->left)
    route(i, command{next_command_++, entity_ids_[rng_.below(entity_ids_.size())], 0, false});
  // Open probes are sent again until acknowledged (a client retrying).
  if (!probes_open_.empty() && rng_.chance(0.1)) {
    auto k = rng_.below(probes_open_.size());
    auto it = std::next(probes_open_.begin(), static_cast<std::ptrdiff_t>(k));
    route(i, command{next_command_++, entity_ids_[*it], 0, true});
  }
  on_node(sim_, i, starts, sim_.now() + options_.command_interval,
          [this, i, starts] { client_tick(i, starts); });
}

void sharding_simulation::start_clients() {
  clients_ = true;
}

void sharding_simulation::stop_clients() {
  clients_ = false;
}

void sharding_simulation::probe_every_entity() {
  for (std::size_t e = 0; e < entity_ids_.size(); ++e)
    probes_open_.insert(e);
}

// ---- routing ---------------------------------------------------------------------

void sharding_simulation::route(node_index i, command c) {
  auto* st = state_of(i);
  if (!st)
    return;
  auto token = st->next_token++;
  st->tokens.emplace(token, c);
  region_effects fx;
  auto r = st->region->route(sim_.now(), c.entity, token, fx, c.hops);
  switch (r.what) {
    case routing::kind::local:
      st->tokens.erase(token);
      deliver_local(i, r.shard, r.epoch, c);
      break;
    case routing::kind::remote: {
      st->tokens.erase(token);
      ++c.hops;
      if (auto j = index_of(r.region))
        sim_.send_extension(i, *j, [this, j = *j, c] { route(j, c); });
      break;
    }
    case routing::kind::buffered:
      break;
    case routing::kind::refused:
      st->tokens.erase(token);
      break;
  }
  apply_region(i, fx);
}

void sharding_simulation::apply_region(node_index i, region_effects& fx) {
  auto* st = state_of(i);
  if (!st)
    return;
  auto effects = std::move(fx);
  fx.clear();
  for (auto& m : effects.messages)
    if (auto j = index_of(m.to))
      sim_.send_extension(i, *j, [this, j = *j, m] {
        auto* target = state_of(j);
        if (!target || !target->coordinator)
          return;  // no coordinator runs there (yet, or any more)
        coordinator_effects cfx;
        target->coordinator->receive(sim_.now(), m, cfx);
        apply_coordinator(j, cfx);
      });
  for (auto s : effects.stop_shards)
    stop_shard(i, s);
  for (auto [s, epoch] : effects.start_shards)
    start_shard(i, s, epoch);
  for (auto& batch : effects.deliveries)
    for (auto token : batch.tokens) {
      auto it = st->tokens.find(token);
      if (it == st->tokens.end())
        continue;
      auto c = it->second;
      st->tokens.erase(it);
      if (batch.destination.what == routing::kind::local) {
        deliver_local(i, batch.destination.shard, batch.destination.epoch, c);
      } else if (auto j = index_of(batch.destination.region)) {
        ++c.hops;
        sim_.send_extension(i, *j, [this, j = *j, c] { route(j, c); });
      }
    }
}

// ---- coordinator -----------------------------------------------------------------

void sharding_simulation::apply_singleton(node_index i, membership::singleton_effects& fx) {
  auto* st = state_of(i);
  if (!st)
    return;
  auto effects = std::move(fx);
  fx.clear();
  for (auto& m : effects.messages)
    if (auto j = index_of(m.to))
      sim_.send_extension(i, *j, [this, j = *j, m] {
        auto* target = state_of(j);
        if (!target)
          return;
        membership::singleton_effects out;
        target->singleton->receive(sim_.now(), m, out);
        apply_singleton(j, out);
      });
  if (effects.start)
    start_coordinator(i);
  if (effects.stop) {
    sim_.note(fmt::format("{} coordinator stops", i));
    st->coordinator.reset();
    ++st->coordinator_generation;
    auto delay = membership::duration{rng_.between(0, 50'000'000)};
    on_node(sim_, i, st->starts, sim_.now() + delay, [this, i] {
      if (auto* s = state_of(i)) {
        membership::singleton_effects out;
        s->singleton->instance_stopped(sim_.now(), out);
        apply_singleton(i, out);
      }
    });
  }
}

void sharding_simulation::start_coordinator(node_index i) {
  auto* st = state_of(i);
  auto& core = *sim_.at(i).core;
  ++st->coordinator_generation;
  st->coordinator = std::make_unique<coordinator_core>(core.self(), options_.coordinator);
  for (auto& e : journal_.coordinator_log())
    st->coordinator->recover(e);
  sim_.note(fmt::format("{} coordinator starts after {} events", i, journal_.coordinator_log().size()));
  st->coordinator_seq = journal_.coordinator_log().size();
  st->coordinator_queue.clear();
  st->coordinator_writing = false;
  coordinator_effects cfx;
  st->coordinator->start(sim_.now(), cfx);
  st->coordinator->members_changed(sim_.now(), cluster_snapshot_of(core.state()), cfx);
  apply_coordinator(i, cfx);
}

void sharding_simulation::apply_coordinator(node_index i, coordinator_effects& fx) {
  auto* st = state_of(i);
  if (!st)
    return;
  auto effects = std::move(fx);
  fx.clear();
  for (auto& m : effects.messages)
    if (auto j = index_of(m.to))
      sim_.send_extension(i, *j, [this, j = *j, m] {
        auto* target = state_of(j);
        if (!target)
          return;
        region_effects out;
        target->region->receive(sim_.now(), m, out);
        apply_region(j, out);
      });
  for (auto& e : effects.persist)
    st->coordinator_queue.push_back(e);
  for (auto& h : effects.hand_offs)
    ++(h.completed ? hand_offs_completed_ : hand_offs_rolled_back_);
  write_coordinator(i);
}

void sharding_simulation::write_coordinator(node_index i) {
  auto* st = state_of(i);
  if (!st || st->coordinator_writing || st->coordinator_queue.empty() || !st->coordinator)
    return;
  st->coordinator_writing = true;
  auto generation = st->coordinator_generation;
  auto delay = membership::duration{rng_.between(options_.min_write.count(), options_.max_write.count())};
  on_node(sim_, i, st->starts, sim_.now() + delay, [this, i, generation] {
    auto* s = state_of(i);
    if (!s || s->coordinator_generation != generation || !s->coordinator)
      return;
    s->coordinator_writing = false;
    auto r = journal_.append_coordinator(s->coordinator_seq + 1, s->coordinator_queue.front());
    if (r != journal_model::result::ok) {
      // Another coordinator wrote first (a stale one, or this one is): start over
      // from the journal, as the real one does after a sequence conflict.
      start_coordinator(i);
      return;
    }
    ++s->coordinator_seq;
    std::visit([&](auto& ev) {
      if constexpr (std::is_same_v<std::decay_t<decltype(ev)>, shard_allocated>)
        sim_.note(fmt::format("{} coordinator wrote #{}: shard {} -> {} @{}", i, s->coordinator_seq,
                              ev.shard, ev.region.address.port - 7000, ev.epoch));
      else
        sim_.note(fmt::format("{} coordinator wrote #{}: shard {} released", i, s->coordinator_seq,
                              ev.shard));
    }, s->coordinator_queue.front());
    s->coordinator_queue.pop_front();
    coordinator_effects cfx;
    s->coordinator->persisted(sim_.now(), cfx);
    apply_coordinator(i, cfx);
  });
}

// ---- shards and entities ---------------------------------------------------------

void sharding_simulation::start_shard(node_index i, shard_id s, std::uint64_t epoch) {
  auto* st = state_of(i);
  if (auto old = st->shards.find(s); old != st->shards.end()) {
    // Restarted under a new epoch: the old incarnations are stale (fenced).
    for (auto& e : old->second.entities)
      st->entities.erase(e);
    st->shards.erase(old);
  }
  st->shards[s] = shard_state{epoch, shard_state::phase::fencing, {}};
  auto delay = membership::duration{rng_.between(options_.min_write.count(), options_.max_write.count())};
  on_node(sim_, i, st->starts, sim_.now() + delay, [this, i, s, epoch] {
    auto* n = state_of(i);
    auto it = n->shards.find(s);
    if (it == n->shards.end() || it->second.epoch != epoch
        || it->second.at != shard_state::phase::fencing)
      return;
    region_effects fx;
    if (journal_.fence(s, epoch) == journal_model::result::ok) {
      sim_.note(fmt::format("{} hosts shard {} @{}", i, s, epoch));
      it->second.at = shard_state::phase::active;
      n->region->shard_started(sim_.now(), s, fx);
    } else {
      n->shards.erase(it);
      n->region->shard_start_failed(sim_.now(), s, fx);
    }
    apply_region(i, fx);
  });
}

void sharding_simulation::deliver_local(node_index i, shard_id s, std::uint64_t epoch, command c) {
  auto* st = state_of(i);
  auto sh = st->shards.find(s);
  if (sh == st->shards.end() || sh->second.at != shard_state::phase::active
      || sh->second.epoch != epoch) {
    route(i, c);  // the shard moved meanwhile: route it again
    return;
  }
  auto [it, fresh] = st->entities.try_emplace(c.entity);
  if (fresh) {
    // Recovery: the journal holds everything written before the fence went up.
    it->second.shard = s;
    it->second.epoch = epoch;
    it->second.next_seq = journal_.highest_seq(c.entity) + 1;
    sh->second.entities.insert(c.entity);
    check_single_writer(c.entity);
  }
  it->second.pending.push_back(c);
  persist_next(i, c.entity);
}

void sharding_simulation::persist_next(node_index i, const std::string& entity) {
  auto* st = state_of(i);
  auto it = st->entities.find(entity);
  if (it == st->entities.end() || it->second.writing || it->second.pending.empty())
    return;
  auto& sh = st->shards.at(it->second.shard);
  if (sh.at == shard_state::phase::stopping)
    return;
  it->second.writing = true;
  auto delay = membership::duration{rng_.between(options_.min_write.count(), options_.max_write.count())};
  on_node(sim_, i, st->starts, sim_.now() + delay, [this, i, entity] {
    auto* n = state_of(i);
    auto e = n->entities.find(entity);
    if (e == n->entities.end())
      return;
    auto& ent = e->second;
    ent.writing = false;
    auto c = ent.pending.front();
    auto r = journal_.append(entity, ent.next_seq, ent.shard, ent.epoch, c.id);
    if (r != journal_model::result::ok) {
      // Fenced (a newer owner exists) or a conflict: this incarnation stops; its
      // commands get errors, never acknowledgements.
      stop_entity(i, entity, r == journal_model::result::fenced ? "fenced" : "conflict");
      return;
    }
    ++ent.next_seq;
    ent.pending.pop_front();
    acked_.insert(c.id);
    if (c.probe || !probes_open_.empty()) {
      auto idx = std::find(entity_ids_.begin(), entity_ids_.end(), entity) - entity_ids_.begin();
      probes_open_.erase(static_cast<std::size_t>(idx));
    }
    auto shard = ent.shard;
    if (n->shards.at(shard).at == shard_state::phase::stopping)
      stop_shard(i, shard);  // hands the rest back once idle
    else
      persist_next(i, entity);
  });
}

void sharding_simulation::stop_entity(node_index i, const std::string& entity, const std::string&) {
  auto* st = state_of(i);
  auto it = st->entities.find(entity);
  if (it == st->entities.end())
    return;
  auto shard = it->second.shard;
  st->entities.erase(it);
  if (auto sh = st->shards.find(shard); sh != st->shards.end()) {
    sh->second.entities.erase(entity);
    maybe_shard_stopped(i, shard);
  }
}

void sharding_simulation::stop_shard(node_index i, shard_id s) {
  auto* st = state_of(i);
  auto sh = st->shards.find(s);
  if (sh == st->shards.end())
    return;
  sh->second.at = shard_state::phase::stopping;
  // Idle entities stop now; each hands the commands it still held back to the
  // region, ahead of what arrived since. Writing ones finish their write first.
  std::vector<message_token> back;
  for (auto e = sh->second.entities.begin(); e != sh->second.entities.end();) {
    auto& ent = st->entities.at(*e);
    if (ent.writing) {
      ++e;
      continue;
    }
    for (auto& c : ent.pending) {
      auto token = st->next_token++;
      st->tokens.emplace(token, c);
      back.push_back(token);
    }
    st->entities.erase(*e);
    e = sh->second.entities.erase(e);
  }
  region_effects fx;
  st->region->requeue_front(sim_.now(), s, back, fx);
  apply_region(i, fx);
  maybe_shard_stopped(i, s);
}

void sharding_simulation::maybe_shard_stopped(node_index i, shard_id s) {
  auto* st = state_of(i);
  auto sh = st->shards.find(s);
  if (sh == st->shards.end() || sh->second.at != shard_state::phase::stopping
      || !sh->second.entities.empty())
    return;
  st->shards.erase(sh);
  sim_.note(fmt::format("{} stopped shard {}", i, s));
  region_effects fx;
  st->region->shard_stopped_locally(sim_.now(), s, fx);
  apply_region(i, fx);
}

// ---- invariants ------------------------------------------------------------------

void sharding_simulation::check_single_writer(const std::string& entity) {
  std::vector<std::string> writers;
  for (node_index i = 0; i < sim_.size(); ++i) {
    auto& n = sim_.at(i);
    auto& st = nodes_[i];
    if (!st || st->starts != n.starts
        || (n.state != membership::sim::membership_simulation::node_state::running
            && n.state != membership::sim::membership_simulation::node_state::paused))
      continue;
    auto it = st->entities.find(entity);
    if (it != st->entities.end() && it->second.epoch >= journal_.fence_of(it->second.shard))
      writers.push_back(fmt::format("node {} (epoch {})", i, it->second.epoch));
  }
  if (writers.size() > 1)
    fail(fmt::format("entity {} has {} live incarnations that can persist: {}", entity,
                     writers.size(), fmt::join(writers, ", ")));
}

void sharding_simulation::periodic_checks() {
  auto now = sim_.now();
  auto& c = options_.coordinator;
  auto limit = c.begin_hand_off_timeout + c.hand_off_timeout + 4 * options_.max_write
               + std::chrono::seconds{1};
  for (node_index i = 0; i < sim_.size(); ++i) {
    auto& st = nodes_[i];
    if (!st || st->starts != sim_.at(i).starts || !st->coordinator
        || sim_.at(i).state != membership::sim::membership_simulation::node_state::running)
      continue;
    for (auto& [s, started] : st->coordinator->hand_offs_in_progress())
      if (now - started > limit)
        fail(fmt::format("the hand-off of shard {} (coordinator on node {}) is still in "
                         "progress {:.1f}s after it began",
                         s, i, seconds(now - started)));
  }
  for (auto& e : entity_ids_)
    check_single_writer(e);
}

void sharding_simulation::final_checks() {
  std::set<std::uint64_t> stored;
  for (auto& [entity, commands] : journal_.events())
    stored.insert(commands.begin(), commands.end());
  std::size_t lost = 0;
  for (auto id : acked_)
    lost += !stored.count(id);
  if (lost)
    fail(fmt::format("{} acknowledged commands are not in the journal", lost));
}

bool sharding_simulation::settled() {
  if (!sim_.all_converged_up() || !probes_open_.empty())
    return false;
  const coordinator_core* coordinator = nullptr;
  for (node_index i = 0; i < sim_.size(); ++i) {
    auto* st = state_of(i);
    if (!st)
      continue;
    if (st->coordinator) {
      if (coordinator || st->coordinator_writing || !st->coordinator_queue.empty())
        return false;
      coordinator = st->coordinator.get();
    }
    if (st->region->buffered() != 0)
      return false;
  }
  if (!coordinator || !coordinator->hand_offs_in_progress().empty())
    return false;
  for (auto& [s, a] : coordinator->allocations()) {
    for (node_index i = 0; i < sim_.size(); ++i) {
      auto* st = state_of(i);
      if (!st)
        continue;
      auto local = st->region->local_shards().find(s);
      bool here = sim_.at(i).core->self() == a.region;
      if (here != (local != st->region->local_shards().end()))
        return false;
      if (here && (local->second.epoch != a.epoch
                   || local->second.state != region_core::shard_state::active))
        return false;
      // (A region may still cache an older home for a shard it has not routed to
      // since: its next message is forwarded on, or asks the coordinator.)
    }
  }
  return true;
}

const region_core* sharding_simulation::region(node_index i) const {
  auto& st = nodes_[i];
  return st && st->starts == sim_.at(i).starts ? st->region.get() : nullptr;
}

const coordinator_core* sharding_simulation::coordinator(node_index i) const {
  auto& st = nodes_[i];
  return st && st->starts == sim_.at(i).starts ? st->coordinator.get() : nullptr;
}

std::string sharding_simulation::describe() const {
  std::string out = sim_.describe();
  for (node_index i = 0; i < sim_.size(); ++i) {
    auto& st = nodes_[i];
    if (!st)
      continue;
    std::string waiting;
    for (auto& [s, count] : st->region->buffered_shards())
      waiting += fmt::format(" {}:{}", s, count);
    std::string local;
    for (auto& [s, l] : st->region->local_shards())
      local += fmt::format(" {}@{}/{}", s, l.epoch, static_cast<int>(l.state));
    out += fmt::format("node {} region: local [{}], {} homes, buffered [{}], registered={}; "
                       "coordinator: {}\n",
                       i, local, st->region->homes().size(), waiting, st->region->registered(),
                       st->coordinator
                         ? fmt::format("{} allocations, {} hand-offs, deferred [{}], {} writes "
                                       "in flight, {} queued, writing={}, registered {}",
                                       st->coordinator->allocations().size(),
                                       st->coordinator->hand_offs_in_progress().size(),
                                       fmt::join(st->coordinator->deferred(), " "),
                                       st->coordinator->writes_in_flight(),
                                       st->coordinator_queue.size(), st->coordinator_writing,
                                       st->coordinator->registered().size())
                         : "no");
  }
  for (node_index i = 0; i < sim_.size(); ++i) {
    auto& st = nodes_[i];
    if (!st || !st->coordinator)
      continue;
    std::string a;
    for (auto& [s, al] : st->coordinator->allocations())
      a += fmt::format(" {}->{}@{}", s, al.region.address.port - 7000, al.epoch);
    out += fmt::format("coordinator on node {}: [{}]\n", i, a);
  }
  out += fmt::format("open probes: {}\n", probes_open_.size());
  return out;
}

} // namespace troupe::sharding::sim
