// Internal: what a shard region keeps per entity, and the lists it threads
// through those records.
//
// A region may run a million idle entities, so its bookkeeping per entity is one
// hash-map node (the id and its entity_slot) and nothing else allocated: the
// least-recently-used order and each shard's members are intrusive lists through
// the slots (a slot's address is stable while it is in the map), and the commands
// a slot waits on are kept only while there are some.
//
// Thread-safety: none; the region actor's state, used on its own thread.
#pragma once

#include "direct_route.hpp"
#include "region_messages.hpp"

#include "troupe/actors/detail/lazy_deque.hpp"
#include "troupe/actors/expected.hpp"
#include "troupe/sharding/region_core.hpp"

#include <caf/actor.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace troupe::sharding::detail {

using slot_clock = std::chrono::steady_clock;
using reply_fn = std::function<void(expected<reply_box>)>;

/// A message for an entity while the region holds or routes it.
struct pending {
  std::string id;
  command_ptr cmd;
  slot_clock::time_point deadline;
  std::uint32_t hops = 0;
  reply_fn done;  ///< null: a one-way command
  /// From a local entity_ref: its route cache and the command's number there.
  std::shared_ptr<direct_cache> cache;
  std::uint64_t seq = 0;
};

struct entity_slot;

/// A slot's place in one intrusive list.
struct slot_link {
  entity_slot* prev = nullptr;
  entity_slot* next = nullptr;
};

/// A running (or stopping) entity of the region.
struct entity_slot {
  const std::string* id = nullptr;  ///< the region's map key
  caf::actor actor;
  shard_id shard = 0;
  bool stopping = false;
  bool asked_by_ref = false;
  /// Sent to the entity and not answered yet, by token (tokens grow, so this is
  /// the order the entity received them in). Allocated while there are some.
  std::unique_ptr<std::map<message_token, pending>> asked;
  slot_clock::time_point last_used;
  troupe::detail::lazy_deque<message_token> waiting;  ///< for the next incarnation
  slot_link by_use;    ///< in the region's least-recently-used order
  slot_link in_shard;  ///< among its shard's entities
  /// Refs' direct route to this incarnation: made on the second ask from a ref
  /// (an entity asked once, as most are in a bulk load, costs no route).
  direct_route_ptr direct;

  bool has_asked() const { return asked && !asked->empty(); }
  std::map<message_token, pending>& asked_map() {
    if (!asked)
      asked = std::make_unique<std::map<message_token, pending>>();
    return *asked;
  }
};

/// An intrusive doubly linked list of slots through their `Link` member. It owns
/// nothing: a slot is unlinked before it is destroyed.
template <slot_link entity_slot::*Link>
class slot_list {
public:
  entity_slot* front() const noexcept { return head_; }
  entity_slot* back() const noexcept { return tail_; }
  std::size_t size() const noexcept { return size_; }
  bool empty() const noexcept { return size_ == 0; }

  static entity_slot* next(const entity_slot* s) noexcept { return (s->*Link).next; }
  static entity_slot* prev(const entity_slot* s) noexcept { return (s->*Link).prev; }

  void push_front(entity_slot* s) noexcept {
    auto& l = s->*Link;
    l.prev = nullptr;
    l.next = head_;
    if (head_)
      (head_->*Link).prev = s;
    else
      tail_ = s;
    head_ = s;
    ++size_;
  }

  void erase(entity_slot* s) noexcept {
    auto& l = s->*Link;
    (l.prev ? (l.prev->*Link).next : head_) = l.next;
    (l.next ? (l.next->*Link).prev : tail_) = l.prev;
    l = slot_link{};
    --size_;
  }

  void move_to_front(entity_slot* s) noexcept {
    if (s == head_)
      return;
    erase(s);
    push_front(s);
  }

  /// The slots in list order, as a vector (for loops that unlink as they go).
  std::vector<entity_slot*> snapshot() const {
    std::vector<entity_slot*> all;
    all.reserve(size_);
    for (auto* s = head_; s != nullptr; s = next(s))
      all.push_back(s);
    return all;
  }

private:
  entity_slot* head_ = nullptr;
  entity_slot* tail_ = nullptr;
  std::size_t size_ = 0;
};

using lru_list = slot_list<&entity_slot::by_use>;
using shard_members = slot_list<&entity_slot::in_shard>;

/// When the entity was last used, through the region or its direct route.
inline slot_clock::time_point used_at(const entity_slot& slot) {
  return slot.direct ? std::max(slot.last_used, slot.direct->last_used()) : slot.last_used;
}

/// Closes the incarnation's direct route: from here on refs go through the region.
inline void close_route(entity_slot& slot) {
  if (slot.direct) {
    slot.direct->close();
    slot.direct.reset();
  }
}

} // namespace troupe::sharding::detail
