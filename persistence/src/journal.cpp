// Checks shared by every journal backend (journal.hpp).
#include "troupe/persistence/journal.hpp"

#include <fmt/core.h>

#include <algorithm>
#include <chrono>

namespace troupe::persistence {

namespace {

error rejected(const atomic_write& w, sequence_nr seq, std::string_view why) {
  return error{errc::journal_rejected,
               fmt::format("journal: write of '{}' seq {} rejected: {}", w.persistence_id, seq, why)};
}

bool valid_tag(const std::string& tag) {
  return !tag.empty() && std::none_of(tag.begin(), tag.end(), [](char c) {
    return static_cast<unsigned char>(c) < 0x20 || c == 0x7f;
  });
}

} // namespace

expected<void> validate_fence(const std::string& key, std::uint64_t epoch) {
  if (key.empty())
    return error{errc::journal_rejected, "journal: a fence needs a non-empty key"};
  if (epoch > max_fence_epoch)
    return error{errc::journal_rejected,
                 fmt::format("journal: fence '{}': epoch {} is above the largest epoch {}", key,
                             epoch, max_fence_epoch)};
  return {};
}

error fenced_error(std::string_view where, std::string_view what, const std::string& key,
                   std::uint64_t stored, std::uint64_t epoch) {
  return error{errc::fenced,
               fmt::format("{}: {} refused: fence '{}' is at epoch {}, newer than the epoch {} "
                           "it was made under (a newer owner took over); nothing was stored",
                           where, what, key, stored, epoch)};
}

expected<void> validate_write(const atomic_write& w) {
  if (w.persistence_id.empty())
    return error{errc::journal_rejected, "journal: a write needs a persistence id"};
  if (w.events.empty())
    return rejected(w, 0, "a write needs at least one event");
  if (w.fence)
    if (auto ok = validate_fence(w.fence->key, w.fence->epoch); !ok)
      return rejected(w, w.events.front().seq, ok.error().message());
  auto first = w.events.front().seq;
  for (std::size_t i = 0; i < w.events.size(); ++i) {
    auto& e = w.events[i];
    if (!e.persistence_id.empty() && e.persistence_id != w.persistence_id)
      return rejected(w, e.seq, fmt::format("the event belongs to '{}'", e.persistence_id));
    if (e.seq == 0 || e.seq > max_sequence_nr)
      return rejected(w, e.seq, "sequence numbers start at 1");
    if (e.seq != first + i)
      return rejected(w, e.seq,
                      fmt::format("sequence numbers of one write must be consecutive (expected {})",
                                  first + i));
    if (e.manifest.empty())
      return rejected(w, e.seq, "the event has no manifest");
    for (std::size_t t = 0; t < e.tags.size(); ++t) {
      if (!valid_tag(e.tags[t]))
        return rejected(w, e.seq, fmt::format("invalid tag '{}' (empty or control characters)",
                                              e.tags[t]));
      if (std::find(e.tags.begin(), e.tags.begin() + static_cast<std::ptrdiff_t>(t), e.tags[t])
          != e.tags.begin() + static_cast<std::ptrdiff_t>(t))
        return rejected(w, e.seq, fmt::format("tag '{}' appears twice", e.tags[t]));
    }
  }
  return {};
}

expected<void> validate_snapshot(const snapshot_record& snapshot) {
  if (snapshot.persistence_id.empty() || snapshot.seq == 0)
    return error{errc::invalid_argument,
                 fmt::format("snapshot store: a snapshot needs a persistence id and a seq >= 1 "
                             "(got '{}' seq {})",
                             snapshot.persistence_id, snapshot.seq)};
  return {};
}

std::int64_t now_ms() noexcept {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

expected<void> journal_backend::read_events_into(const std::string& persistence_id,
                                                 sequence_nr from, sequence_nr to,
                                                 std::size_t max_events,
                                                 std::vector<event_record>& out) {
  auto page = read_events(persistence_id, from, to, max_events);
  if (!page)
    return std::move(page).error();
  out = std::move(*page);
  return {};
}

} // namespace troupe::persistence
