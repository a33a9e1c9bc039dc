// Stream benchmarks (issue 12):
//   stream_fused  source -> map -> filter -> fold over 10,000,000 integers in one
//                 fused island, versus the same work as a plain loop with the same
//                 functions (bar: ratio >= 0.25);
//   stream_async  elements per second across one .async() boundary (batched
//                 demand), versus raw CAF sending one message per element to a
//                 counting actor (bar: ratio >= 3).
// Each side runs three times, alternating, and the best run counts.
#include "harness.hpp"

#include "troupe/actors/node.hpp"
#include "troupe/streams/streams.hpp"

#include <caf/all.hpp>

#include <algorithm>
#include <atomic>
#include <thread>

using namespace std::chrono_literals;
namespace ts = troupe::streams;

namespace {

constexpr std::int64_t fused_n = 10'000'000;

auto triple_plus_one = [](std::int64_t x) { return x * 3 + 1; };
auto even = [](std::int64_t x) { return (x & 1) == 0; };
auto add = [](std::int64_t acc, std::int64_t x) { return acc + x; };

std::unique_ptr<troupe::node> bench_node() {
  troupe::config cfg{troupe::node_config_keys()};
  (void) cfg.set_text("log.level", "warn");  // otherwise the defaults a user gets
  auto n = troupe::node::start(std::move(cfg));
  if (!n)
    troupe::bench::die("node: " + n.error().to_string());
  return std::move(*n);
}

// Returns elements/s and checks the sum.
double fused_once(troupe::node& node, std::int64_t expected) {
  auto start = troupe::bench::now_seconds();
  auto r = ts::from_range(std::int64_t{0}, fused_n)
             .via(ts::map(triple_plus_one))
             .via(ts::filter(even))
             .to(ts::fold_sink<std::int64_t>(std::int64_t{0}, add))
             .run(node);
  if (!r)
    troupe::bench::die("stream_fused: " + r.error().to_string());
  auto sum = r->wait(120s);
  if (!sum || *sum != expected)
    troupe::bench::die("stream_fused: wrong result");
  return static_cast<double>(fused_n) / (troupe::bench::now_seconds() - start);
}

// The same work as a plain loop. `n` comes from a volatile so that the compiler
// cannot fold the loop into a constant.
double loop_once(std::int64_t& sum_out) {
  volatile std::int64_t n_source = fused_n;
  std::int64_t n = n_source;
  auto start = troupe::bench::now_seconds();
  std::int64_t sum = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    auto y = triple_plus_one(i);
    if (even(y))
      sum = add(sum, y);
  }
  sum_out = sum;
  auto took = troupe::bench::now_seconds() - start;
  return static_cast<double>(n) / took;
}

std::vector<troupe::bench::result> fused(const troupe::bench::options&) {
  auto node = bench_node();
  std::int64_t expected = 0;
  double best_loop = 0, best_stream = 0;
  for (int i = 0; i < 3; ++i) {
    best_loop = std::max(best_loop, loop_once(expected));
    best_stream = std::max(best_stream, fused_once(*node, expected));
  }
  node->shutdown();
  troupe::bench::result r{"stream_fused", "elements/s", best_stream, best_loop};
  r.extra["elements"] = fused_n;
  r.extra["stages"] = "from_range -> map -> filter -> fold_sink, one island";
  r.extra["config"] = "defaults";
  return {r};
}

// -- async ----------------------------------------------------------------------------

double async_once(troupe::node& node, std::int64_t n) {
  auto start = troupe::bench::now_seconds();
  auto r = ts::from_range(std::int64_t{0}, n).async().to(ts::fold_sink<std::int64_t>(std::int64_t{0}, add)).run(node);
  if (!r)
    troupe::bench::die("stream_async: " + r.error().to_string());
  auto sum = r->wait(120s);
  if (!sum || *sum != n * (n - 1) / 2)
    troupe::bench::die("stream_async: wrong result");
  return static_cast<double>(n) / (troupe::bench::now_seconds() - start);
}

struct counter_progress {
  std::atomic<std::int64_t> received{0};
};

caf::behavior raw_counter(caf::event_based_actor*, std::shared_ptr<counter_progress> p) {
  return {[p](std::int64_t) { p->received.fetch_add(1, std::memory_order_relaxed); }};
}

// One message per element from a producer thread, at most `window` ahead of the
// receiver (the mailbox, and memory, stay bounded like the stream's buffer).
double raw_once(const caf::actor& dest, counter_progress& p, std::int64_t n) {
  constexpr std::int64_t window = 50'000;
  auto base = p.received.load();
  auto start = troupe::bench::now_seconds();
  for (std::int64_t sent = 0; sent < n; ++sent) {
    while (sent - (p.received.load(std::memory_order_relaxed) - base) > window)
      std::this_thread::yield();
    caf::anon_send(dest, sent);
  }
  while (p.received.load() - base < n)
    std::this_thread::yield();
  return static_cast<double>(n) / (troupe::bench::now_seconds() - start);
}

std::vector<troupe::bench::result> async_boundary(const troupe::bench::options&) {
  constexpr std::int64_t n = 5'000'000;
  auto node = bench_node();
  caf::actor_system_config raw_cfg;
  // As many workers as troupe's default.
  raw_cfg.set("scheduler.max-threads",
              static_cast<std::size_t>(troupe::default_scheduler_threads()));
  caf::actor_system raw_sys{raw_cfg};
  auto progress = std::make_shared<counter_progress>();
  auto counter = raw_sys.spawn(raw_counter, progress);
  double best_stream = 0, best_raw = 0;
  for (int i = 0; i < 3; ++i) {
    best_raw = std::max(best_raw, raw_once(counter, *progress, n / 5));
    best_stream = std::max(best_stream, async_once(*node, n));
  }
  node->shutdown();
  caf::anon_send_exit(counter, caf::exit_reason::user_shutdown);
  troupe::bench::result r{"stream_async", "elements/s", best_stream, best_raw};
  r.extra["buffer"] = ts::stream_options{}.buffer_size;
  r.extra["batch"] = ts::stream_options{}.batch_size;
  r.extra["baseline_kind"] = "raw CAF, one anon_send per element, 50k window";
  r.extra["config"] = "defaults";
  return {r};
}

} // namespace

TROUPE_BENCHMARK("stream_fused", "source->map->filter->fold over 10M integers fused vs a plain loop",
                 fused);
TROUPE_BENCHMARK("stream_async", "elements/s across one .async() boundary vs raw CAF one message per element",
                 async_boundary);
