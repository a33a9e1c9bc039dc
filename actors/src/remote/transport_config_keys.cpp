#include "troupe/actors/config.hpp"

namespace troupe::remote::detail {

// Keys of the node-to-node transport (transport.*). node.host / node.port are
// declared with the node's keys.
void add_transport_config_keys(config_schema&) {
}

} // namespace troupe::remote::detail
