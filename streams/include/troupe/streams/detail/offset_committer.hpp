// offset_committer: saves a stream's committed offset on a thread of its own (an
// offset store may block: a SQLite write waits for its fsync, or for another
// process's lock), so the island's actor never does. Requests are coalesced: a
// later request replaces an earlier one not yet taken, so at most one save runs
// and one waits, whatever the stream's rate. A save that throws counts as failed
// (io_error naming the offset).
//
// Thread-safety: request() from any thread; `save` and `on_saved` run on the
// committer's thread, one at a time. The destructor saves what was requested and
// not yet saved (unless a save failed: nothing is saved after a failure), then
// joins the thread.
#pragma once

#include "troupe/actors/expected.hpp"
#include "troupe/persistence/journal.hpp"

#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>

namespace troupe::streams::detail {

class offset_committer {
public:
  using save_fn = std::function<expected<void>(persistence::offset_type)>;
  /// After each save: the offset and the outcome (on the committer's thread).
  using saved_fn = std::function<void(persistence::offset_type, const expected<void>&)>;

  offset_committer(save_fn save, saved_fn on_saved);
  ~offset_committer();
  offset_committer(const offset_committer&) = delete;
  offset_committer& operator=(const offset_committer&) = delete;

  /// Asks for `o` to be saved (ignored unless above every earlier request).
  void request(persistence::offset_type o);

private:
  void run();

  save_fn save_;
  saved_fn on_saved_;
  std::mutex mtx_;
  std::condition_variable cv_;
  persistence::offset_type requested_ = 0;
  persistence::offset_type taken_ = 0;
  bool stopping_ = false;
  bool failed_ = false;
  std::thread thread_;  // last: starts once the members above exist
};

} // namespace troupe::streams::detail
