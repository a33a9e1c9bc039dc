// The stable handle's lock (actors/src/spin_lock.hpp): mutual exclusion under
// contention, and what one holder wrote is what the next one reads.
#include "spin_lock.hpp"

#include <doctest/doctest.h>

#include <mutex>
#include <thread>
#include <vector>

TEST_CASE("spin_lock: contending threads lose no update made under the lock") {
  troupe::detail::spin_lock lock;
  // Plain (non-atomic) data: a missing exclusion or a missing acquire/release
  // pair loses increments (and ThreadSanitizer reports the race).
  std::uint64_t counter = 0;
  std::vector<std::uint64_t> order;
  constexpr int threads = 4;
  constexpr int per_thread = 50'000;
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t)
    ts.emplace_back([&] {
      for (int i = 0; i < per_thread; ++i) {
        std::lock_guard<troupe::detail::spin_lock> guard{lock};
        order.push_back(++counter);
      }
    });
  for (auto& t : ts)
    t.join();
  CHECK(counter == std::uint64_t{threads} * per_thread);
  REQUIRE(order.size() == counter);
  for (std::size_t i = 0; i < order.size(); ++i)
    if (order[i] != i + 1)
      FAIL("update " << i + 1 << " was seen as " << order[i]);
}
