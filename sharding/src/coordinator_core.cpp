#include "troupe/sharding/coordinator_core.hpp"
#include "troupe/actors/overloaded.hpp"

#include <algorithm>

namespace troupe::sharding {

namespace {

bool contains(const std::vector<node_identity>& sorted, const node_identity& n) {
  return std::binary_search(sorted.begin(), sorted.end(), n);
}

} // namespace

coordinator_core::coordinator_core(node_identity self, coordinator_settings settings,
                                   std::unique_ptr<allocation_strategy> strategy)
  : self_(std::move(self)),
    settings_(settings),
    strategy_(strategy ? std::move(strategy) : std::make_unique<least_shard_strategy>()) {
}

void coordinator_core::recover(const coordinator_event& e) {
  std::visit(overloaded{
               [&](const shard_allocated& a) {
                 homes_[a.shard] = allocation{a.region, a.epoch};
                 auto& last = last_epoch_[a.shard];
                 last = std::max(last, a.epoch);
               },
               [&](const shard_released& r) { homes_.erase(r.shard); },
             },
             e);
}

std::uint64_t coordinator_core::last_epoch(shard_id s) const {
  auto i = last_epoch_.find(s);
  return i == last_epoch_.end() ? 0 : i->second;
}

std::map<shard_id, timestamp> coordinator_core::hand_offs_in_progress() const {
  std::map<shard_id, timestamp> result;
  for (auto& [s, h] : hand_offs_)
    result.emplace(s, h.started);
  return result;
}

std::vector<shard_id> coordinator_core::deferred() const {
  std::vector<shard_id> result;
  for (auto& [s, waiters] : deferred_)
    result.push_back(s);
  return result;
}

void coordinator_core::start(timestamp now, coordinator_effects&) {
  started_ = true;
  hello_pending_ = true;  // sent with the first cluster snapshot
  next_rebalance_ = now + settings_.rebalance_interval;
  next_retry_ = now + settings_.retry_interval;
}

void coordinator_core::send(const node_identity& to, sharding_message m, coordinator_effects& out) {
  out.messages.push_back(sharding_envelope{self_, to, std::move(m)});
}

bool coordinator_core::is_gone(const node_identity& r) const {
  return !contains(cluster_.members, r);
}

shard_map coordinator_core::eligible_map() const {
  shard_map result;
  for (auto& r : regions_)
    if (contains(cluster_.eligible, r) && !shutting_down_.count(r))
      result[r];
  for (auto& [s, a] : homes_)
    if (auto i = result.find(a.region); i != result.end())
      i->second.push_back(s);
  // Allocations being written count already: shards requested together spread
  // over the regions instead of all going to the one that had the fewest.
  for (auto& w : writes_)
    if (auto* a = std::get_if<shard_allocated>(&w.event))
      if (auto i = result.find(a->region); i != result.end())
        i->second.push_back(a->shard);
  return result;
}

// ---- inputs ----------------------------------------------------------------------

void coordinator_core::members_changed(timestamp now, const cluster_snapshot& s,
                                       coordinator_effects& out) {
  cluster_ = s;
  if (hello_pending_) {
    // A new coordinator knows no region yet: every member's region registers
    // (with what it hosts) now rather than at its next periodic registration.
    hello_pending_ = false;
    for (auto& m : cluster_.members)
      send(m, coordinator_hello{}, out);
  }
  std::set<node_identity> gone;
  for (auto& [shard, a] : homes_)
    if (is_gone(a.region))
      gone.insert(a.region);
  for (auto* set : {&regions_, &proxies_, &shutting_down_})
    for (auto& r : *set)
      if (is_gone(r))
        gone.insert(r);
  for (auto& r : gone)
    region_gone(now, r, out);
  retry_deferred(now, out);
}

void coordinator_core::region_gone(timestamp now, const node_identity& r,
                                   coordinator_effects& out) {
  regions_.erase(r);
  proxies_.erase(r);
  shutting_down_.erase(r);
  // A dead region counts as having acknowledged every begin_hand_off.
  std::vector<shard_id> ready;
  for (auto& [s, h] : hand_offs_) {
    h.awaiting.erase(r);
    if (h.at == phase::begin && h.awaiting.empty())
      ready.push_back(s);
    else if (h.at == phase::stopping && h.from == r) {
      h.how = "owner gone";
      h.at = phase::releasing;
      h.releasing_since = now;
      release(s, out);
    }
  }
  for (auto s : ready)
    advance_hand_off(now, s, out);
  // Its other shards are released and allocated again at once (their entities,
  // remembered ones included, restart elsewhere); the new epoch fences the old
  // owner should it still be alive behind a partition.
  for (auto& [s, a] : homes_)
    if (a.region == r && !hand_offs_.count(s) && !releasing_.count(s)) {
      deferred_[s];  // allocate again once released
      release(s, out);
    }
}

void coordinator_core::receive(timestamp now, const sharding_envelope& e,
                               coordinator_effects& out) {
  if (e.to != self_ || !started_)
    return;
  std::visit(
    overloaded{
      [&](const register_region& r) {
        if (is_gone(e.from))
          return;
        (r.proxy_only ? proxies_ : regions_).insert(e.from);
        send(e.from, region_registered{}, out);
        reconcile(e.from, r.hosted, out);
        retry_deferred(now, out);
      },
      [&](const get_shard_home& g) { on_get_shard_home(now, e.from, g.shard, out); },
      [&](const begin_hand_off_ack& a) {
        auto i = hand_offs_.find(a.shard);
        if (i == hand_offs_.end() || i->second.at != phase::begin)
          return;
        i->second.awaiting.erase(e.from);
        if (i->second.awaiting.empty())
          advance_hand_off(now, a.shard, out);
      },
      [&](const shard_stopped& st) {
        // Late or repeated reports change nothing (Akka's P1).
        auto i = hand_offs_.find(st.shard);
        if (i == hand_offs_.end() || i->second.at != phase::stopping || i->second.from != e.from)
          return;
        i->second.how = "stopped";
        i->second.at = phase::releasing;
        i->second.releasing_since = now;
        release(st.shard, out);
      },
      [&](const graceful_shutdown&) {
        shutting_down_.insert(e.from);
        for (auto& [s, a] : homes_)
          if (a.region == e.from && !hand_offs_.count(s))
            begin_hand_off_of(now, s, out);
      },
      [](const auto&) {},  // coordinator -> region messages
    },
    e.message);
}

void coordinator_core::reconcile(const node_identity& region,
                                 const std::vector<std::pair<shard_id, std::uint64_t>>& hosted,
                                 coordinator_effects& out) {
  auto busy = [&](shard_id s) {
    return hand_offs_.count(s) || allocating_.count(s) || releasing_.count(s);
  };
  // What it should host (a shard_home it missed, or one under an older epoch).
  for (auto& [s, a] : homes_)
    if (a.region == region && !busy(s)) {
      auto claim = std::find_if(hosted.begin(), hosted.end(),
                                [&](auto& h) { return h.first == s; });
      if (claim == hosted.end() || claim->second != a.epoch)
        send(region, shard_home{s, a.region, a.epoch}, out);
    }
  // What it hosts but should not (stale after a failover or a partition): the
  // real home, or, for a shard nobody holds now, an order to stop it.
  for (auto& [s, epoch] : hosted) {
    if (busy(s))
      continue;
    auto home = homes_.find(s);
    if (home == homes_.end())
      send(region, hand_off{s, epoch}, out);
    else if (home->second.region != region)
      send(region, shard_home{s, home->second.region, home->second.epoch}, out);
  }
}

void coordinator_core::on_get_shard_home(timestamp now, const node_identity& from, shard_id s,
                                         coordinator_effects& out) {
  if (s >= settings_.number_of_shards || is_gone(from))
    return;
  auto busy = hand_offs_.count(s) || allocating_.count(s) || releasing_.count(s);
  auto home = homes_.find(s);
  if (!busy && home != homes_.end()) {
    send(from, shard_home{s, home->second.region, home->second.epoch}, out);
    return;
  }
  if (busy) {
    deferred_[s].push_back(from);
    return;
  }
  allocate(now, s, {from}, from, out);
}

void coordinator_core::allocate(timestamp, shard_id s, std::vector<node_identity> waiters,
                                const node_identity& requester, coordinator_effects& out) {
  auto regions = eligible_map();
  if (regions.empty()) {
    auto& d = deferred_[s];
    d.insert(d.end(), waiters.begin(), waiters.end());
    return;
  }
  auto region = strategy_->allocate(s, requester, regions);
  allocating_.insert(s);
  shard_allocated a;
  a.shard = s;
  a.region = region;
  a.epoch = last_epoch(s) + 1;
  write_event(coordinator_event{std::move(a)}, std::move(waiters), out);
}

void coordinator_core::release(shard_id s, coordinator_effects& out) {
  releasing_.insert(s);
  write_event(coordinator_event{shard_released{s}}, {}, out);
}

void coordinator_core::write_event(coordinator_event e, std::vector<node_identity> reply_to,
                                   coordinator_effects& out) {
  out.persist.push_back(e);
  auto& w = writes_.emplace_back();
  w.event = std::move(e);
  w.reply_to = std::move(reply_to);
}

void coordinator_core::persisted(timestamp now, coordinator_effects& out) {
  if (writes_.empty())
    return;
  auto w = std::move(writes_.front());
  writes_.pop_front();
  recover(w.event);
  if (auto* a = std::get_if<shard_allocated>(&w.event)) {
    allocating_.erase(a->shard);
    // The host first (it starts the shard), then every region, so that caches
    // that still name an old home are corrected (and whoever asked meanwhile).
    std::set<node_identity> tell{w.reply_to.begin(), w.reply_to.end()};
    tell.insert(regions_.begin(), regions_.end());
    tell.insert(proxies_.begin(), proxies_.end());
    if (auto d = deferred_.find(a->shard); d != deferred_.end()) {
      tell.insert(d->second.begin(), d->second.end());
      deferred_.erase(d);
    }
    tell.erase(a->region);
    send(a->region, shard_home{a->shard, a->region, a->epoch}, out);
    for (auto& r : tell)
      send(r, shard_home{a->shard, a->region, a->epoch}, out);
    return;
  }
  auto s = std::get<shard_released>(w.event).shard;
  releasing_.erase(s);
  if (hand_offs_.count(s))
    finish_hand_off(now, s, true, out);
  if (auto d = deferred_.find(s); d != deferred_.end()) {
    auto waiters = std::move(d->second);
    deferred_.erase(d);
    allocate(now, s, waiters, waiters.empty() ? self_ : waiters.front(), out);
  }
}

void coordinator_core::tick(timestamp now, coordinator_effects& out) {
  if (!started_)
    return;
  std::vector<shard_id> rolled_back;
  for (auto& [s, h] : hand_offs_) {
    if (h.at == phase::begin && now >= h.phase_deadline) {
      rolled_back.push_back(s);
    } else if (h.at == phase::stopping && now >= h.phase_deadline) {
      // The owner did not report in time. Releasing is safe anyway: the next
      // host fences the journal with a higher epoch before it starts.
      h.how = "stop timed out";
      h.at = phase::releasing;
      h.releasing_since = now;
      release(s, out);
    }
  }
  for (auto s : rolled_back) {
    for (auto* set : {&regions_, &proxies_})
      for (auto& r : *set)
        send(r, hand_off_cancelled{s}, out);
    hand_offs_[s].how = "begin timed out";
    finish_hand_off(now, s, false, out);
  }
  if (now >= next_retry_) {
    next_retry_ = now + settings_.retry_interval;
    // Homes on gone regions that a rolled-back hand-off left behind.
    std::set<node_identity> gone;
    for (auto& [s, a] : homes_)
      if (is_gone(a.region))
        gone.insert(a.region);
    for (auto& r : gone)
      region_gone(now, r, out);
    // Graceful shutdowns whose hand-offs were rolled back try again.
    for (auto& r : shutting_down_)
      for (auto& [s, a] : homes_)
        if (a.region == r && !hand_offs_.count(s) && !releasing_.count(s))
          begin_hand_off_of(now, s, out);
    retry_deferred(now, out);
  }
  maybe_rebalance(now, out);
}

// ---- hand-off --------------------------------------------------------------------

void coordinator_core::begin_hand_off_of(timestamp now, shard_id s, coordinator_effects& out) {
  auto home = homes_.find(s);
  if (home == homes_.end() || hand_offs_.count(s) || allocating_.count(s) || releasing_.count(s))
    return;
  if (settings_.allocate_released_at_once)
    deferred_[s];  // allocated again once released (shard_released is written)
  hand_off_state h;
  h.from = home->second.region;
  h.started = now;
  h.phase_deadline = now + settings_.begin_hand_off_timeout;
  for (auto* set : {&regions_, &proxies_})
    h.awaiting.insert(set->begin(), set->end());
  auto awaiting = h.awaiting;
  hand_offs_.emplace(s, std::move(h));
  for (auto& r : awaiting)
    send(r, begin_hand_off{s}, out);
  if (awaiting.empty())
    advance_hand_off(now, s, out);
}

void coordinator_core::advance_hand_off(timestamp now, shard_id s, coordinator_effects& out) {
  auto& h = hand_offs_.at(s);
  if (is_gone(h.from)) {
    h.how = "owner gone";
    h.at = phase::releasing;
    h.releasing_since = now;
    release(s, out);
    return;
  }
  h.at = phase::stopping;
  h.stopping_since = now;
  h.phase_deadline = now + settings_.hand_off_timeout;
  send(h.from, hand_off{s, homes_.at(s).epoch}, out);
}

void coordinator_core::finish_hand_off(timestamp now, shard_id s, bool completed,
                                       coordinator_effects& out) {
  auto i = hand_offs_.find(s);
  if (i == hand_offs_.end())
    return;
  auto& h = i->second;
  hand_off_report r{s, h.from, completed, now - h.started, h.how};
  auto reached = [](timestamp t) { return t >= timestamp{0}; };
  auto stopping = reached(h.stopping_since);
  auto releasing = reached(h.releasing_since);
  r.begin = (stopping ? h.stopping_since : releasing ? h.releasing_since : now) - h.started;
  if (stopping)
    r.stopping = (releasing ? h.releasing_since : now) - h.stopping_since;
  if (releasing)
    r.releasing = now - h.releasing_since;
  out.hand_offs.push_back(std::move(r));
  hand_offs_.erase(i);
}

void coordinator_core::retry_deferred(timestamp now, coordinator_effects& out) {
  std::vector<shard_id> ready;
  for (auto& [s, waiters] : deferred_)
    if (!hand_offs_.count(s) && !allocating_.count(s) && !releasing_.count(s))
      ready.push_back(s);
  for (auto s : ready) {
    auto waiters = std::move(deferred_[s]);
    deferred_.erase(s);
    if (auto home = homes_.find(s); home != homes_.end()) {
      for (auto& r : waiters)
        send(r, shard_home{s, home->second.region, home->second.epoch}, out);
      continue;
    }
    std::erase_if(waiters, [&](const node_identity& r) { return is_gone(r); });
    allocate(now, s, waiters, waiters.empty() ? self_ : waiters.front(), out);
  }
}

void coordinator_core::maybe_rebalance(timestamp now, coordinator_effects& out) {
  if (now < next_rebalance_)
    return;
  next_rebalance_ = now + settings_.rebalance_interval;
  // One round at a time, and only while nothing else moves.
  if (!cluster_.stable || !hand_offs_.empty() || !writes_.empty() || !shutting_down_.empty())
    return;
  for (auto s : strategy_->rebalance(eligible_map()))
    begin_hand_off_of(now, s, out);
}

} // namespace troupe::sharding
