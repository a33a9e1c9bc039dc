// The journal_service implementation: one writer thread doing group commit, a pool
// of reader threads. See journal_service.hpp for the contract.
//
// The write path is the hot one. A submitter moves its atomic_write and callback
// into two parallel vectors under one mutex (the payload bytes are never copied).
// The writer swaps both vectors out in O(1), hands the writes to the backend as one
// span (one transaction), and hands the batch with its results to the completion
// runner (completion_runner.hpp), which runs each callback with its own result and
// frees the batch while the writer starts the next one.
#include "troupe/persistence/journal_service.hpp"

#include "completion_runner.hpp"
#include "page_pool.hpp"

#include "troupe/actors/detail/scheduler_hints.hpp"
#include "troupe/actors/log.hpp"
#include "troupe/actors/metrics.hpp"

#include <fmt/core.h>

#include <chrono>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <exception>
#include <mutex>
#include <thread>

#include <sched.h>

namespace troupe::persistence {

namespace {

using steady = std::chrono::steady_clock;

constexpr std::string_view component = "persistence/journal";

/// How long the writer polls for the next write after a batch before it sleeps.
/// With one command at a time the next write follows the acknowledgement within
/// tens of microseconds; waking a sleeping thread can cost more than that on a VM
/// (troupe/actors/detail/scheduler_hints.hpp). Only after a batch, so an idle
/// journal costs one such poll after its last write.
constexpr std::chrono::microseconds writer_poll_time{150};

/// A batch of fewer writes than this is acknowledged on the writer thread when no
/// earlier completion is pending (no thread hop for one command at a time).
constexpr std::size_t inline_completions_below = 16;

/// Work for a reader thread or the writer's side queue. Called exactly once:
/// with `cancelled` true when the service stops before running it.
using task = std::function<void(bool cancelled)>;

error not_run(std::string_view what) {
  return error{errc::shutting_down,
               fmt::format("journal: the journal service is stopping; {} was not run", what)};
}

/// A completed batch on its way back to be freed by a submitting thread.
struct spent_batch {
  std::vector<atomic_write> writes;
  std::vector<callback<void>> dones;
};

/// At most this many completed batches wait for the next write() to free them.
constexpr std::size_t max_spent_batches = 8;

struct service_metrics {
  explicit service_metrics(metrics_registry& m)
    : batch_events(m.histogram("troupe_persistence_journal_batch_events",
                               histogram_metric::exponential_bounds(1, 2, 14), {},
                               "Events per group commit (one backend write call).")),
      write_seconds(m.histogram("troupe_persistence_journal_write_seconds",
                                histogram_metric::exponential_bounds(50e-6, 2, 16), {},
                                "Duration of one group commit.")),
      events_written(m.counter("troupe_persistence_journal_events_written_total", {},
                               "Events stored durably.")),
      writes_ok(m.counter("troupe_persistence_journal_writes_total", {{"result", "ok"}},
                          "Atomic writes by result.")),
      writes_conflict(
        m.counter("troupe_persistence_journal_writes_total", {{"result", "sequence_conflict"}})),
      writes_rejected(
        m.counter("troupe_persistence_journal_writes_total", {{"result", "rejected"}})),
      writes_failed(m.counter("troupe_persistence_journal_writes_total", {{"result", "failure"}})),
      writes_fenced(m.counter("troupe_persistence_journal_writes_total", {{"result", "fenced"}})),
      writes_overloaded(
        m.counter("troupe_persistence_journal_writes_total", {{"result", "overloaded"}})),
      read_failures(m.counter("troupe_persistence_journal_read_failures_total", {},
                              "Reads, queries and snapshot operations that failed.")) {
  }

  histogram_metric& batch_events;
  histogram_metric& write_seconds;
  counter_metric& events_written;
  counter_metric& writes_ok;
  counter_metric& writes_conflict;
  counter_metric& writes_rejected;
  counter_metric& writes_failed;
  counter_metric& writes_fenced;
  counter_metric& writes_overloaded;  ///< refused at submission: the queue was full
  counter_metric& read_failures;
};

class service_impl final : public journal_service {
public:
  service_impl(std::shared_ptr<journal_backend> journal,
               std::shared_ptr<snapshot_backend> snapshots, options opts, logger& log,
               metrics_registry& metrics)
    : journal_(std::move(journal)),
      snapshots_(std::move(snapshots)),
      max_batch_events_(std::max<std::size_t>(opts.max_batch_events, 1)),
      max_queued_writes_(std::max<std::size_t>(opts.max_queued_writes, 1)),
      log_(log),
      metrics_(metrics),
      completions_(inline_completions_below) {
    writer_ = std::thread{[this] { writer_loop(); }};
    auto n = std::max<std::size_t>(opts.reader_threads, 1);
    for (std::size_t i = 0; i < n; ++i)
      readers_.emplace_back([this] { reader_loop(); });
  }

  ~service_impl() override {
    stop();
  }

  void stop() override {
    std::lock_guard<std::mutex> once{stop_mtx_};
    if (stopped_)
      return;
    // Queued reads fail first (they may wait behind a long write batch otherwise),
    // then the writer drains every queued write and writer op, then the readers
    // finish what they are running.
    std::deque<task> doomed;
    {
      std::lock_guard<std::mutex> guard{rmtx_};
      readers_stopping_ = true;
      doomed.swap(reads_);
      for (auto* r : idle_readers_)
        r->cv.notify_one();
      idle_readers_.clear();
    }
    for (auto& t : doomed)
      t(true);
    {
      std::lock_guard<std::mutex> guard{wmtx_};
      stopping_ = true;
    }
    wcv_.notify_all();
    writer_.join();
    completions_.stop();  // after the writer: it runs what the writer handed it
    for (auto& t : readers_)
      t.join();
    // The last completed batches go now, not with the service: their callbacks
    // may hold actor handles, and the node stops the service while its actor
    // system still runs.
    std::vector<spent_batch> spent;
    {
      std::lock_guard<std::mutex> guard{wmtx_};
      spent.swap(spent_);
    }
    stopped_ = true;
  }

  // -- journal -------------------------------------------------------------------------

  void write(atomic_write w, callback<void> done) override {
    std::size_t queued = 0;
    std::vector<spent_batch> spent;  // freed here, after the lock, by its allocator
    {
      std::lock_guard<std::mutex> guard{wmtx_};
      if (!spent_.empty())
        spent.swap(spent_);
      queued = incoming_writes_.size();
      if (!stopping_ && queued < max_queued_writes_) {
        queued_events_ += w.events.size();
        incoming_writes_.push_back(std::move(w));
        incoming_dones_.push_back(std::move(done));
        ++submitted_writes_;
        // Subtracted once the write's callback ran (run_batch).
        troupe::detail::awaited_completions().fetch_add(1, std::memory_order_relaxed);
        has_incoming_.store(true, std::memory_order_relaxed);
        if (!writer_busy_)
          wcv_.notify_one();
        return;
      }
    }
    if (queued < max_queued_writes_) {
      done(not_run(fmt::format("the write of '{}'", w.persistence_id)));
      return;
    }
    metrics_.writes_overloaded.inc();
    done(error{errc::overloaded,
               fmt::format("journal: the write of '{}' was not queued: {} writes already wait "
                           "for the writer (persistence.journal.max-queued-writes); nothing was "
                           "stored, retry later",
                           w.persistence_id, queued)});
  }

  void read_events(std::string persistence_id, sequence_nr from, sequence_nr to,
                   std::size_t max_events, callback<std::vector<event_record>> done) override {
    submit_read<std::vector<event_record>>(
      std::move(done), "read_events",
      [this, id = std::move(persistence_id), from, to,
       max_events]() -> expected<std::vector<event_record>> {
        auto page = spare_pages_.take();
        if (auto ok = journal_->read_events_into(id, from, to, max_events, page); !ok)
          return std::move(ok).error();
        return page;
      });
  }

  void recycle(std::vector<event_record> page) override {
    spare_pages_.give(std::move(page));
  }

  void highest_sequence_nr(std::string persistence_id, callback<sequence_nr> done) override {
    std::uint64_t needed = 0;
    {
      std::lock_guard<std::mutex> guard{wmtx_};
      needed = submitted_writes_;
    }
    submit_read<sequence_nr>(std::move(done), "highest_sequence_nr",
                             [this, id = std::move(persistence_id), needed] {
                               wait_for_writes(needed);
                               return journal_->highest_sequence_nr(id);
                             });
  }

  void delete_events_to(std::string persistence_id, sequence_nr to,
                        callback<void> done) override {
    submit_writer_op<void>(std::move(done), "delete_events_to",
                           [this, id = std::move(persistence_id), to] {
                             return journal_->delete_events_to(id, to);
                           });
  }

  // -- fences --------------------------------------------------------------------------

  void advance_fence(std::string key, std::uint64_t epoch, callback<void> done) override {
    submit_writer_op<void>(std::move(done), "advance_fence", [this, k = std::move(key), epoch] {
      return journal_->advance_fence(k, epoch);
    });
  }

  void fence_epoch(std::string key, callback<std::uint64_t> done) override {
    submit_read<std::uint64_t>(std::move(done), "fence_epoch",
                               [this, k = std::move(key)] { return journal_->fence_epoch(k); });
  }

  // -- snapshots -----------------------------------------------------------------------

  void save_snapshot(snapshot_record snapshot, callback<void> done) override {
    submit_writer_op<void>(std::move(done), "save_snapshot",
                           [this, s = std::move(snapshot)] { return snapshots_->save(s); });
  }

  void load_snapshot(std::string persistence_id, snapshot_criteria criteria,
                     callback<std::optional<snapshot_record>> done) override {
    submit_read<std::optional<snapshot_record>>(
      std::move(done), "load_snapshot", [this, id = std::move(persistence_id), criteria] {
        return snapshots_->load(id, criteria);
      });
  }

  void delete_snapshots(std::string persistence_id, snapshot_criteria criteria,
                        callback<void> done) override {
    submit_writer_op<void>(std::move(done), "delete_snapshots",
                           [this, id = std::move(persistence_id), criteria] {
                             return snapshots_->delete_matching(id, criteria);
                           });
  }

  // -- queries -------------------------------------------------------------------------

  void events_by_tag(std::string tag, offset_type after, std::size_t max_events,
                     callback<std::vector<event_record>> done) override {
    submit_read<std::vector<event_record>>(
      std::move(done), "events_by_tag", [this, t = std::move(tag), after, max_events] {
        return journal_->events_by_tag(t, after, max_events);
      });
  }

  void persistence_ids(std::string after, std::size_t max,
                       callback<std::vector<std::string>> done) override {
    submit_read<std::vector<std::string>>(std::move(done), "persistence_ids",
                                          [this, a = std::move(after), max] {
                                            return journal_->persistence_ids(a, max);
                                          });
  }

  void highest_offset(callback<offset_type> done) override {
    submit_read<offset_type>(std::move(done), "highest_offset",
                             [this] { return journal_->highest_offset(); });
  }

  journal_backend& journal() override {
    return *journal_;
  }
  snapshot_backend& snapshots() override {
    return *snapshots_;
  }
  std::shared_ptr<journal_backend> journal_ptr() override {
    return journal_;
  }

private:
  // -- writer thread -------------------------------------------------------------------

  void writer_loop() {
    std::vector<atomic_write> writes;
    std::vector<callback<void>> dones;
    std::vector<task> ops;
    std::unique_lock<std::mutex> lock{wmtx_};
    for (;;) {
      writer_busy_ = false;
      wcv_.wait(lock, [this] {
        return !incoming_writes_.empty() || !incoming_ops_.empty() || stopping_;
      });
      if (incoming_writes_.empty() && incoming_ops_.empty())
        return;  // stopping, and everything queued ran
      writer_busy_ = true;
      auto events = take_batch(writes, dones);
      ops.swap(incoming_ops_);
      has_incoming_.store(!incoming_writes_.empty(), std::memory_order_relaxed);
      lock.unlock();
      auto done_count = writes.size();
      if (!writes.empty())
        run_batch(writes, dones, events);  // moves them to the completion runner
      writes.clear();
      dones.clear();
      for (auto& op : ops)
        op(false);
      ops.clear();
      poll_for_work();
      lock.lock();
      completed_writes_ += done_count;
      written_cv_.notify_all();
      if (incoming_writes_.empty()) {
        // Hand the cleared vectors (and their capacity) back as the next queue.
        incoming_writes_.swap(writes);
        incoming_dones_.swap(dones);
      }
    }
  }

  /// Returns once work was submitted or writer_poll_time passed. Submitters do
  /// not notify meanwhile (writer_busy_ is still set); the caller then looks for
  /// work under the lock as usual, so this only saves the sleep, never misses work.
  void poll_for_work() {
    auto start = steady::now();
    for (int i = 1; !has_incoming_.load(std::memory_order_relaxed); ++i) {
      if (i % 8 != 0) {
        troupe::detail::cpu_relax();
        continue;
      }
      if (steady::now() - start >= writer_poll_time)
        return;
      sched_yield();  // the thread about to submit may need this core
    }
  }

  /// Moves the queued writes into `writes`/`dones` (empty on entry), at most
  /// max_batch_events events but always at least one write. Returns the number of
  /// events taken. Requires wmtx_.
  std::size_t take_batch(std::vector<atomic_write>& writes, std::vector<callback<void>>& dones) {
    if (queued_events_ <= max_batch_events_) {
      writes.swap(incoming_writes_);
      dones.swap(incoming_dones_);
      return std::exchange(queued_events_, 0);
    }
    std::size_t n = 0;
    std::size_t events = 0;
    while (n < incoming_writes_.size()
           && (n == 0 || events + incoming_writes_[n].events.size() <= max_batch_events_)) {
      events += incoming_writes_[n].events.size();
      ++n;
    }
    auto wb = incoming_writes_.begin();
    auto db = incoming_dones_.begin();
    writes.insert(writes.end(), std::make_move_iterator(wb), std::make_move_iterator(wb + n));
    dones.insert(dones.end(), std::make_move_iterator(db), std::make_move_iterator(db + n));
    incoming_writes_.erase(wb, wb + n);
    incoming_dones_.erase(db, db + n);
    queued_events_ -= events;
    return events;
  }

  void run_batch(std::vector<atomic_write>& writes, std::vector<callback<void>>& dones,
                 std::size_t events) {
    auto start = steady::now();
    auto results = journal_->write(std::span<const atomic_write>{writes});
    auto took = std::chrono::duration<double>(steady::now() - start).count();
    metrics_.write_seconds.observe(took);
    metrics_.batch_events.observe(static_cast<double>(events));
    if (results.size() != writes.size()) {
      auto msg = fmt::format("journal: the backend returned {} results for {} writes",
                             results.size(), writes.size());
      log_.error(component, "{}", msg);
      results.assign(writes.size(), error{errc::internal, msg});
    }
    // Metrics first: whoever sees an ack also sees it counted.
    std::uint64_t ok_events = 0, ok = 0, conflicts = 0, rejected = 0, fenced = 0, failed = 0;
    for (std::size_t i = 0; i < writes.size(); ++i) {
      auto& r = results[i];
      if (r) {
        ++ok;
        ok_events += writes[i].events.size();
      } else if (r.error().code() == errc::sequence_conflict) {
        ++conflicts;
      } else if (r.error().code() == errc::journal_rejected) {
        ++rejected;
      } else if (r.error().code() == errc::fenced) {
        // A stale owner's write (its shard moved): logged here as well as by the
        // entity's region once the entity stopped, which it may never do if its
        // node is stopping by then; the first of a batch, the metric counts all.
        if (++fenced == 1)
          log_.warn(component, "a write to '{}' was fenced: {}", writes[i].persistence_id,
                    r.error().message());
      } else if (++failed == 1) {
        note_failure(writes[i].persistence_id, r.error());
      }
    }
    if (failed == 0 && ok > 0)
      note_success();
    metrics_.events_written.inc(ok_events);
    metrics_.writes_ok.inc(ok);
    metrics_.writes_conflict.inc(conflicts);
    metrics_.writes_rejected.inc(rejected);
    metrics_.writes_failed.inc(failed);
    metrics_.writes_fenced.inc(fenced);
    auto n = writes.size();
    // The batch goes along, and after its callbacks back to the submitters.
    completions_.run(
      [this, dones = std::move(dones), results = std::move(results),
       batch = std::move(writes)]() mutable {
        for (std::size_t i = 0; i < dones.size(); ++i)
          invoke(dones[i], std::move(results[i]));
        troupe::detail::awaited_completions().fetch_sub(static_cast<long>(dones.size()),
                                                        std::memory_order_relaxed);
        give_back(spent_batch{std::move(batch), std::move(dones)});
      },
      n);
  }

  /// A completed batch's writes and callbacks were allocated by the threads that
  /// submitted them (CAF workers); freeing them here, on the completion thread,
  /// took the allocator's lock of their arena against those threads and was
  /// about two fifths of this thread's time under `persist`. So the next write()
  /// frees them on its own thread. When writes stop, at most max_spent_batches
  /// wait; past that they are freed here.
  void give_back(spent_batch b) {
    {
      std::lock_guard<std::mutex> guard{wmtx_};
      if (spent_.size() < max_spent_batches) {
        spent_.push_back(std::move(b));
        return;
      }
    }
    // b is freed here.
  }

  /// Logs the first failed batch of a run of failures (a full disk fails every
  /// batch until space returns: one warning, not thousands); the rest go to debug.
  void note_failure(const std::string& persistence_id, const error& e) {
    if (failed_batches_++ == 0)
      log_.warn(component, "write of {} failed: {} (further failures are logged at debug level "
                "until a write succeeds)",
                persistence_id, e.to_string());
    else
      log_.debug(component, "write of {} failed: {}", persistence_id, e.to_string());
  }

  void note_success() {
    if (failed_batches_ == 0)
      return;
    log_.info(component, "writes succeed again after {} failed batch(es)", failed_batches_);
    failed_batches_ = 0;
  }

  /// Blocks until `n` writes have completed (their callbacks ran).
  void wait_for_writes(std::uint64_t n) {
    std::unique_lock<std::mutex> lock{wmtx_};
    written_cv_.wait(lock, [&] { return completed_writes_ >= n; });
  }

  template <class T, class F>
  void submit_writer_op(callback<T> done, const char* what, F fn) {
    // Run by the writer; the callback goes through the completion runner, after
    // the callbacks of the batches committed before it.
    task t = [this, done = std::move(done), what, fn = std::move(fn)](bool cancelled) mutable {
      if (cancelled) {
        invoke(done, expected<T>{not_run(what)});
        return;
      }
      completions_.run(
        [this, done = std::move(done), r = attempt<T>(what, fn)]() mutable {
          invoke(done, std::move(r));
        },
        1);
    };
    {
      std::lock_guard<std::mutex> guard{wmtx_};
      if (!stopping_) {
        incoming_ops_.push_back(std::move(t));
        has_incoming_.store(true, std::memory_order_relaxed);
        wcv_.notify_one();
        return;
      }
    }
    t(true);
  }

  // -- reader threads ------------------------------------------------------------------

  template <class T, class F>
  void submit_read(callback<T> done, const char* what, F fn) {
    task t = [this, done = std::move(done), what, fn = std::move(fn)](bool cancelled) mutable {
      finish<T>(done, cancelled, what, fn);
    };
    {
      std::lock_guard<std::mutex> guard{rmtx_};
      if (!readers_stopping_) {
        reads_.push_back(std::move(t));
        wake_a_reader();
        return;
      }
    }
    t(true);
  }

  template <class T, class F>
  void finish(callback<T>& done, bool cancelled, const char* what, F& fn) {
    if (cancelled) {
      invoke(done, expected<T>{not_run(what)});
      return;
    }
    invoke(done, attempt<T>(what, fn));
  }

  /// Runs a read or writer op; a failure is counted and logged at debug.
  template <class T, class F>
  expected<T> attempt(const char* what, F& fn) {
    expected<T> r = fn();
    if (!r) {
      metrics_.read_failures.inc();
      log_.debug(component, "{} failed: {}", what, r.error().to_string());
    }
    return r;
  }

  /// Wakes the reader that went idle last, if one is idle; under rmtx_. Last in,
  /// first out: a replay's pages then keep going to one thread, whose core's caches
  /// still hold the connection's pages and statement; waking the longest-idle one
  /// (a shared condition variable's order) made consecutive pages alternate
  /// between threads: the `replay` benchmark read 0.69-0.73 of a raw SELECT that
  /// way, 0.79 this way (docs/benchmarks.md).
  void wake_a_reader() {
    if (idle_readers_.empty())
      return;
    auto* r = idle_readers_.back();
    idle_readers_.pop_back();
    r->woken = true;
    r->cv.notify_one();
  }

  void reader_loop() {
    idle_reader me;
    for (;;) {
      task t;
      {
        std::unique_lock<std::mutex> lock{rmtx_};
        while (reads_.empty() && !readers_stopping_) {
          me.woken = false;
          idle_readers_.push_back(&me);
          me.cv.wait(lock, [&] { return me.woken || readers_stopping_; });
        }
        if (readers_stopping_)
          return;
        t = std::move(reads_.front());
        reads_.pop_front();
      }
      t(false);
    }
  }

  /// Runs a user callback; a callback that throws is a bug in the caller, logged
  /// instead of taking the writer or a reader thread down.
  template <class T>
  void invoke(callback<T>& done, expected<T>&& result) {
    if (!done)
      return;
    try {
      done(std::move(result));
    } catch (const std::exception& ex) {
      log_.error(component, "a journal callback threw: {}", ex.what());
    } catch (...) {
      log_.error(component, "a journal callback threw a non-standard exception");
    }
  }

  std::shared_ptr<journal_backend> journal_;
  std::shared_ptr<snapshot_backend> snapshots_;
  const std::size_t max_batch_events_;
  const std::size_t max_queued_writes_;
  logger& log_;
  service_metrics metrics_;

  // Writer state, guarded by wmtx_.
  std::mutex wmtx_;
  std::condition_variable wcv_;          ///< wakes the writer
  std::condition_variable written_cv_;   ///< a batch completed
  std::vector<atomic_write> incoming_writes_;
  std::vector<callback<void>> incoming_dones_;
  std::vector<spent_batch> spent_;  ///< completed batches for write() to free (give_back)
  std::vector<task> incoming_ops_;
  std::size_t queued_events_ = 0;
  std::uint64_t submitted_writes_ = 0;
  std::uint64_t completed_writes_ = 0;
  bool writer_busy_ = false;  ///< no need to notify: the writer looks again
  /// Work was queued since the writer last took it; read without the lock by
  /// poll_for_work only (a hint: the queues themselves are read under wmtx_).
  std::atomic<bool> has_incoming_{false};
  std::uint64_t failed_batches_ = 0;  ///< failed batches in a row; writer thread only
  bool stopping_ = false;
  std::thread writer_;

  // Reader state, guarded by rmtx_.
  std::mutex rmtx_;
  /// A reader thread waiting for work; on its own stack.
  struct idle_reader {
    std::condition_variable cv;
    bool woken = false;  ///< taken off idle_readers_ by wake_a_reader
  };
  std::vector<idle_reader*> idle_readers_;  ///< the last to go idle at the back
  std::deque<task> reads_;
  bool readers_stopping_ = false;
  std::vector<std::thread> readers_;

  detail::page_pool spare_pages_;  ///< pages handed back by replays (recycle)

  std::mutex stop_mtx_;
  bool stopped_ = false;

  /// Runs the writer's callbacks; declared last so that it stops (and runs what
  /// is pending) before anything it uses is destroyed.
  detail::completion_runner completions_;
};

} // namespace

std::shared_ptr<journal_service> journal_service::start(std::shared_ptr<journal_backend> journal,
                                                        std::shared_ptr<snapshot_backend> snapshots,
                                                        options opts, logger& log,
                                                        metrics_registry& metrics) {
  return std::make_shared<service_impl>(std::move(journal), std::move(snapshots), opts, log,
                                        metrics);
}

} // namespace troupe::persistence
