#include "troupe/persistence/query.hpp"

#include <algorithm>

namespace troupe::persistence {

// -- event_cursor ------------------------------------------------------------------------

event_cursor::event_cursor(std::shared_ptr<journal_backend> journal, kind k, std::string key,
                           std::uint64_t position, std::uint64_t last, std::size_t page_size)
  : journal_(std::move(journal)),
    kind_(k),
    key_(std::move(key)),
    position_(position),
    last_(last),
    page_size_(std::max<std::size_t>(page_size, 1)) {
}

expected<std::vector<event_record>> event_cursor::next_page() {
  if (done_)
    return std::vector<event_record>{};
  if (!end_) {
    // "Current" means: up to what exists now. Later events belong to a later query.
    auto end = kind_ == kind::by_tag ? journal_->highest_offset()
                                     : journal_->highest_sequence_nr(key_);
    if (!end)
      return std::move(end).error();
    end_ = std::min(*end, last_);
  }
  if (position_ >= *end_) {
    done_ = true;
    return std::vector<event_record>{};
  }
  auto page = kind_ == kind::by_tag
                ? journal_->events_by_tag(key_, position_, page_size_)
                : journal_->read_events(key_, position_ + 1, *end_, page_size_);
  if (!page)
    return page;
  if (kind_ == kind::by_tag)
    std::erase_if(*page, [&](const event_record& e) { return e.offset > *end_; });
  if (page->empty()) {
    done_ = true;
    return page;
  }
  position_ = kind_ == kind::by_tag ? page->back().offset : page->back().seq;
  return page;
}

event_cursor current_events_by_persistence_id(std::shared_ptr<journal_backend> journal,
                                              std::string id, sequence_nr from, sequence_nr to,
                                              std::size_t page_size) {
  return event_cursor{std::move(journal), event_cursor::kind::by_persistence_id, std::move(id),
                      from == 0 ? 0 : from - 1, to, page_size};
}

event_cursor current_events_by_tag(std::shared_ptr<journal_backend> journal, std::string tag,
                                   offset_type after, std::size_t page_size) {
  return event_cursor{std::move(journal), event_cursor::kind::by_tag, std::move(tag), after,
                      ~std::uint64_t{0}, page_size};
}

// -- id_cursor ---------------------------------------------------------------------------

id_cursor::id_cursor(std::shared_ptr<journal_backend> journal, std::size_t page_size)
  : journal_(std::move(journal)), page_size_(std::max<std::size_t>(page_size, 1)) {
}

expected<std::vector<std::string>> id_cursor::next_page() {
  if (done_)
    return std::vector<std::string>{};
  auto page = journal_->persistence_ids(after_, page_size_);
  if (!page)
    return page;
  if (page->empty())
    done_ = true;
  else
    after_ = page->back();
  return page;
}

id_cursor current_persistence_ids(std::shared_ptr<journal_backend> journal,
                                  std::size_t page_size) {
  return id_cursor{std::move(journal), page_size};
}

// -- live --------------------------------------------------------------------------------

live_subscription::live_subscription(fetch_fn fetch, position_fn position_of,
                                     std::uint64_t position, batch_handler on_batch,
                                     query_error_handler on_error, live_options opts)
  : fetch_(std::move(fetch)),
    position_of_(std::move(position_of)),
    on_batch_(std::move(on_batch)),
    on_error_(std::move(on_error)),
    opts_(opts),
    position_(position) {
  opts_.page_size = std::max<std::size_t>(opts_.page_size, 1);
  thread_ = std::thread{[this] { run(); }};
}

namespace {
/// The subscription whose handler the current thread is running, if any.
thread_local const live_subscription* current_subscription = nullptr;
} // namespace

live_subscription::~live_subscription() {
  stop();
  if (current_subscription == this)
    thread_.detach();  // destroyed from its own handler: the loop ends by itself
}

void live_subscription::stop() {
  {
    std::lock_guard<std::mutex> guard{mtx_};
    stopping_ = true;
  }
  cv_.notify_all();
  if (current_subscription == this)
    return;  // from the handler: the loop ends when it returns
  std::lock_guard<std::mutex> guard{join_mtx_};
  if (thread_.joinable())
    thread_.join();
  finished_ = true;
}

void live_subscription::run() {
  current_subscription = this;
  auto stopping = [this] {
    std::lock_guard<std::mutex> guard{mtx_};
    return stopping_;
  };
  while (!stopping()) {
    auto page = fetch_(position_.load(), opts_.page_size);
    if (!page) {
      if (on_error_)
        on_error_(page.error());
      break;
    }
    auto full = page->size() >= opts_.page_size;
    if (!page->empty()) {
      position_ = position_of_(page->back());
      on_batch_(std::move(*page));
    }
    if (full)
      continue;  // more may be waiting: no pause
    std::unique_lock<std::mutex> lock{mtx_};
    cv_.wait_for(lock, opts_.refresh_interval, [this] { return stopping_; });
  }
  finished_ = true;
}

std::unique_ptr<live_subscription> live_events_by_tag(std::shared_ptr<journal_backend> journal,
                                                      std::string tag, offset_type after,
                                                      batch_handler on_batch, live_options opts,
                                                      query_error_handler on_error) {
  auto fetch = [journal = std::move(journal), tag = std::move(tag)](std::uint64_t position,
                                                                    std::size_t max) {
    return journal->events_by_tag(tag, position, max);
  };
  return std::make_unique<live_subscription>(
    std::move(fetch), [](const event_record& e) { return e.offset; }, after, std::move(on_batch),
    std::move(on_error), opts);
}

std::unique_ptr<live_subscription>
live_events_by_persistence_id(std::shared_ptr<journal_backend> journal, std::string id,
                              sequence_nr from, batch_handler on_batch, live_options opts,
                              query_error_handler on_error) {
  auto fetch = [journal = std::move(journal), id = std::move(id)](std::uint64_t position,
                                                                  std::size_t max) {
    return journal->read_events(id, position + 1, max_sequence_nr, max);
  };
  return std::make_unique<live_subscription>(
    std::move(fetch), [](const event_record& e) { return e.seq; }, from == 0 ? 0 : from - 1,
    std::move(on_batch), std::move(on_error), opts);
}

} // namespace troupe::persistence
