// memory_journal: an in-memory journal + snapshot store with fault injection, the
// storage of the persistence testkit (like Akka's PersistenceTestKit and
// SnapshotTestKit).
//
// It keeps the same contracts as the SQLite backend (the conformance suite holds
// both to them): all-or-nothing atomic writes, sequence_conflict for an existing
// (id, seq) without affecting the rest of the batch, offsets strictly increasing in
// commit order, tags, a highest sequence nr that never decreases, write fences
// (a write under an epoch older than its key's stored one is refused with fenced).
//
// Fault injection: a fault_policy applies to one operation, to one persistence id
// or to all ("" matches every id, and the id-less queries), forever or for the next
// N matching calls. The first matching policy (in the order added) wins.
//   fail    the call fails with journal_failure (a write stores nothing)
//   reject  the call fails with journal_rejected (a write stores nothing)
//   delay   the call blocks for the given time, then proceeds normally; a write
//           batch blocks once, for the longest delay among its writes.
//           clear_faults() releases calls that are blocked in a delay.
//   fail_after  blocks like delay, then fails like fail (a persist that is in
//           flight for a while and then fails: commands pile up behind it).
// In a write batch, fail/reject apply per atomic write: the other writes of the
// batch are stored.
//
//   auto j = std::make_shared<memory_journal>();
//   j->fail(journal_op::write, "account|a1", 1);           // the next write of a1
//   j->delay(journal_op::read, std::chrono::seconds{2});   // every replay page
//
// Thread-safety: every member may be called concurrently.
#pragma once

#include "troupe/actors/config.hpp"
#include "troupe/persistence/journal.hpp"

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace troupe::persistence {

/// The operations a fault policy can target.
enum class journal_op : std::uint8_t {
  write,             ///< journal_backend::write, per atomic write
  read,              ///< read_events (replay pages)
  delete_events,     ///< delete_events_to
  read_highest_seq,  ///< highest_sequence_nr
  query,             ///< events_by_tag, persistence_ids, highest_offset
  snapshot_save,
  snapshot_load,
  snapshot_delete,
  advance_fence,     ///< advance_fence (matched by the fence key)
  read_fence,        ///< fence_epoch (matched by the fence key)
};

std::string_view to_string(journal_op op) noexcept;

enum class fault_kind : std::uint8_t { fail, reject, delay, delay_then_fail };

struct fault_policy {
  journal_op op = journal_op::write;
  fault_kind kind = fault_kind::fail;
  std::string persistence_id;         ///< "" matches every id
  std::optional<std::size_t> times;   ///< the next N matching calls; nullopt: until cleared
  duration delay{};                   ///< for fault_kind::delay and delay_then_fail
};

class memory_journal final : public journal_backend, public snapshot_backend {
public:
  memory_journal() = default;
  memory_journal(const memory_journal&) = delete;
  memory_journal& operator=(const memory_journal&) = delete;

  // -- journal_backend ---------------------------------------------------------------
  std::vector<write_result> write(std::span<const atomic_write> batch) override;
  expected<std::vector<event_record>> read_events(const std::string& persistence_id,
                                                  sequence_nr from, sequence_nr to,
                                                  std::size_t max_events) override;
  expected<sequence_nr> highest_sequence_nr(const std::string& persistence_id) override;
  expected<void> delete_events_to(const std::string& persistence_id, sequence_nr to) override;
  expected<std::vector<event_record>> events_by_tag(const std::string& tag, offset_type after,
                                                    std::size_t max_events) override;
  expected<std::vector<std::string>> persistence_ids(const std::string& after,
                                                     std::size_t max) override;
  expected<offset_type> highest_offset() override;
  expected<void> advance_fence(const std::string& key, std::uint64_t epoch) override;
  expected<std::uint64_t> fence_epoch(const std::string& key) override;

  // -- snapshot_backend --------------------------------------------------------------
  expected<void> save(const snapshot_record& snapshot) override;
  expected<std::optional<snapshot_record>> load(const std::string& persistence_id,
                                                const snapshot_criteria& criteria) override;
  expected<void> delete_matching(const std::string& persistence_id,
                                 const snapshot_criteria& criteria) override;

  // -- fault injection ---------------------------------------------------------------
  void add_fault(fault_policy policy);
  void fail(journal_op op, std::string persistence_id = {},
            std::optional<std::size_t> times = std::nullopt);
  void reject(journal_op op, std::string persistence_id = {},
              std::optional<std::size_t> times = std::nullopt);
  void delay(journal_op op, duration how_long, std::string persistence_id = {},
             std::optional<std::size_t> times = std::nullopt);
  void fail_after(journal_op op, duration how_long, std::string persistence_id = {},
                  std::optional<std::size_t> times = std::nullopt);
  /// Removes every policy and releases the calls blocked in a delay.
  void clear_faults();

  /// How many calls (write: atomic writes) of `op` arrived so far, faulted or not.
  std::uint64_t calls(journal_op op) const;

private:
  struct id_state {
    std::deque<event_record> events;  ///< ascending by seq
    sequence_nr highest = 0;
    sequence_nr deleted_to = 0;  ///< deleted seqs count as taken
  };
  struct event_ref {
    const std::string* persistence_id;
    sequence_nr seq;
  };

  /// The policy that applies to this call (consuming one of its `times`), if any.
  std::optional<fault_policy> match(journal_op op, std::string_view persistence_id);
  /// Applies a matched policy to a call that is not a write: blocks for a delay,
  /// or returns the error of fail/reject.
  expected<void> apply(journal_op op, std::string_view persistence_id);
  void block_for(duration how_long);
  static error fault_error(fault_kind kind, journal_op op, std::string_view persistence_id);

  write_result store(const atomic_write& w);  ///< requires data_mtx_
  /// Refuses a fence older than its key's stored epoch (`what` names the refused
  /// operation); does not raise it. Requires data_mtx_.
  expected<void> check_fence(const write_fence& f, std::string_view what) const;
  const event_record* find_event(const std::string& id, sequence_nr seq) const;

  mutable std::mutex fault_mtx_;
  std::condition_variable release_cv_;
  std::uint64_t release_generation_ = 0;
  std::vector<fault_policy> faults_;
  std::map<journal_op, std::uint64_t> calls_;

  mutable std::mutex data_mtx_;
  std::map<std::string, id_state, std::less<>> ids_;
  std::map<std::string, std::map<offset_type, event_ref>, std::less<>> tags_;
  offset_type last_offset_ = 0;
  std::map<std::string, std::uint64_t, std::less<>> fences_;  ///< key -> stored epoch
  std::map<std::string, std::map<sequence_nr, snapshot_record>, std::less<>> snapshots_;
};

} // namespace troupe::persistence
