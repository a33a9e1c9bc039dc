#include "troupe/membership/vector_clock.hpp"

#include <algorithm>

namespace troupe::membership {

namespace {

auto find_slot(std::vector<vector_clock::entry>& xs, const remote::node_identity& node) {
  return std::lower_bound(xs.begin(), xs.end(), node,
                          [](const auto& e, const auto& n) { return e.first < n; });
}

} // namespace

void vector_clock::increment(const remote::node_identity& node) {
  auto i = find_slot(entries_, node);
  if (i != entries_.end() && i->first == node)
    ++i->second;
  else
    entries_.insert(i, entry{node, 1});
}

std::uint64_t vector_clock::at(const remote::node_identity& node) const noexcept {
  auto i = std::lower_bound(entries_.begin(), entries_.end(), node,
                            [](const auto& e, const auto& n) { return e.first < n; });
  return i != entries_.end() && i->first == node ? i->second : 0;
}

vector_clock::ordering vector_clock::compare(const vector_clock& other) const noexcept {
  bool less = false;     // some entry of this is smaller than other's
  bool greater = false;  // some entry of this is larger than other's
  auto a = entries_.begin();
  auto b = other.entries_.begin();
  while (a != entries_.end() || b != other.entries_.end()) {
    if (b == other.entries_.end() || (a != entries_.end() && a->first < b->first)) {
      greater = true;
      ++a;
    } else if (a == entries_.end() || b->first < a->first) {
      less = true;
      ++b;
    } else {
      less |= a->second < b->second;
      greater |= a->second > b->second;
      ++a;
      ++b;
    }
    if (less && greater)
      return ordering::concurrent;
  }
  if (less)
    return ordering::before;
  return greater ? ordering::after : ordering::same;
}

vector_clock vector_clock::merge(const vector_clock& other) const {
  vector_clock result;
  result.entries_.reserve(std::max(entries_.size(), other.entries_.size()));
  auto a = entries_.begin();
  auto b = other.entries_.begin();
  while (a != entries_.end() || b != other.entries_.end()) {
    if (b == other.entries_.end() || (a != entries_.end() && a->first < b->first)) {
      result.entries_.push_back(*a++);
    } else if (a == entries_.end() || b->first < a->first) {
      result.entries_.push_back(*b++);
    } else {
      result.entries_.emplace_back(a->first, std::max(a->second, b->second));
      ++a;
      ++b;
    }
  }
  return result;
}

void vector_clock::prune(const remote::node_identity& node) {
  auto i = find_slot(entries_, node);
  if (i != entries_.end() && i->first == node)
    entries_.erase(i);
}

vector_clock vector_clock::from_entries(std::vector<entry> entries) {
  std::sort(entries.begin(), entries.end());
  vector_clock result;
  for (auto& e : entries) {
    if (!result.entries_.empty() && result.entries_.back().first == e.first)
      result.entries_.back().second = std::max(result.entries_.back().second, e.second);
    else
      result.entries_.push_back(std::move(e));
  }
  return result;
}

} // namespace troupe::membership
