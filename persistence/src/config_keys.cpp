#include "troupe/persistence/journal_service.hpp"

namespace troupe::persistence {

namespace detail {
void add_journal_config_keys(config_schema& schema);  // journal_config_keys.cpp
void add_entity_config_keys(config_schema& schema);   // entity_config_keys.cpp
} // namespace detail

void add_config_keys(config_schema& schema) {
  detail::add_journal_config_keys(schema);
  detail::add_entity_config_keys(schema);
}

} // namespace troupe::persistence
