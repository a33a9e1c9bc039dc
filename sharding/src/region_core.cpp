#include "troupe/sharding/region_core.hpp"
#include "troupe/actors/overloaded.hpp"

#include <fmt/format.h>

#include <algorithm>

namespace troupe::sharding {

region_core::region_core(node_identity self, region_settings settings)
  : self_(std::move(self)), settings_(settings) {
}

std::map<shard_id, std::size_t> region_core::buffered_shards() const {
  std::map<shard_id, std::size_t> result;
  for (auto& [s, q] : buffers_)
    result[s] = q.size();
  return result;
}

void region_core::send_to_coordinator(sharding_message m, region_effects& out) {
  if (coordinator_)
    out.messages.push_back(sharding_envelope{self_, *coordinator_, std::move(m)});
}

void region_core::request_home(timestamp now, shard_id s, region_effects& out, bool force) {
  auto i = requested_.find(s);
  if (!force && i != requested_.end() && now - i->second < settings_.retry_interval)
    return;
  requested_[s] = now;
  send_to_coordinator(get_shard_home{s}, out);
}

std::optional<routing> region_core::destination(shard_id s) const {
  if (handing_off_.count(s))
    return std::nullopt;
  auto home = homes_.find(s);
  if (home == homes_.end())
    return std::nullopt;
  if (home->second.region != self_)
    return routing{routing::kind::remote, s, home->second.epoch, home->second.region, {}};
  auto local = local_.find(s);
  if (local == local_.end() || local->second.state != shard_state::active
      || local->second.epoch != home->second.epoch)
    return std::nullopt;
  return routing{routing::kind::local, s, local->second.epoch, self_, {}};
}

routing region_core::hold(timestamp now, shard_id s, message_token t, region_effects& out) {
  if (buffered_ >= settings_.buffer_size) {
    ++refused_;
    return routing{routing::kind::refused, s, 0, {},
                   fmt::format("the region's buffer of {} messages is full (shard {} has no known "
                               "home yet)",
                               settings_.buffer_size, s)};
  }
  buffers_[s].push_back(t);
  ++buffered_;
  // Also during a hand-off: the coordinator answers once it is over (it may be
  // over already, with the message saying so lost).
  if (!homes_.count(s))
    request_home(now, s, out);
  return routing{routing::kind::buffered, s, 0, {}, {}};
}

routing region_core::route(timestamp now, std::string_view entity_id, message_token token,
                           region_effects& out, int hops) {
  auto s = shard_of(entity_id, settings_.number_of_shards);
  // Messages already waiting for this shard go first: keep the order.
  if (buffers_.count(s))
    return hold(now, s, token, out);
  if (hops > settings_.max_hops) {
    // Regions disagree about the home: ask the coordinator again.
    if (auto home = homes_.find(s); home != homes_.end() && home->second.region != self_)
      homes_.erase(home);
  }
  if (auto d = destination(s))
    return *d;
  return hold(now, s, token, out);
}

void region_core::flush(shard_id s, region_effects& out) {
  auto b = buffers_.find(s);
  if (b == buffers_.end())
    return;
  auto d = destination(s);
  if (!d)
    return;
  delivery_batch batch{*d, {b->second.begin(), b->second.end()}};
  buffered_ -= b->second.size();
  buffers_.erase(b);
  out.deliveries.push_back(std::move(batch));
}

void region_core::coordinator_moved(timestamp now, std::optional<node_identity> coordinator,
                                    region_effects& out) {
  if (coordinator == coordinator_)
    return;
  coordinator_ = std::move(coordinator);
  registered_ = false;
  next_register_ = now;
  requested_.clear();
  tick(now, out);
}

void region_core::members_changed(timestamp now, const cluster_snapshot& s, region_effects& out) {
  // A home on a node that is down or gone is no home: hold and ask again.
  std::vector<shard_id> lost;
  for (auto& [shard, a] : homes_)
    if (a.region != self_ && !std::binary_search(s.members.begin(), s.members.end(), a.region))
      lost.push_back(shard);
  for (auto shard : lost) {
    homes_.erase(shard);
    if (buffers_.count(shard))
      request_home(now, shard, out, true);
  }
}

void region_core::receive(timestamp now, const sharding_envelope& e, region_effects& out) {
  if (e.to != self_ || (coordinator_ && e.from != *coordinator_))
    return;  // only the current coordinator steers the region
  std::visit(
    overloaded{
      [&](const region_registered&) { registered_ = true; },
      [&](const coordinator_hello&) {
        registered_ = false;
        next_register_ = now;
        tick(now, out);
      },
      [&](const shard_home& h) {
        // Epochs only grow: an older home is a late or duplicated message, and so
        // is this node's own home under the epoch it is handing off.
        auto& seen = epochs_seen_[h.shard];
        auto local = local_.find(h.shard);
        if (h.epoch < seen
            || (local != local_.end() && local->second.state == shard_state::stopping
                && h.epoch <= local->second.epoch))
          return;
        seen = h.epoch;
        requested_.erase(h.shard);
        handing_off_.erase(h.shard);
        homes_[h.shard] = allocation{h.region, h.epoch};
        if (h.region == self_) {
          if (local == local_.end()) {
            local_[h.shard] = local_shard{h.epoch, shard_state::starting};
            out.start_shards.emplace_back(h.shard, h.epoch);
          } else if (local->second.epoch != h.epoch && local->second.state != shard_state::stopping) {
            // Hosted under an older epoch (a coordinator failover in between): the
            // shard restarts under the new one, fenced anew.
            local->second = local_shard{h.epoch, shard_state::starting};
            out.stop_shards.push_back(h.shard);
            out.start_shards.emplace_back(h.shard, h.epoch);
          }
        } else if (local != local_.end() && local->second.state != shard_state::stopping) {
          // The coordinator placed it elsewhere: this copy is stale (and fenced).
          local->second.state = shard_state::stopping;
          out.stop_shards.push_back(h.shard);
        }
        flush(h.shard, out);
      },
      [&](const begin_hand_off& b) {
        homes_.erase(b.shard);
        handing_off_.insert(b.shard);
        send_to_coordinator(begin_hand_off_ack{b.shard}, out);
      },
      [&](const hand_off& h) {
        auto local = local_.find(h.shard);
        if (local == local_.end()) {
          send_to_coordinator(shard_stopped{h.shard, h.epoch}, out);
        } else if (local->second.state != shard_state::stopping) {
          local->second.state = shard_state::stopping;
          out.stop_shards.push_back(h.shard);
        }
      },
      [&](const hand_off_cancelled& c) {
        handing_off_.erase(c.shard);
        if (buffers_.count(c.shard))
          request_home(now, c.shard, out, true);
      },
      [](const auto&) {},  // region -> coordinator messages
    },
    e.message);
}

void region_core::shard_started(timestamp, shard_id s, region_effects& out) {
  auto local = local_.find(s);
  if (local == local_.end() || local->second.state != shard_state::starting)
    return;
  local->second.state = shard_state::active;
  flush(s, out);
}

void region_core::shard_start_failed(timestamp now, shard_id s, region_effects& out) {
  // The fence could not be written (journal down): try again after a while.
  auto local = local_.find(s);
  if (local == local_.end() || local->second.state != shard_state::starting)
    return;
  local_.erase(local);
  homes_.erase(s);
  requested_[s] = now;  // the retry in tick() asks again
  (void) out;
}

void region_core::shard_stopped_locally(timestamp, shard_id s, region_effects& out) {
  auto local = local_.find(s);
  if (local == local_.end() || local->second.state != shard_state::stopping)
    return;
  auto epoch = local->second.epoch;
  local_.erase(local);
  if (auto home = homes_.find(s); home != homes_.end() && home->second.region == self_)
    homes_.erase(home);  // not here any more
  send_to_coordinator(shard_stopped{s, epoch}, out);
  flush(s, out);
}

void region_core::requeue_front(timestamp now, shard_id s,
                                const std::vector<message_token>& tokens, region_effects& out) {
  if (tokens.empty())
    return;
  auto& queue = buffers_[s];
  queue.insert(queue.begin(), tokens.begin(), tokens.end());
  buffered_ += tokens.size();
  if (!homes_.count(s))
    request_home(now, s, out);
  flush(s, out);
}

void region_core::tick(timestamp now, region_effects& out) {
  if (coordinator_ && ((!registered_ && now >= next_register_) || now >= next_reregister_)) {
    next_register_ = now + settings_.retry_interval;
    next_reregister_ = now + settings_.register_interval;
    register_region r{settings_.proxy_only, {}};
    for (auto& [s, l] : local_)
      if (l.state != shard_state::stopping)
        r.hosted.emplace_back(s, l.epoch);
    send_to_coordinator(std::move(r), out);
  }
  if (shutting_down_ && !local_.empty() && now >= next_register_) {
    next_register_ = now + settings_.retry_interval;
    send_to_coordinator(sharding::graceful_shutdown{}, out);
  }
  for (auto& [s, queue] : buffers_)
    if (!homes_.count(s))
      request_home(now, s, out);
  // Homes on this node that failed to start: ask again.
  for (auto& [s, at] : requested_)
    if (!buffers_.count(s) && !homes_.count(s) && now - at >= settings_.retry_interval)
      request_home(now, s, out);
}

void region_core::graceful_shutdown(timestamp now, region_effects& out) {
  shutting_down_ = true;
  next_register_ = now + settings_.retry_interval;
  send_to_coordinator(sharding::graceful_shutdown{}, out);
}

} // namespace troupe::sharding
