// The storage side of `replay ID`: walk one persistence id's events in pages and
// hand each stored record to a callback, in sequence order, with bounded memory
// however long the journal is. Tools and recovery tests build on it (e.g. decode
// each event and print the entity's state after it).
//
// Thread-safety: as the backend's read members (any thread).
#pragma once

#include "troupe/persistence/journal.hpp"

#include <functional>

namespace troupe::persistence {

using event_visitor = std::function<expected<void>(const event_record&)>;

/// Reads events of `persistence_id` with from <= seq <= to in pages of
/// `page_size` and calls `visit` for each. Stops at the first error, from the
/// journal or from `visit` (returned as is). Returns how many events were visited.
expected<std::uint64_t> for_each_event(journal_backend& journal, const std::string& persistence_id,
                                       const event_visitor& visit, sequence_nr from = 1,
                                       sequence_nr to = max_sequence_nr,
                                       std::size_t page_size = 1024);

} // namespace troupe::persistence
