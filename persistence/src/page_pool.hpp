// Internal: spare pages of event records for the journal service's readers.
//
// A replay reads pages of up to a few thousand records, each with its own heap
// buffers (payload, manifest, writer). Destroyed by the worker that applied them,
// every buffer is a free of memory another thread allocated, which in glibc takes
// the allocating arena's lock, the lock the reader's next malloc needs too: perf of
// the `replay` benchmark showed ~40% of the replaying worker's time in malloc and
// free, and the reader (the pipeline's slower stage) contending for that lock. A
// page handed back (journal_service::recycle) waits here and the next read refills
// it in place (journal_backend::read_events_into reuses the records' capacity), so
// a steady replay allocates and frees nothing per event.
//
// Bounded: at most `max_pages` pages, each holding at most `max_page_bytes` of
// buffers; a page beyond either bound is destroyed by the caller of give(), as it
// would have been without recycling.
//
// Thread-safety: every member may be called from any thread.
#pragma once

#include "troupe/persistence/journal.hpp"

#include <cstddef>
#include <mutex>
#include <vector>

namespace troupe::persistence::detail {

class page_pool {
public:
  static constexpr std::size_t max_pages = 8;
  static constexpr std::size_t max_page_bytes = std::size_t{4} << 20;

  /// A spare page (records to be overwritten), or an empty vector.
  std::vector<event_record> take() {
    std::lock_guard<std::mutex> guard{mtx_};
    if (spare_.empty())
      return {};
    auto page = std::move(spare_.back());
    spare_.pop_back();
    return page;
  }

  /// Keeps `page` for a later take(), if it fits the bounds.
  void give(std::vector<event_record>&& page) {
    if (page.capacity() == 0 || buffer_bytes(page) > max_page_bytes)
      return;
    std::lock_guard<std::mutex> guard{mtx_};
    if (spare_.size() < max_pages)
      spare_.push_back(std::move(page));
  }

private:
  static std::size_t buffer_bytes(const std::vector<event_record>& page) {
    std::size_t n = page.capacity() * sizeof(event_record);
    for (const auto& e : page)
      n += e.payload.capacity() + e.manifest.capacity() + e.writer.capacity() +
           e.persistence_id.capacity() + e.tags.capacity() * sizeof(std::string);
    return n;
  }

  std::mutex mtx_;
  std::vector<std::vector<event_record>> spare_;
};

} // namespace troupe::persistence::detail
