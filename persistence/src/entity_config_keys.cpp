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
        "stash full gets an `overloaded` error reply.");
  s.add(key_max_concurrent_recoveries, config_type::integer, std::int64_t{50},
        "Entities of this node that may recover (load snapshot + replay) at the same "
        "time; the others wait for a permit, first come first served.");
  s.add(key_recovery_page_size, config_type::integer, std::int64_t{2000},
        "Events per replay page during recovery, unless the entity's options say "
        "otherwise.");
  s.add(key_replay_read_ahead, config_type::boolean, true,
        "During recovery, read the next page while the previous one is decoded and "
        "applied (an entity then holds at most two pages); false: request each page only "
        "after the previous one was applied (at most one page, slower).");
  s.add(key_recovery_timeout, config_type::duration, duration{30s},
        "A recovery step (snapshot load, replay page, highest sequence nr) that gets no "
        "answer from the journal for this long fails the recovery.");
}

} // namespace troupe::persistence::detail
