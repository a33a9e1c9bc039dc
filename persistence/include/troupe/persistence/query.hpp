// Journal queries: events of one persistence id, events by tag from an offset, and
// the persistence ids — "current" (pull pages until the end that existed when the
// query started) and "live" (keeps polling for new events until stopped).
//
//   auto q = current_events_by_tag(journal, "account", last_offset);
//   while (auto page = q.next_page()) {          // expected<vector<event_record>>
//     if (page->empty()) break;                  // the end
//     for (auto& e : *page) handle(e);
//   }
//
//   auto sub = live_events_by_tag(journal, "account", last_offset,
//                                 [&](std::vector<event_record>&& batch) { ... });
//   ...
//   sub->stop();   // no callback runs after stop() returns
//
// Memory is bounded by the page size: a cursor holds one page; a live
// subscription fetches the next page only after the handler returned (the
// handler's speed is the backpressure).
//
// Offsets in events_by_tag never skip an event that becomes visible later: both
// backends assign offsets at commit, under a lock that serializes writers, so a
// reader that saw offset N has seen every offset below N
// (docs/persistence-storage.md, "Why tag queries cannot skip events").
//
// A live subscription runs on its own thread and reads the backend directly (not
// through the journal_service's reader threads). Its handler must not call
// stop() of a different subscription that is waiting for this one; calling the
// subscription's own stop() from its handler is allowed.
//
// Thread-safety: a cursor is used by one thread at a time; a subscription's
// members may be called from any thread.
#pragma once

#include "troupe/actors/config.hpp"
#include "troupe/persistence/journal.hpp"

#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace troupe::persistence {

inline constexpr std::size_t default_page_size = 256;

/// Pulls pages of events. An empty page means the query reached its end.
class event_cursor {
public:
  /// The next page (at most page_size events), empty at the end. After an error
  /// the cursor may be asked again (it retries from the same position).
  expected<std::vector<event_record>> next_page();
  bool done() const noexcept { return done_; }

  enum class kind { by_persistence_id, by_tag };
  event_cursor(std::shared_ptr<journal_backend> journal, kind k, std::string key,
               std::uint64_t position, std::uint64_t last, std::size_t page_size);

private:
  std::shared_ptr<journal_backend> journal_;
  kind kind_;
  std::string key_;
  std::uint64_t position_;             ///< last seq / offset delivered
  std::optional<std::uint64_t> end_;   ///< resolved on the first page
  std::uint64_t last_;                 ///< caller's upper bound
  std::size_t page_size_;
  bool done_ = false;
};

/// Events of `id` with from <= seq <= to that exist when the first page is read.
event_cursor current_events_by_persistence_id(std::shared_ptr<journal_backend> journal,
                                              std::string id, sequence_nr from = 1,
                                              sequence_nr to = max_sequence_nr,
                                              std::size_t page_size = default_page_size);

/// Events tagged `tag` with offset > after, up to the highest offset when the
/// first page is read, ascending by offset.
event_cursor current_events_by_tag(std::shared_ptr<journal_backend> journal, std::string tag,
                                   offset_type after = 0,
                                   std::size_t page_size = default_page_size);

/// Pulls pages of persistence ids (ascending). An empty page means the end.
class id_cursor {
public:
  id_cursor(std::shared_ptr<journal_backend> journal, std::size_t page_size);
  expected<std::vector<std::string>> next_page();
  bool done() const noexcept { return done_; }

private:
  std::shared_ptr<journal_backend> journal_;
  std::string after_;
  std::size_t page_size_;
  bool done_ = false;
};

id_cursor current_persistence_ids(std::shared_ptr<journal_backend> journal,
                                  std::size_t page_size = default_page_size);

// -- live --------------------------------------------------------------------------------

struct live_options {
  std::size_t page_size = default_page_size;
  /// How long to wait before polling again after reaching the end.
  duration refresh_interval = std::chrono::milliseconds{100};
};

using batch_handler = std::function<void(std::vector<event_record>&& batch)>;
using query_error_handler = std::function<void(const error&)>;

class live_subscription {
public:
  using fetch_fn = std::function<expected<std::vector<event_record>>(std::uint64_t position,
                                                                     std::size_t max)>;
  using position_fn = std::function<std::uint64_t(const event_record&)>;

  /// Use live_events_by_tag / live_events_by_persistence_id.
  live_subscription(fetch_fn fetch, position_fn position_of, std::uint64_t position,
                    batch_handler on_batch, query_error_handler on_error, live_options opts);
  ~live_subscription();  ///< stops
  live_subscription(const live_subscription&) = delete;
  live_subscription& operator=(const live_subscription&) = delete;

  /// Stops polling; after it returns no handler runs (unless called from the
  /// handler itself, which then finishes). Idempotent.
  void stop();
  /// False after stop() or after a failed read.
  bool running() const noexcept { return !finished_.load(); }
  /// The offset (by tag) or seq (by id) of the last event delivered; resume here.
  std::uint64_t position() const noexcept { return position_.load(); }

private:
  void run();

  fetch_fn fetch_;
  position_fn position_of_;
  batch_handler on_batch_;
  query_error_handler on_error_;
  live_options opts_;
  std::atomic<std::uint64_t> position_;
  std::atomic<bool> finished_{false};
  std::mutex mtx_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::mutex join_mtx_;  ///< concurrent stop() calls join once
  std::thread thread_;
};

/// Delivers events tagged `tag` with offset > after, in offset order, then keeps
/// polling for new ones. A failed read calls on_error once and ends the
/// subscription (resume from position()).
std::unique_ptr<live_subscription> live_events_by_tag(std::shared_ptr<journal_backend> journal,
                                                      std::string tag, offset_type after,
                                                      batch_handler on_batch,
                                                      live_options opts = {},
                                                      query_error_handler on_error = {});

/// Delivers events of `id` with seq >= from, in seq order, then keeps polling.
std::unique_ptr<live_subscription>
live_events_by_persistence_id(std::shared_ptr<journal_backend> journal, std::string id,
                              sequence_nr from, batch_handler on_batch, live_options opts = {},
                              query_error_handler on_error = {});

} // namespace troupe::persistence
