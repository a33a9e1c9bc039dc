// Deduplicating commands that come from streams: an entity remembers, in its
// state, the highest sequence number it applied per producer, and answers a
// command it has applied already without persisting it again.
//
//   struct add   { std::int64_t amount; origin from; using reply = done; };   // command
//   struct added { std::int64_t amount; origin from; };                       // event
//   struct state { std::int64_t total = 0; producer_offsets applied; };
//
//   static effect on_command(const state& s, const add& c) {
//     if (s.applied.seen(c.from))
//       return effect::reply(c, done{});          // a duplicate: acknowledged, nothing stored
//     return effect::persist(added{c.amount, c.from});
//   }
//   static state on_event(state s, const added& e) {
//     s.total += e.amount;
//     s.applied.record(e.from);                  // the mark moves with the effect, atomically
//     return s;
//   }
//
// The event carries the origin, so the check and the effect commit together: a
// crash either stored both or neither, and recovery rebuilds the marks.
//
// Precondition: one mark per producer is enough only when the entity receives
// each producer's commands in increasing sequence order, where only a duplicate
// may come after a later command was applied. The streams' entity sink and flow
// guarantee that per entity (one command per entity at a time; a retry keeps its
// element's place), a restarted stream replays its elements in the same order from
// an offset at or below any it had not yet acknowledged, and at most one stream
// runs per producer at a time (docs/streams.md, "Delivery guarantees"). Sequence
// numbers may have gaps (journal offsets by tag do).
//
// Memory: one entry per producer, for the entity's lifetime; name producers after
// stable things (a stream, a source, a projection), never after a run or a process.
//
// Thread-safety: plain values, used on the entity's thread.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>

namespace troupe::persistence {

/// Where a command comes from: its producer (a stable name) and its sequence
/// number there (a stream element's source offset). An empty producer means "not
/// deduplicated": such a command is always applied.
struct origin {
  std::string producer;
  std::uint64_t seq = 0;

  bool empty() const noexcept { return producer.empty(); }
  friend bool operator==(const origin&, const origin&) = default;
};

/// The highest sequence number applied per producer (see above).
class producer_offsets {
public:
  using marks_type = std::map<std::string, std::uint64_t, std::less<>>;

  /// Whether `o` was applied already: its sequence number is at or below its
  /// producer's mark. Never for an empty origin.
  bool seen(const origin& o) const {
    if (o.empty())
      return false;
    auto i = marks_.find(o.producer);
    return i != marks_.end() && o.seq <= i->second;
  }

  /// Records `o` as applied (from the event handler): its producer's mark becomes
  /// o.seq unless it is already higher. Does nothing for an empty origin.
  void record(const origin& o) {
    if (o.empty())
      return;
    auto [i, inserted] = marks_.try_emplace(o.producer, o.seq);
    if (!inserted && o.seq > i->second)
      i->second = o.seq;
  }

  /// The producer's mark, if it ever recorded one.
  std::optional<std::uint64_t> highest(std::string_view producer) const {
    auto i = marks_.find(producer);
    return i == marks_.end() ? std::nullopt : std::optional{i->second};
  }

  const marks_type& marks() const noexcept { return marks_; }
  std::size_t size() const noexcept { return marks_.size(); }

  friend bool operator==(const producer_offsets&, const producer_offsets&) = default;

  /// JSON: an object {producer: mark} (for snapshots of the state).
  friend void to_json(nlohmann::json& j, const producer_offsets& p) { j = p.marks_; }
  friend void from_json(const nlohmann::json& j, producer_offsets& p) {
    p.marks_ = j.get<marks_type>();
  }

private:
  marks_type marks_;
};

/// JSON: {"producer": ..., "seq": ...}; an empty origin as null (events and
/// commands without one stay small).
inline void to_json(nlohmann::json& j, const origin& o) {
  if (o.empty())
    j = nullptr;
  else
    j = nlohmann::json{{"producer", o.producer}, {"seq", o.seq}};
}
inline void from_json(const nlohmann::json& j, origin& o) {
  if (j.is_null()) {
    o = origin{};
    return;
  }
  j.at("producer").get_to(o.producer);
  j.at("seq").get_to(o.seq);
}

} // namespace troupe::persistence
