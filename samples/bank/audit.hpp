// Audits the bank from its journal alone: the balance of every account as the fold
// of its stored events, and how often each transfer's legs were stored. The demo
// and the cluster tests check money against it: the total never changes, every
// acknowledged transfer is stored exactly once (one withdrawal, one deposit), and
// no leg is stored twice.
#pragma once

#include "account.hpp"

#include "troupe/persistence/journal.hpp"

#include <fmt/format.h>

#include <cstdint>
#include <limits>
#include <map>
#include <string>
#include <vector>

namespace bank {

struct leg_counts {
  int withdrawn = 0;
  int deposited = 0;
};

struct audit_result {
  std::int64_t total = 0;                        ///< the sum of every balance
  std::map<std::string, std::int64_t> balances;  ///< by account id
  std::map<std::string, leg_counts> transfers;   ///< by transfer id
  std::vector<std::string> problems;             ///< undecodable events
};

/// Reads accounts `ids` from `journal`, decoding with `codec`.
inline troupe::expected<audit_result> audit(troupe::persistence::journal_backend& journal,
                                            const troupe::codec_registry& codec,
                                            const std::vector<std::string>& ids) {
  audit_result out;
  for (auto& id : ids) {
    auto pid = troupe::persistence::persistence_id_of(std::string{account::entity_type}, id);
    auto events = journal.read_events(pid, 1, troupe::persistence::max_sequence_nr,
                                      std::numeric_limits<std::size_t>::max());
    if (!events)
      return std::move(events).error();
    std::int64_t balance = 0;
    for (auto& e : *events) {
      if (e.manifest == "bank.deposited") {
        auto d = codec.decode<deposited>(e.manifest, e.version, e.payload);
        if (!d) {
          out.problems.push_back(fmt::format("{} seq {}: {}", pid, e.seq, d.error().message()));
          continue;
        }
        balance += d->amount;
        if (!d->transfer.empty())
          ++out.transfers[d->transfer].deposited;
      } else if (e.manifest == "bank.withdrawn") {
        auto w = codec.decode<withdrawn>(e.manifest, e.version, e.payload);
        if (!w) {
          out.problems.push_back(fmt::format("{} seq {}: {}", pid, e.seq, w.error().message()));
          continue;
        }
        balance -= w->amount;
        if (!w->transfer.empty())
          ++out.transfers[w->transfer].withdrawn;
      }
    }
    out.balances[id] = balance;
    out.total += balance;
  }
  return out;
}

} // namespace bank
