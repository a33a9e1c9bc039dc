#include "troupe/membership/reachability.hpp"

#include <algorithm>

namespace troupe::membership {

using remote::node_identity;

namespace {

bool contains(const std::vector<node_identity>& sorted, const node_identity& x) {
  return std::binary_search(sorted.begin(), sorted.end(), x);
}

} // namespace

reachability::row& reachability::row_of(const node_identity& observer) {
  auto i = std::lower_bound(rows_.begin(), rows_.end(), observer,
                            [](const row& r, const node_identity& o) { return r.observer < o; });
  if (i == rows_.end() || i->observer != observer)
    i = rows_.insert(i, row{observer, 0, {}});
  return *i;
}

bool reachability::mark_unreachable(const node_identity& observer, const node_identity& subject) {
  auto& r = row_of(observer);
  auto i = std::lower_bound(r.unreachable.begin(), r.unreachable.end(), subject);
  if (i != r.unreachable.end() && *i == subject)
    return false;
  r.unreachable.insert(i, subject);
  ++r.version;
  return true;
}

bool reachability::mark_reachable(const node_identity& observer, const node_identity& subject) {
  auto i = std::lower_bound(rows_.begin(), rows_.end(), observer,
                            [](const row& r, const node_identity& o) { return r.observer < o; });
  if (i == rows_.end() || i->observer != observer)
    return false;
  auto j = std::lower_bound(i->unreachable.begin(), i->unreachable.end(), subject);
  if (j == i->unreachable.end() || *j != subject)
    return false;
  i->unreachable.erase(j);
  ++i->version;
  return true;
}

bool reachability::is_reachable(const node_identity& subject) const noexcept {
  return std::none_of(rows_.begin(), rows_.end(),
                      [&](const row& r) { return contains(r.unreachable, subject); });
}

bool reachability::is_reachable_by(const node_identity& observer,
                                   const node_identity& subject) const noexcept {
  for (auto& r : rows_)
    if (r.observer == observer)
      return !contains(r.unreachable, subject);
  return true;
}

bool reachability::all_reachable() const noexcept {
  return std::all_of(rows_.begin(), rows_.end(), [](const row& r) { return r.unreachable.empty(); });
}

std::vector<node_identity> reachability::unreachable_subjects(
  const std::function<bool(const node_identity&)>& ignore) const {
  std::vector<node_identity> result;
  for (auto& r : rows_)
    if (!ignore || !ignore(r.observer))
      result.insert(result.end(), r.unreachable.begin(), r.unreachable.end());
  std::sort(result.begin(), result.end());
  result.erase(std::unique(result.begin(), result.end()), result.end());
  return result;
}

reachability reachability::merge(const reachability& a, const reachability& b) {
  reachability result;
  result.rows_.reserve(std::max(a.rows_.size(), b.rows_.size()));
  auto i = a.rows_.begin();
  auto j = b.rows_.begin();
  while (i != a.rows_.end() || j != b.rows_.end()) {
    if (j == b.rows_.end() || (i != a.rows_.end() && i->observer < j->observer)) {
      result.rows_.push_back(*i++);
    } else if (i == a.rows_.end() || j->observer < i->observer) {
      result.rows_.push_back(*j++);
    } else {
      // Equal versions differ at most in pruned (removed) subjects, which the
      // caller's retain() drops; prefer the shorter row so merge is commutative.
      auto shorter = [](const row& x, const row& y) {
        return x.unreachable.size() != y.unreachable.size()
                 ? x.unreachable.size() < y.unreachable.size()
                 : x.unreachable <= y.unreachable;
      };
      bool take_a = i->version > j->version || (i->version == j->version && shorter(*i, *j));
      result.rows_.push_back(take_a ? *i : *j);
      ++i;
      ++j;
    }
  }
  return result;
}

void reachability::retain(const std::function<bool(const node_identity&)>& keep) {
  std::erase_if(rows_, [&](const row& r) { return !keep(r.observer); });
  for (auto& r : rows_)
    std::erase_if(r.unreachable, [&](const node_identity& s) { return !keep(s); });
}

reachability reachability::from_rows(std::vector<row> rows) {
  reachability result;
  for (auto& r : rows) {
    std::sort(r.unreachable.begin(), r.unreachable.end());
    r.unreachable.erase(std::unique(r.unreachable.begin(), r.unreachable.end()),
                        r.unreachable.end());
  }
  std::sort(rows.begin(), rows.end(),
            [](const row& x, const row& y) { return x.observer < y.observer; });
  rows.erase(std::unique(rows.begin(), rows.end(),
                         [](const row& x, const row& y) { return x.observer == y.observer; }),
             rows.end());
  result.rows_ = std::move(rows);
  return result;
}

} // namespace troupe::membership
