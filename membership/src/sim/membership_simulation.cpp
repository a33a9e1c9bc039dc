#include "troupe/membership/sim/membership_simulation.hpp"

#include <fmt/format.h>

#include <algorithm>

namespace troupe::membership::sim {

namespace {

constexpr std::uint16_t base_port = 7000;

double seconds(timestamp t) {
  return std::chrono::duration<double>(t).count();
}

} // namespace

membership_simulation::membership_simulation(simulation_options options)
  : options_(std::move(options)),
    rng_(options_.seed),
    net_(rng_, options_.faults),
    checker_(options_.invariants) {
  nodes_.resize(options_.nodes);
  for (std::size_t i = 0; i < nodes_.size(); ++i)
    nodes_[i].address = node_address{"127.0.0.1", static_cast<std::uint16_t>(base_port + i)};
  options_.settings.seed_nodes.clear();
  for (std::size_t i = 0; i < std::min(options_.seed_nodes, nodes_.size()); ++i)
    options_.settings.seed_nodes.push_back(nodes_[i].address);
  // Any seed may come first: with real ports the first seed (the one that
  // bootstraps) is as often as not above other nodes' addresses, which decides
  // the leader among members that are all still joining.
  auto& seeds = options_.settings.seed_nodes;
  for (auto i = seeds.size(); i > 1; --i)
    std::swap(seeds[i - 1], seeds[rng_.below(i)]);
}

void membership_simulation::mix(std::uint64_t x) noexcept {
  hash_ ^= x;
  hash_ *= 0x100000001b3ULL;
}

void membership_simulation::trace(std::string line) {
  for (auto c : line)
    mix(static_cast<unsigned char>(c));
  if (options_.trace_lines == 0)
    return;
  trace_.push_back(fmt::format("{:9.3f} {}", seconds(now_), line));
  if (trace_.size() > options_.trace_lines)
    trace_.pop_front();
}

std::string membership_simulation::recent_trace() const {
  std::string result;
  for (auto& line : trace_)
    result += line + "\n";
  return result;
}

std::optional<node_index> membership_simulation::index_of(const node_address& a) const {
  if (a.host != "127.0.0.1" || a.port < base_port || a.port >= base_port + nodes_.size())
    return std::nullopt;
  return a.port - base_port;
}

// ---- faults and commands ---------------------------------------------------------

void membership_simulation::start(node_index i) {
  auto& n = nodes_[i];
  if (n.state == node_state::running || n.state == node_state::paused)
    return;
  ++n.starts;
  // Incarnations are unique per start and deterministic per seed.
  node_identity id{n.address, (rng_.next() | 1) ^ (std::uint64_t{n.starts} << 56)};
  auto settings = options_.settings;
  if (options_.configure_node)
    options_.configure_node(i, settings);
  n.core = std::make_unique<membership_core>(id, std::move(settings), rng_.next());
  n.state = node_state::running;
  n.stop_reason.clear();
  n.held.clear();
  // Nodes tick out of step with each other, as real timers do.
  n.next_tick = now_ + duration{rng_.below(
                  static_cast<std::uint64_t>(n.core->tick_interval().count()) + 1)};
  trace(fmt::format("start {} as {}", i, id.to_string()));
  effects fx;
  n.core->start(now_, fx);
  apply(i, fx);
}

void membership_simulation::start_all() {
  for (node_index i = 0; i < nodes_.size(); ++i)
    start(i);
}

void membership_simulation::crash(node_index i) {
  auto& n = nodes_[i];
  if (n.state != node_state::running && n.state != node_state::paused)
    return;
  auto dead = n.core->self();
  stop(i, "crashed");
  // kill -9 closes the process's sockets: peers usually see the connection drop.
  if (rng_.chance(options_.lost_signal_on_crash))
    for (node_index j = 0; j < nodes_.size(); ++j)
      if (j != i && !net_.is_blocked(i, j))
        at(now_ + duration{rng_.between(1'000'000, 50'000'000)}, [this, j, dead] {
          if (running(j)) {
            effects fx;
            nodes_[j].core->connection_lost(now_, dead, fx);
            apply(j, fx);
          }
        });
}

void membership_simulation::pause(node_index i, duration d) {
  auto& n = nodes_[i];
  if (n.state != node_state::running)
    return;
  n.state = node_state::paused;
  n.paused_until = now_ + d;
  trace(fmt::format("pause {} for {:.3f}s", i, seconds(d)));
}

void membership_simulation::signal_lost_after(node_index from, node_index to, duration d) {
  // The transport's own heartbeat timeout: a connection over a dead link is
  // declared lost after transport_failure_timeout.
  at(now_ + d, [this, from, to] {
    if (!net_.is_blocked(from, to) && !net_.is_blocked(to, from))
      return;
    if (running(to) && nodes_[from].core) {
      effects fx;
      nodes_[to].core->connection_lost(now_, nodes_[from].core->self(), fx);
      apply(to, fx);
    }
  });
}

void membership_simulation::partition(const std::vector<node_index>& a,
                                      const std::vector<node_index>& b) {
  net_.partition(a, b);
  trace(fmt::format("partition {} | {}", fmt::join(a, ","), fmt::join(b, ",")));
  for (auto x : a)
    for (auto y : b) {
      signal_lost_after(x, y, options_.transport_failure_timeout);
      signal_lost_after(y, x, options_.transport_failure_timeout);
    }
}

void membership_simulation::block(node_index from, node_index to) {
  net_.block(from, to);
  trace(fmt::format("block {} -> {}", from, to));
  signal_lost_after(from, to, options_.transport_failure_timeout);
  signal_lost_after(to, from, options_.transport_failure_timeout);
}

void membership_simulation::heal() {
  net_.heal();
  trace("heal");
  for (node_index i = 0; i < nodes_.size(); ++i)
    if (nodes_[i].state == node_state::stopped)
      schedule_restart(i);
}

void membership_simulation::leave(node_index i) {
  if (!running(i))
    return;
  effects fx;
  auto r = nodes_[i].core->leave(now_, nodes_[i].address, fx);
  trace(fmt::format("leave {}: {}", i, r ? "ok" : r.error().to_string()));
  apply(i, fx);
}

void membership_simulation::down(node_index by, node_index target) {
  if (!running(by))
    return;
  effects fx;
  auto r = nodes_[by].core->down(now_, nodes_[target].address, fx);
  trace(fmt::format("down {} by {}: {}", target, by, r ? "ok" : r.error().to_string()));
  apply(by, fx);
}

void membership_simulation::at(timestamp t, std::function<void()> run) {
  actions_.push(action{t, next_action_order_++, std::move(run)});
}

void membership_simulation::send_extension(node_index from, node_index to,
                                           std::function<void()> deliver) {
  auto& f = net_.faults();
  if (net_.is_blocked(from, to) || rng_.chance(f.drop) || !nodes_[to].core)
    return;
  auto delay = duration{rng_.between(f.min_delay.count(), f.max_delay.count())};
  deliver_extension(now_ + delay, from, to, nodes_[to].starts, std::move(deliver));
}

void membership_simulation::deliver_extension(timestamp t, node_index from, node_index to,
                                              std::uint32_t starts, std::function<void()> deliver) {
  at(t, [this, from, to, starts, deliver = std::move(deliver)]() mutable {
    auto& n = nodes_[to];
    if (net_.is_blocked(from, to) || n.starts != starts)
      return;
    if (n.state == node_state::paused)  // it waits in the socket buffer
      deliver_extension(n.paused_until + duration{1}, from, to, starts, std::move(deliver));
    else if (n.state == node_state::running)
      deliver();
  });
}

void membership_simulation::stop(node_index i, std::string reason) {
  auto& n = nodes_[i];
  n.state = node_state::stopped;
  n.stop_reason = reason;
  n.held.clear();
  trace(fmt::format("stop {} ({})", i, reason));
  schedule_restart(i);
}

void membership_simulation::schedule_restart(node_index i) {
  if (!options_.restart_stopped_after)
    return;
  at(now_ + *options_.restart_stopped_after, [this, i] {
    // Restart once the network is whole: a first seed restarted inside a partition
    // would bootstrap a second cluster (docs/membership.md, "Seed nodes").
    if (nodes_[i].state == node_state::stopped && !net_.any_blocked())
      start(i);
  });
}

// ---- running ---------------------------------------------------------------------

void membership_simulation::apply(node_index i, effects& fx) {
  auto& n = nodes_[i];
  for (auto& e : fx.messages) {
    auto to = index_of(e.to.address);
    if (!to)
      continue;
    mix(*to);
    mix(e.message.index());
    if (options_.trace_messages)
      trace(fmt::format("{} -> {} {}", i, e.to.to_string(), message_name(e.message)));
    net_.send(now_, i, *to, std::move(e));
  }
  for (auto& d : fx.decisions)
    trace(fmt::format("{} decides ({}): down {}", i, d.reason, d.downed.size()));
  bool stop_now = false;
  std::string reason;
  for (auto& ev : fx.events) {
    trace(fmt::format("{} event {}", i, to_string(ev)));
    using k = cluster_event::kind;
    if ((ev.what == k::self_downed || ev.what == k::self_removed
         || (ev.what == k::join_refused && ev.subject.node == n.core->self()))) {
      stop_now = true;
      reason = std::string{to_string(ev.what)};
    }
  }
  if (on_effects)
    on_effects(i, fx);
  if (n.core && (n.state == node_state::running))
    checker_.after_step(now_, *n.core);
  fx.clear();
  if (stop_now)
    stop(i, reason);
}

void membership_simulation::deliver(node_index to, const envelope& e) {
  auto& n = nodes_[to];
  if (n.state == node_state::paused) {
    n.held.push_back(e);
    return;
  }
  if (n.state != node_state::running)
    return;
  if (options_.trace_messages)
    trace(fmt::format("{} <- {} {}", to, e.from.to_string(), message_name(e.message)));
  n.core->receive(now_, e, scratch_);
  apply(to, scratch_);
}

void membership_simulation::tick(node_index i) {
  auto& n = nodes_[i];
  n.core->tick(now_, scratch_);
  n.next_tick = now_ + n.core->tick_interval();
  apply(i, scratch_);
}

bool membership_simulation::step(timestamp limit) {
  // The earliest of: an action, a delivery, a resume or tick. Ties go in that
  // order (and by node index), which keeps runs reproducible.
  std::optional<timestamp> best;
  int kind = -1;
  node_index who = 0;
  auto consider = [&](timestamp t, int k, node_index i) {
    if (t <= limit && (!best || t < *best)) {
      best = t;
      kind = k;
      who = i;
    }
  };
  if (!actions_.empty())
    consider(actions_.top().at, 0, 0);
  if (net_.has_pending())
    consider(net_.next_time(), 1, 0);
  for (node_index i = 0; i < nodes_.size(); ++i) {
    auto& n = nodes_[i];
    if (n.state == node_state::paused)
      consider(n.paused_until, 2, i);
    else if (n.state == node_state::running)
      consider(n.next_tick, 2, i);
  }
  if (kind < 0)
    return false;
  now_ = std::max(now_, *best);
  ++steps_;
  mix(static_cast<std::uint64_t>(now_.count()));
  switch (kind) {
    case 0: {
      auto run = actions_.top().run;
      actions_.pop();
      run();
      break;
    }
    case 1: {
      network<envelope>::delivery d;
      if (net_.pop(d))
        deliver(d.to, d.message);
      break;
    }
    case 2: {
      auto& n = nodes_[who];
      if (n.state == node_state::paused) {
        n.state = node_state::running;
        trace(fmt::format("resume {}", who));
        auto held = std::move(n.held);
        n.held.clear();
        for (auto& e : held)
          if (n.state == node_state::running)
            deliver(who, e);
        n.next_tick = now_;
      } else {
        tick(who);
      }
      break;
    }
  }
  // Cross-node checks every 100 ms of virtual time are plenty for a 15 s grace.
  static constexpr duration period = std::chrono::milliseconds{100};
  if (now_.count() / period.count() != last_periodic_.count() / period.count()) {
    last_periodic_ = now_;
    std::vector<const membership_core*> running_cores;
    for (auto& n : nodes_)
      if (n.state == node_state::running)
        running_cores.push_back(n.core.get());
    checker_.periodic(now_, running_cores);
  }
  return true;
}

void membership_simulation::run_until(timestamp t) {
  while (step(t)) {
  }
  now_ = std::max(now_, t);
}

bool membership_simulation::run_until(const std::function<bool()>& done, timestamp deadline) {
  while (!done()) {
    if (!step(deadline)) {
      now_ = std::max(now_, deadline);
      return done();
    }
  }
  return true;
}

// ---- observation -----------------------------------------------------------------

bool membership_simulation::all_converged_up() const {
  const gossip* reference = nullptr;
  std::vector<node_identity> running_ids;
  for (auto& n : nodes_) {
    if (n.state != node_state::running)
      continue;
    if (n.core->current_phase() != membership_core::phase::member)
      return false;
    running_ids.push_back(n.core->self());
    auto& g = n.core->state();
    if (!g.converged())
      return false;
    if (!reference)
      reference = &g;
    else if (g.members != reference->members)
      return false;
  }
  if (!reference)
    return running_ids.empty();
  std::sort(running_ids.begin(), running_ids.end());
  if (reference->members.size() != running_ids.size())
    return false;
  for (std::size_t k = 0; k < running_ids.size(); ++k)
    if (reference->members[k].node != running_ids[k]
        || reference->members[k].status != member_status::up)
      return false;
  return true;
}

std::string membership_simulation::describe() const {
  std::string out;
  for (node_index i = 0; i < nodes_.size(); ++i) {
    auto& n = nodes_[i];
    static constexpr std::string_view states[] = {"not started", "running", "paused", "stopped"};
    out += fmt::format("node {} {}{}", i, states[static_cast<int>(n.state)],
                       n.stop_reason.empty() ? "" : " (" + n.stop_reason + ")");
    if (n.core) {
      auto& g = n.core->state();
      out += fmt::format(" {} phase={} converged={} leader={}\n", n.core->self().to_string(),
                         to_string(n.core->current_phase()), g.converged(),
                         n.core->leader() ? n.core->leader()->to_string() : "none");
      for (auto& m : g.members)
        out += fmt::format("    {} {} up#{}{}{}\n", m.node.to_string(), to_string(m.status),
                           m.up_number, g.is_reachable(n.core->self(), m.node) ? "" : " unreachable",
                           g.has_seen(m.node) ? " seen" : "");
    } else {
      out += "\n";
    }
  }
  return out;
}

} // namespace troupe::membership::sim
