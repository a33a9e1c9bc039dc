// docs/configuration.md documents every cluster.* and management.* key with its
// type and default.
#include "support/config_docs.hpp"

#include "troupe/membership/management_endpoint.hpp"
#include "troupe/membership/settings.hpp"

#include <doctest/doctest.h>

TEST_CASE("docs/configuration.md lists every membership and management key") {
  troupe::config_schema schema;
  troupe::membership::add_config_keys(schema);
  troupe::membership::add_management_config_keys(schema);
  troupe::test::check_documented(schema);
}
