// The journal service's spare replay pages (persistence/src/page_pool.hpp): the
// bounds persistence-storage.md gives (at most 8 pages, each at most 4 MiB of
// buffers), and what a taken page holds.
#include "page_pool.hpp"

#include <doctest/doctest.h>

using troupe::persistence::event_record;
using troupe::persistence::detail::page_pool;

namespace {

std::vector<event_record> page_of(std::size_t records, std::size_t payload_bytes) {
  std::vector<event_record> page(records);
  for (auto& e : page)
    e.payload.assign(payload_bytes, 0x42);
  return page;
}

} // namespace

TEST_CASE("page pool: keeps at most 8 pages of at most 4 MiB each, and hands them back whole") {
  page_pool pool;
  CHECK(pool.take().empty());  // nothing given yet
  for (std::size_t i = 0; i < page_pool::max_pages + 3; ++i)
    pool.give(page_of(10, 100));
  std::size_t taken = 0;
  for (auto page = pool.take(); !page.empty(); page = pool.take()) {
    ++taken;
    CHECK(page.size() == 10);
    CHECK(page.front().payload.size() == 100);
  }
  CHECK(taken == page_pool::max_pages);
  // A page whose buffers exceed the bound, and one without storage, are not kept.
  pool.give(page_of(4, page_pool::max_page_bytes / 4 + 1));
  pool.give(std::vector<event_record>{});
  CHECK(pool.take().empty());
}
