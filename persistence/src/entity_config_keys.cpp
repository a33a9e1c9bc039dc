#include "troupe/actors/config.hpp"

namespace troupe::persistence::detail {

// Keys of the event-sourced entity runtime (persistence.entity.*, recovery, stash).
void add_entity_config_keys(config_schema&) {
}

} // namespace troupe::persistence::detail
