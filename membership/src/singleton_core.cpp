#include "troupe/membership/singleton_core.hpp"

#include <algorithm>

namespace troupe::membership {

namespace {

/// The oldest member that is up (not leaving), optionally with `role`.
std::optional<node_identity> oldest_up(const gossip& g, const std::string& role) {
  const member* result = nullptr;
  for (auto& m : g.members)
    if (m.status == member_status::up && (role.empty() || m.has_role(role))
        && (!result || m.is_older_than(*result)))
      result = &m;
  return result ? std::optional{result->node} : std::nullopt;
}

void add_unique(std::vector<node_identity>& xs, const node_identity& n) {
  if (std::find(xs.begin(), xs.end(), n) == xs.end())
    xs.push_back(n);
}

} // namespace

std::string_view to_string(singleton_core::phase p) noexcept {
  switch (p) {
    case singleton_core::phase::younger: return "younger";
    case singleton_core::phase::becoming_oldest: return "becoming-oldest";
    case singleton_core::phase::oldest: return "oldest";
    case singleton_core::phase::stopping: return "stopping";
    case singleton_core::phase::handed_over: return "handed-over";
  }
  return "?";
}

singleton_core::singleton_core(node_identity self, std::string name, std::string role,
                               duration retry_interval)
  : self_(std::move(self)),
    name_(std::move(name)),
    role_(std::move(role)),
    retry_interval_(retry_interval) {
}

void singleton_core::send(const node_identity& to, singleton_message m, singleton_effects& out) {
  out.messages.push_back(singleton_envelope{self_, to, name_, std::move(m)});
}

void singleton_core::update(timestamp now, const gossip& state, singleton_effects& out) {
  auto me = state.find(self_);
  self_gone_ = !me || me->status == member_status::exiting || me->status == member_status::down;
  target_ = self_gone_ ? std::nullopt : oldest_up(state, role_);
  // Older members that were removed cannot run an instance any more.
  std::erase_if(waiting_for_, [&](const node_identity& n) { return !state.find(n); });
  switch (phase_) {
    case phase::younger:
      if (target_ == self_) {
        // Every older member still in the cluster may run (or start) an instance.
        waiting_for_.clear();
        for (auto& m : state.members)
          if (m.node != self_ && (role_.empty() || m.has_role(role_)) && m.up_number != 0
              && m.is_older_than(*me))
            waiting_for_.push_back(m.node);
        phase_ = phase::becoming_oldest;
        ask_older(now, out);
      }
      break;
    case phase::becoming_oldest:
      if (self_gone_)
        phase_ = phase::handed_over;
      else
        start_if_clear(out);
      break;
    case phase::oldest:
      if (target_ != self_) {
        if (target_ && !self_gone_)
          send(*target_, take_over_from_me{}, out);  // it asks, then we stop
        else
          begin_stop(out);  // nobody to hand over to, or this node is going
      }
      break;
    case phase::stopping:
    case phase::handed_over:
      break;
  }
}

void singleton_core::ask_older(timestamp now, singleton_effects& out) {
  next_retry_ = now + retry_interval_;
  for (auto& n : waiting_for_)
    send(n, hand_over_to_me{}, out);
  start_if_clear(out);
}

void singleton_core::start_if_clear(singleton_effects& out) {
  if (phase_ == phase::becoming_oldest && waiting_for_.empty() && target_ == self_) {
    phase_ = phase::oldest;
    out.start = true;
  }
}

void singleton_core::begin_stop(singleton_effects& out) {
  phase_ = phase::stopping;
  out.stop = true;
}

void singleton_core::receive(timestamp, const singleton_envelope& m, singleton_effects& out) {
  if (m.to != self_ || m.singleton != name_)
    return;
  if (std::holds_alternative<hand_over_to_me>(m.message)) {
    switch (phase_) {
      case phase::oldest:
        add_unique(report_done_to_, m.from);
        begin_stop(out);
        break;
      case phase::stopping:
        add_unique(report_done_to_, m.from);
        break;
      case phase::younger:
      case phase::becoming_oldest:
      case phase::handed_over:
        // Nothing runs here. A node asked by a younger one never starts later:
        // the asker saw it leave the top spot for good.
        phase_ = phase::handed_over;
        send(m.from, hand_over_done{}, out);
        break;
    }
  } else if (std::holds_alternative<hand_over_done>(m.message)) {
    std::erase(waiting_for_, m.from);
    start_if_clear(out);
  } else if (std::holds_alternative<take_over_from_me>(m.message)) {
    if (phase_ == phase::becoming_oldest && std::count(waiting_for_.begin(), waiting_for_.end(), m.from))
      send(m.from, hand_over_to_me{}, out);
  }
}

void singleton_core::instance_stopped(timestamp, singleton_effects& out) {
  if (phase_ != phase::stopping && phase_ != phase::oldest)
    return;
  phase_ = phase::handed_over;
  for (auto& n : report_done_to_)
    send(n, hand_over_done{}, out);
  report_done_to_.clear();
}

void singleton_core::tick(timestamp now, singleton_effects& out) {
  if (phase_ == phase::becoming_oldest && now >= next_retry_)
    ask_older(now, out);
}

} // namespace troupe::membership
