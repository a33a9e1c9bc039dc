#include "support/config_docs.hpp"

#include "troupe/persistence/journal_service.hpp"

TEST_CASE("docs/configuration.md documents every persistence key with its type and default") {
  troupe::config_schema schema;
  troupe::persistence::add_config_keys(schema);
  troupe::test::check_documented(schema);
}
