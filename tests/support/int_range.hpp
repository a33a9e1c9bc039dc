#pragma once
// first, first + 1, ..., last - 1: the values a test expects from a counting source.

#include <cstddef>
#include <numeric>
#include <vector>

namespace troupe::test {

inline std::vector<int> int_range(int first, int last) {
  std::vector<int> v(static_cast<std::size_t>(last - first));
  std::iota(v.begin(), v.end(), first);
  return v;
}

} // namespace troupe::test
