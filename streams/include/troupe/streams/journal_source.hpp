// Journal query sources: the events of a tag or of one persistence id as a
// stream, each element an event_record carrying its offset (by tag) and
// sequence number, so a consumer can resume from where it got to.
//
//   events_by_tag(journal, "account", after)              current: ends at the
//                                                          highest offset that
//                                                          existed at the start
//   events_by_tag(journal, "account", after, {.live = true})   keeps polling
//   events_by_persistence_id(journal, "account|a1", from [, opts])
//
// Reads run on a thread of the source's own (SQLite calls never block an actor
// thread), page by page (persistence/query.hpp); at most `buffer` events wait
// for the stream, so a slow consumer slows the reads (memory stays bounded by
// buffer + one page). A failed read fails the stream with the journal's error.
// A live source stops when cancelled (take, a kill switch, the sink ending).
#pragma once

#include "troupe/persistence/query.hpp"
#include "troupe/streams/detail/thread_fed.hpp"
#include "troupe/streams/source.hpp"

#include <memory>
#include <string>

namespace troupe::streams {

struct journal_source_options {
  bool live = false;
  std::size_t page_size = persistence::default_page_size;
  /// How long a live source waits before polling again after reaching the end.
  duration refresh_interval = std::chrono::milliseconds{100};
  /// Events read ahead of the stream.
  std::size_t buffer = 256;
};

namespace detail {

/// Reads pages from `open(position)` until it ends; live: polls again from the
/// last position. `advance(e)` is the resume position after event e.
template <class Open, class Advance>
source<persistence::event_record> journal_pages(std::uint64_t position, journal_source_options o,
                                                Open open, Advance advance) {
  using rec = persistence::event_record;
  return source<rec>{[=](island_context& ctx) -> outlet_ptr<rec> {
    auto run = [=](feed<rec>& f) {
      auto pos = position;
      for (;;) {
        auto cursor = open(pos, o.page_size);
        for (;;) {
          auto page = cursor.next_page();
          if (!page) {
            f.finish(page.error());
            return;
          }
          if (page->empty())
            break;
          pos = advance(page->back());
          if (!f.push(std::move(*page)))
            return;
        }
        if (!o.live) {
          f.finish(error{});
          return;
        }
        if (!f.pause(o.refresh_interval))
          return;
      }
    };
    return std::make_unique<thread_fed_stage<rec>>(ctx, o.buffer ? o.buffer : 1, run);
  }};
}

} // namespace detail

inline source<persistence::event_record>
events_by_tag(std::shared_ptr<persistence::journal_backend> journal, std::string tag,
              persistence::offset_type after = 0, journal_source_options opts = {}) {
  return detail::journal_pages(
    after, opts,
    [journal, tag](std::uint64_t pos, std::size_t page) {
      return persistence::current_events_by_tag(journal, tag, pos, page);
    },
    [](const persistence::event_record& e) { return e.offset; });
}

inline source<persistence::event_record>
events_by_persistence_id(std::shared_ptr<persistence::journal_backend> journal, std::string id,
                         persistence::sequence_nr from = 1, journal_source_options opts = {}) {
  return detail::journal_pages(
    from, opts,
    [journal, id](std::uint64_t pos, std::size_t page) {
      return persistence::current_events_by_persistence_id(journal, id, pos,
                                                           persistence::max_sequence_nr, page);
    },
    [](const persistence::event_record& e) { return e.seq + 1; });
}

} // namespace troupe::streams
