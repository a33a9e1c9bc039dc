#include "troupe/actors/config.hpp"

namespace troupe::persistence::detail {

// Keys of the journal and snapshot store (persistence.journal.*).
void add_journal_config_keys(config_schema&) {
}

} // namespace troupe::persistence::detail
