#include "troupe/persistence/memory_journal.hpp"

#include <fmt/core.h>

#include <algorithm>

namespace troupe::persistence {

namespace {

bool matches(const snapshot_criteria& c, const snapshot_record& s) {
  return s.seq >= c.min_seq && s.seq <= c.max_seq && s.timestamp_ms >= c.min_timestamp_ms
         && s.timestamp_ms <= c.max_timestamp_ms;
}

} // namespace

std::string_view to_string(journal_op op) noexcept {
  switch (op) {
    case journal_op::write: return "write";
    case journal_op::read: return "read";
    case journal_op::delete_events: return "delete_events";
    case journal_op::read_highest_seq: return "read_highest_seq";
    case journal_op::query: return "query";
    case journal_op::snapshot_save: return "snapshot_save";
    case journal_op::snapshot_load: return "snapshot_load";
    case journal_op::snapshot_delete: return "snapshot_delete";
    case journal_op::advance_fence: return "advance_fence";
    case journal_op::read_fence: return "read_fence";
  }
  return "?";
}

// -- fault injection -------------------------------------------------------------------

void memory_journal::add_fault(fault_policy policy) {
  std::lock_guard<std::mutex> guard{fault_mtx_};
  if (policy.times && *policy.times == 0)
    return;
  faults_.push_back(std::move(policy));
}

void memory_journal::fail(journal_op op, std::string persistence_id,
                          std::optional<std::size_t> times) {
  add_fault({op, fault_kind::fail, std::move(persistence_id), times, {}});
}

void memory_journal::reject(journal_op op, std::string persistence_id,
                            std::optional<std::size_t> times) {
  add_fault({op, fault_kind::reject, std::move(persistence_id), times, {}});
}

void memory_journal::delay(journal_op op, duration how_long, std::string persistence_id,
                           std::optional<std::size_t> times) {
  add_fault({op, fault_kind::delay, std::move(persistence_id), times, how_long});
}

void memory_journal::fail_after(journal_op op, duration how_long, std::string persistence_id,
                                std::optional<std::size_t> times) {
  add_fault({op, fault_kind::delay_then_fail, std::move(persistence_id), times, how_long});
}

void memory_journal::clear_faults() {
  {
    std::lock_guard<std::mutex> guard{fault_mtx_};
    faults_.clear();
    ++release_generation_;
  }
  release_cv_.notify_all();
}

std::uint64_t memory_journal::calls(journal_op op) const {
  std::lock_guard<std::mutex> guard{fault_mtx_};
  auto i = calls_.find(op);
  return i == calls_.end() ? 0 : i->second;
}

std::optional<fault_policy> memory_journal::match(journal_op op, std::string_view persistence_id) {
  std::lock_guard<std::mutex> guard{fault_mtx_};
  ++calls_[op];
  for (auto i = faults_.begin(); i != faults_.end(); ++i) {
    if (i->op != op || (!i->persistence_id.empty() && i->persistence_id != persistence_id))
      continue;
    auto result = *i;
    if (i->times && --*i->times == 0)
      faults_.erase(i);
    return result;
  }
  return std::nullopt;
}

void memory_journal::block_for(duration how_long) {
  // A timed wait instead of a sleep, so that clear_faults() can release it early.
  std::unique_lock<std::mutex> lock{fault_mtx_};
  auto generation = release_generation_;
  release_cv_.wait_for(lock, how_long, [&] { return release_generation_ != generation; });
}

error memory_journal::fault_error(fault_kind kind, journal_op op, std::string_view persistence_id) {
  auto what = fmt::format("memory journal: injected {} of {} for '{}'",
                          kind == fault_kind::reject ? "rejection" : "failure", to_string(op),
                          persistence_id);
  return error{kind == fault_kind::reject ? errc::journal_rejected : errc::journal_failure,
               std::move(what)};
}

expected<void> memory_journal::apply(journal_op op, std::string_view persistence_id) {
  auto policy = match(op, persistence_id);
  if (!policy)
    return {};
  if (policy->kind == fault_kind::delay || policy->kind == fault_kind::delay_then_fail)
    block_for(policy->delay);
  if (policy->kind == fault_kind::delay)
    return {};
  return fault_error(policy->kind, op, persistence_id);
}

// -- journal ---------------------------------------------------------------------------

std::vector<write_result> memory_journal::write(std::span<const atomic_write> batch) {
  std::vector<write_result> results(batch.size());
  std::vector<bool> faulted(batch.size(), false);
  duration longest_delay{0};
  for (std::size_t i = 0; i < batch.size(); ++i) {
    auto policy = match(journal_op::write, batch[i].persistence_id);
    if (!policy)
      continue;
    if (policy->kind == fault_kind::delay || policy->kind == fault_kind::delay_then_fail)
      longest_delay = std::max(longest_delay, policy->delay);
    if (policy->kind != fault_kind::delay) {
      results[i] = fault_error(policy->kind, journal_op::write, batch[i].persistence_id);
      faulted[i] = true;
    }
  }
  if (longest_delay.count() > 0)
    block_for(longest_delay);
  std::lock_guard<std::mutex> guard{data_mtx_};
  for (std::size_t i = 0; i < batch.size(); ++i)
    if (!faulted[i])
      results[i] = store(batch[i]);
  return results;
}

expected<void> memory_journal::check_fence(const write_fence& f, std::string_view what) const {
  auto i = fences_.find(f.key);
  if (i != fences_.end() && i->second > f.epoch)
    return fenced_error("memory journal", what, f.key, i->second, f.epoch);
  return {};
}

write_result memory_journal::store(const atomic_write& w) {
  if (auto ok = validate_write(w); !ok)
    return ok;
  if (w.fence)
    if (auto ok = check_fence(*w.fence, fmt::format("the write of '{}' seq {}..{}",
                                                    w.persistence_id, w.events.front().seq,
                                                    w.events.back().seq));
        !ok)
      return ok;
  auto& state = ids_[w.persistence_id];
  for (auto& e : w.events)
    if (e.seq <= state.deleted_to || find_event(w.persistence_id, e.seq) != nullptr)
      return error{errc::sequence_conflict,
                   fmt::format("journal: '{}' seq {} already exists (another writer?)",
                               w.persistence_id, e.seq)};
  if (w.fence) {
    auto& stored = fences_[w.fence->key];
    stored = std::max(stored, w.fence->epoch);
  }
  auto ts = now_ms();
  auto key = ids_.find(w.persistence_id);
  for (auto& e : w.events) {
    event_record r = e;
    r.persistence_id = w.persistence_id;
    r.offset = ++last_offset_;
    if (r.timestamp_ms == 0)
      r.timestamp_ms = ts;
    for (auto& tag : r.tags)
      tags_[tag].emplace(r.offset, event_ref{&key->first, r.seq});
    auto pos = std::lower_bound(state.events.begin(), state.events.end(), r.seq,
                                [](const event_record& x, sequence_nr s) { return x.seq < s; });
    state.events.insert(pos, std::move(r));
    state.highest = std::max(state.highest, e.seq);
  }
  return {};
}

const event_record* memory_journal::find_event(const std::string& id, sequence_nr seq) const {
  auto i = ids_.find(id);
  if (i == ids_.end())
    return nullptr;
  auto& events = i->second.events;
  auto pos = std::lower_bound(events.begin(), events.end(), seq,
                              [](const event_record& x, sequence_nr s) { return x.seq < s; });
  return pos != events.end() && pos->seq == seq ? &*pos : nullptr;
}

expected<std::vector<event_record>> memory_journal::read_events(const std::string& persistence_id,
                                                                sequence_nr from, sequence_nr to,
                                                                std::size_t max_events) {
  if (auto ok = apply(journal_op::read, persistence_id); !ok)
    return std::move(ok).error();
  std::vector<event_record> result;
  std::lock_guard<std::mutex> guard{data_mtx_};
  auto i = ids_.find(persistence_id);
  if (i == ids_.end())
    return result;
  auto& events = i->second.events;
  auto pos = std::lower_bound(events.begin(), events.end(), from,
                              [](const event_record& x, sequence_nr s) { return x.seq < s; });
  for (; pos != events.end() && pos->seq <= to && result.size() < max_events; ++pos)
    result.push_back(*pos);
  return result;
}

expected<sequence_nr> memory_journal::highest_sequence_nr(const std::string& persistence_id) {
  if (auto ok = apply(journal_op::read_highest_seq, persistence_id); !ok)
    return std::move(ok).error();
  std::lock_guard<std::mutex> guard{data_mtx_};
  auto i = ids_.find(persistence_id);
  return i == ids_.end() ? sequence_nr{0} : i->second.highest;
}

expected<void> memory_journal::delete_events_to(const std::string& persistence_id,
                                                sequence_nr to) {
  if (auto ok = apply(journal_op::delete_events, persistence_id); !ok)
    return ok;
  std::lock_guard<std::mutex> guard{data_mtx_};
  auto i = ids_.find(persistence_id);
  if (i == ids_.end())
    return {};
  auto& events = i->second.events;
  i->second.deleted_to = std::max(i->second.deleted_to, std::min(to, i->second.highest));
  while (!events.empty() && events.front().seq <= to) {
    auto& e = events.front();
    for (auto& tag : e.tags)
      if (auto t = tags_.find(tag); t != tags_.end())
        t->second.erase(e.offset);
    events.pop_front();
  }
  return {};
}

expected<std::vector<event_record>> memory_journal::events_by_tag(const std::string& tag,
                                                                  offset_type after,
                                                                  std::size_t max_events) {
  if (auto ok = apply(journal_op::query, ""); !ok)
    return std::move(ok).error();
  std::vector<event_record> result;
  std::lock_guard<std::mutex> guard{data_mtx_};
  auto t = tags_.find(tag);
  if (t == tags_.end())
    return result;
  for (auto i = t->second.upper_bound(after); i != t->second.end() && result.size() < max_events;
       ++i)
    if (auto e = find_event(*i->second.persistence_id, i->second.seq))
      result.push_back(*e);
  return result;
}

expected<std::vector<std::string>> memory_journal::persistence_ids(const std::string& after,
                                                                   std::size_t max) {
  if (auto ok = apply(journal_op::query, ""); !ok)
    return std::move(ok).error();
  std::vector<std::string> result;
  std::lock_guard<std::mutex> guard{data_mtx_};
  for (auto i = ids_.upper_bound(after); i != ids_.end() && result.size() < max; ++i)
    if (i->second.highest > 0)
      result.push_back(i->first);
  return result;
}

expected<offset_type> memory_journal::highest_offset() {
  if (auto ok = apply(journal_op::query, ""); !ok)
    return std::move(ok).error();
  std::lock_guard<std::mutex> guard{data_mtx_};
  return last_offset_;
}

expected<void> memory_journal::advance_fence(const std::string& key, std::uint64_t epoch) {
  if (auto ok = apply(journal_op::advance_fence, key); !ok)
    return ok;
  if (auto ok = validate_fence(key, epoch); !ok)
    return ok;
  std::lock_guard<std::mutex> guard{data_mtx_};
  if (auto ok = check_fence(write_fence{key, epoch}, "advance_fence"); !ok)
    return ok;
  auto& stored = fences_[key];
  stored = std::max(stored, epoch);
  return {};
}

expected<std::uint64_t> memory_journal::fence_epoch(const std::string& key) {
  if (auto ok = apply(journal_op::read_fence, key); !ok)
    return std::move(ok).error();
  std::lock_guard<std::mutex> guard{data_mtx_};
  auto i = fences_.find(key);
  return i == fences_.end() ? std::uint64_t{0} : i->second;
}

// -- snapshots -------------------------------------------------------------------------

expected<void> memory_journal::save(const snapshot_record& snapshot) {
  if (auto ok = apply(journal_op::snapshot_save, snapshot.persistence_id); !ok)
    return ok;
  if (auto ok = validate_snapshot(snapshot); !ok)
    return ok;
  std::lock_guard<std::mutex> guard{data_mtx_};
  auto& slot = snapshots_[snapshot.persistence_id][snapshot.seq];
  slot = snapshot;
  if (slot.timestamp_ms == 0)
    slot.timestamp_ms = now_ms();
  return {};
}

expected<std::optional<snapshot_record>> memory_journal::load(const std::string& persistence_id,
                                                              const snapshot_criteria& criteria) {
  if (auto ok = apply(journal_op::snapshot_load, persistence_id); !ok)
    return std::move(ok).error();
  std::lock_guard<std::mutex> guard{data_mtx_};
  auto i = snapshots_.find(persistence_id);
  if (i != snapshots_.end())
    for (auto s = i->second.rbegin(); s != i->second.rend(); ++s)
      if (matches(criteria, s->second))
        return std::optional<snapshot_record>{s->second};
  return std::optional<snapshot_record>{};
}

expected<void> memory_journal::delete_matching(const std::string& persistence_id,
                                               const snapshot_criteria& criteria) {
  if (auto ok = apply(journal_op::snapshot_delete, persistence_id); !ok)
    return ok;
  std::lock_guard<std::mutex> guard{data_mtx_};
  auto i = snapshots_.find(persistence_id);
  if (i == snapshots_.end())
    return {};
  std::erase_if(i->second, [&](const auto& kv) { return matches(criteria, kv.second); });
  return {};
}

} // namespace troupe::persistence
