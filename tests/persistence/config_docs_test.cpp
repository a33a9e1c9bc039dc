// The persistence layer's config keys: documented with type, default and range in
// docs/configuration.md, and each one refused outside its range.
#include "support/config_docs.hpp"

#include "troupe/persistence/journal_service.hpp"

namespace {

troupe::config_schema persistence_schema() {
  troupe::config_schema schema;
  troupe::persistence::add_config_keys(schema);
  return schema;
}

} // namespace

TEST_CASE("docs/configuration.md documents every persistence key with its type and default") {
  troupe::test::check_documented(persistence_schema());
}

TEST_CASE("config ranges: every persistence key, in range, on the boundary and beyond") {
  troupe::test::check_range_table(
    persistence_schema(),
    {
      {"persistence.journal.backend", "memory", {"sqlite", "postgres"}, {"postgresql", "SQLite", ""}},
      {"persistence.journal.postgres.uri", "postgresql://u@h/db", {""}, {}},
      {"persistence.journal.postgres.pool-size", "8", {"1", "64"}, {"0", "65", "-1"}},
      {"persistence.journal.postgres.connect-timeout", "5s", {"1s", "10m"}, {"999ms", "11m", "-1s"}},
      {"persistence.journal.postgres.lock-timeout", "2s", {"0", "1h"}, {"61m", "-1s"}},
      {"persistence.journal.postgres.statement-timeout", "30s", {"0", "1h"}, {"61m", "-1s"}},
      {"persistence.journal.postgres.idle-in-transaction-timeout", "30s", {"0", "1h"},
       {"61m", "-1s"}},
      {"persistence.journal.path", "j.db", {""}, {}},
      {"persistence.journal.create-if-missing", "true", {"false"}, {"sometimes"}},
      {"persistence.journal.synchronous", "normal", {"full", "off"}, {"sometimes", "FULL"}},
      {"persistence.journal.busy-timeout", "1s", {"0", "1h"}, {"61m", "-1s", "99999999999h"}},
      {"persistence.journal.max-page-count", "1000", {"0", "4294967294"}, {"-7", "4294967295"}},
      {"persistence.journal.max-batch-events", "100", {"1", "1048576"}, {"0", "-1", "1048577"}},
      {"persistence.journal.reader-threads", "4", {"1", "64"}, {"0", "65", "-2"}},
      {"persistence.journal.max-queued-writes", "1000", {"1", "16777216"}, {"0", "-1", "16777217"}},
      {"persistence.entity.stash-capacity", "10", {"1", "1048576"}, {"-1", "0", "1048577"}},
      {"persistence.entity.max-concurrent-recoveries", "5", {"1", "100000"}, {"-3", "0", "100001"}},
      {"persistence.entity.recovery-page-size", "100", {"1", "100000"}, {"0", "100001"}},
      {"persistence.entity.replay-read-ahead", "false", {"true"}, {"ahead"}},
      {"persistence.entity.recovery-timeout", "5s", {"10ms", "1h"}, {"0", "9ms", "2h", "99999999999h"}},
      {"persistence.entity.restart-backoff-min", "50ms", {"1ms", "1m"}, {"0", "2m"}},
      {"persistence.entity.restart-backoff-max", "1s", {"1ms", "1h"}, {"0", "2h"}},
    });
}
