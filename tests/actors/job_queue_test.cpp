// A scheduler worker's job queue (actors/src/job_queue.hpp): the order the worker
// runs jobs in (prepend: next; append: last) survives the ring wrapping and
// growing, and under concurrent enqueuers and thieves every job is taken exactly
// once.
#include "job_queue.hpp"

#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <random>
#include <thread>
#include <vector>

namespace {

using troupe::detail::job_queue;

/// A distinct job pointer for `n` (never dereferenced).
caf::resumable* job(std::uintptr_t n) {
  return reinterpret_cast<caf::resumable*>((n + 1) * 16);
}

std::uintptr_t number(caf::resumable* j) {
  return reinterpret_cast<std::uintptr_t>(j) / 16 - 1;
}

} // namespace

TEST_CASE("job_queue: appended jobs run in order, a prepended one runs next") {
  job_queue q;
  CHECK(q.empty());
  CHECK(q.take_head() == nullptr);
  q.append(job(1));
  q.append(job(2));
  q.prepend(job(0));
  CHECK_FALSE(q.empty());
  CHECK(q.take_head() == job(0));
  CHECK(q.take_head() == job(1));
  CHECK(q.take_head() == job(2));
  CHECK(q.take_head() == nullptr);
  CHECK(q.empty());
}

TEST_CASE("job_queue: the order holds while the ring wraps around and grows") {
  // A seeded mix of the three operations against std::deque, with the queue
  // growing to thousands of jobs and draining again, so that the head wraps
  // around the ring's end and each growth happens with the jobs wrapped.
  job_queue q;
  std::deque<caf::resumable*> model;
  std::mt19937 rng{20261204};
  std::uintptr_t next = 0;
  for (int round = 0; round < 6; ++round) {
    auto grow = round % 2 == 0;
    for (int i = 0; i < 3000; ++i) {
      auto op = rng() % 10;
      if (op < (grow ? 4u : 2u)) {
        q.append(job(next));
        model.push_back(job(next++));
      } else if (op < (grow ? 7u : 4u)) {
        q.prepend(job(next));
        model.push_front(job(next++));
      } else {
        auto* got = q.take_head();
        auto* want = model.empty() ? nullptr : model.front();
        if (!model.empty())
          model.pop_front();
        if (got != want)
          FAIL("round " << round << ", step " << i << ": took "
                        << (got ? static_cast<long>(number(got)) : -1L) << ", expected "
                        << (want ? static_cast<long>(number(want)) : -1L));
      }
      REQUIRE(q.empty() == model.empty());
    }
  }
  while (!model.empty()) {
    REQUIRE(q.take_head() == model.front());
    model.pop_front();
  }
  CHECK(q.take_head() == nullptr);
}

TEST_CASE("job_queue: concurrent enqueuers and thieves take every job exactly once") {
  job_queue q;
  constexpr int producers = 3;
  constexpr int consumers = 2;
  constexpr std::uintptr_t per_producer = 40'000;
  constexpr auto total = producers * per_producer;
  std::vector<std::atomic<int>> taken(total);
  std::atomic<std::uintptr_t> done{0};
  std::vector<std::thread> ts;
  for (int p = 0; p < producers; ++p)
    ts.emplace_back([&, p] {
      for (std::uintptr_t i = 0; i < per_producer; ++i) {
        auto n = static_cast<std::uintptr_t>(p) * per_producer + i;
        if (i % 3 == 0)
          q.prepend(job(n));
        else
          q.append(job(n));
      }
    });
  // A lost job would leave the thieves waiting for it: they give up at a deadline.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds{60};
  for (int c = 0; c < consumers; ++c)
    ts.emplace_back([&] {
      while (done.load() < total && std::chrono::steady_clock::now() < deadline)
        if (auto* j = q.take_head()) {
          taken[number(j)].fetch_add(1);
          done.fetch_add(1);
        }
    });
  for (auto& t : ts)
    t.join();
  CHECK(done.load() == total);
  CHECK(q.empty());
  for (std::uintptr_t n = 0; n < total; ++n)
    if (taken[n].load() != 1)
      FAIL("job " << n << " was taken " << taken[n].load() << " times");
}

TEST_CASE("job_queue: take_next takes the head until the tail has waited its patience, then "
          "the tail") {
  job_queue q;
  CHECK(q.take_next(2) == nullptr);
  q.append(job(100));  // the tail from here
  for (std::uintptr_t k = 0; k < 3; ++k)
    q.prepend(job(k));  // a chain that keeps the head busy
  CHECK(number(q.take_next(2)) == 2);
  CHECK(number(q.take_next(2)) == 1);
  CHECK(number(q.take_next(2)) == 100);  // waited 2 takes
  CHECK(number(q.take_next(2)) == 0);
  CHECK(q.take_next(2) == nullptr);
  // A lone job is the head: taken as such, whatever its wait.
  q.append(job(7));
  CHECK(number(q.take_next(0)) == 7);
  // Appending restarts the tail's wait; the rest keeps its order.
  q.append(job(1));
  q.append(job(2));
  q.append(job(3));
  CHECK(number(q.take_next(1)) == 1);
  CHECK(number(q.take_next(1)) == 3);
  CHECK(number(q.take_next(1)) == 2);
  CHECK(q.empty());
}
