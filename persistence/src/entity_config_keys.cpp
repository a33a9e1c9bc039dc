#include "troupe/actors/config.hpp"

#include "entity_runtime.hpp"

namespace troupe::persistence::detail {

// Keys of the event-sourced entity runtime (persistence.entity.*). Per entity type
// settings (snapshots, stash, page size) are entity_options; these are the node's
// defaults and node-wide limits.
void add_entity_config_keys(config_schema& s) {
  using namespace std::chrono_literals;
  s.add(key_stash_capacity, config_type::integer, std::int64_t{4096},
        "Commands an entity holds while it is busy (persisting, saving a snapshot, "
        "recovering), unless its entity_options say otherwise; a command that finds the "
        "stash full gets an `overloaded` error reply.",
        config_range::of(1, 1 << 20));
  s.add(key_max_concurrent_recoveries, config_type::integer, std::int64_t{50},
        "Entities of this node that may recover (load snapshot + replay) at the same "
        "time; the others wait for a permit, first come first served.",
        config_range::of(1, 100000));
  s.add(key_recovery_page_size, config_type::integer, std::int64_t{2000},
        "Events per replay page during recovery, unless the entity's options say "
        "otherwise.",
        config_range::of(1, 100000));
  s.add(key_replay_read_ahead, config_type::boolean, true,
        "During recovery, read the next page while the previous one is decoded and "
        "applied (an entity then holds at most two pages); false: request each page only "
        "after the previous one was applied (at most one page, slower).");
  s.add(key_recovery_timeout, config_type::duration, duration{30s},
        "A recovery step (snapshot load, replay page, highest sequence nr) that gets no "
        "answer from the journal for this long fails the recovery.",
        config_range::of(10ms, 1h));
  s.add(key_restart_backoff_min, config_type::duration, duration{100ms},
        "After a journal failure stopped an entity, commands are refused (naming the entity "
        "and the failure) for this long; the next command after it starts the entity again. "
        "Doubles with every further failure in a row.",
        config_range::of(1ms, 1min));
  s.add(key_restart_backoff_max, config_type::duration, duration{5s},
        "Upper bound of that backoff.", config_range::of(1ms, 1h));
}

} // namespace troupe::persistence::detail
