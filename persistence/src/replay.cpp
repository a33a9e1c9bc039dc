#include "troupe/persistence/replay.hpp"

#include <algorithm>

namespace troupe::persistence {

expected<std::uint64_t> for_each_event(journal_backend& journal, const std::string& persistence_id,
                                       const event_visitor& visit, sequence_nr from, sequence_nr to,
                                       std::size_t page_size) {
  page_size = std::max<std::size_t>(page_size, 1);
  std::uint64_t visited = 0;
  auto next = std::max<sequence_nr>(from, 1);
  while (next <= to) {
    auto page = journal.read_events(persistence_id, next, to, page_size);
    if (!page)
      return std::move(page).error();
    for (auto& e : *page) {
      if (auto ok = visit(e); !ok)
        return std::move(ok).error();
      ++visited;
    }
    if (page->size() < page_size)
      break;
    next = page->back().seq + 1;
  }
  return visited;
}

} // namespace troupe::persistence
