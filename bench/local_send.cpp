// local_send: one-way messages into a troupe actor through troupe's API versus raw
// CAF anon_send to a raw CAF actor, in the same run, with the same scheduler size.
//
// The troupe side is what a user writes: a node with its default configuration, an
// actor started under the guardian with node::spawn (troupe's default handlers
// installed), messages sent to the handle it returns. A second line measures the
// same through a supervisor's stable child handle (which hands each message to the
// child on the sender's thread). Medians of interleaved windows are compared.
#include "harness.hpp"

#include "troupe/actors/node.hpp"
#include "troupe/actors/supervisor.hpp"

#include <caf/all.hpp>

#include <algorithm>
#include <atomic>
#include <thread>

using namespace std::chrono_literals;

namespace {

struct progress {
  std::atomic<std::uint64_t> received{0};
};

caf::behavior counter(caf::event_based_actor*, std::shared_ptr<progress> p) {
  return {[p](std::uint64_t) { p->received.fetch_add(1, std::memory_order_relaxed); }};
}

// Sends as many messages as fit in `seconds`, never more than `window` ahead of the
// receiver (so the mailbox, and memory, stay bounded), and returns messages/s.
double flood(const caf::actor& dest, progress& p, double seconds) {
  constexpr std::uint64_t window = 50'000;
  constexpr std::uint64_t chunk = 1'000;
  auto start = troupe::bench::now_seconds();
  auto base = p.received.load();
  std::uint64_t sent = 0;
  while (troupe::bench::now_seconds() - start < seconds) {
    while (sent - (p.received.load(std::memory_order_relaxed) - base) > window)
      std::this_thread::yield();
    for (std::uint64_t i = 0; i < chunk; ++i)
      caf::anon_send(dest, sent + i);
    sent += chunk;
  }
  while (p.received.load() - base < sent)
    std::this_thread::yield();
  return static_cast<double>(sent) / (troupe::bench::now_seconds() - start);
}

double median(std::vector<double> xs) {
  std::sort(xs.begin(), xs.end());
  return xs.empty() ? 0 : xs[xs.size() / 2];
}

std::vector<troupe::bench::result> run(const troupe::bench::options& opts) {
  // troupe, with the defaults a user gets (scheduler.threads 0: one per core but one)
  troupe::config cfg{troupe::node_config_keys()};
  (void) cfg.set_text("log.level", "warn");
  auto node = std::move(*troupe::node::start(std::move(cfg)));
  auto tp = std::make_shared<progress>();
  auto target = *node->spawn("counter", counter, tp);
  troupe::supervisor_spec spec{.name = "bench"};
  spec.children = {troupe::make_child("counter", counter, tp)};
  auto sup = *node->spawn_supervisor(spec);
  auto handle = *troupe::child_handle(node->system(), sup, "counter", 5s);
  // raw CAF, with as many workers as troupe's default (CAF's own default is 4 or
  // more, which is slower on 2 cores)
  auto threads = troupe::default_scheduler_threads();
  caf::actor_system_config raw_cfg;
  raw_cfg.set("scheduler.max-threads", static_cast<size_t>(threads));
  caf::actor_system raw_sys{raw_cfg};
  auto rp = std::make_shared<progress>();
  auto raw_target = raw_sys.spawn(counter, rp);

  // Warm up both, then interleave short windows so that drift in the machine's
  // load hits all three alike; the medians are compared.
  flood(target, *tp, 0.2);
  flood(raw_target, *rp, 0.2);
  constexpr int rounds = 11;
  auto window = opts.seconds / rounds / 3;
  std::vector<double> raw, direct, via_handle;
  // Before each window the other system's workers settle: CAF's own policy keeps
  // an idle worker polling for up to ~50 ms, which would take the CPU from the
  // window after it.
  auto settled = [](auto f) {
    std::this_thread::sleep_for(100ms);
    return f();
  };
  for (int i = 0; i < rounds; ++i) {
    raw.push_back(settled([&] { return flood(raw_target, *rp, window); }));
    direct.push_back(settled([&] { return flood(target, *tp, window); }));
    via_handle.push_back(settled([&] { return flood(handle, *tp, window); }));
  }
  node->shutdown();
  troupe::bench::result r1{"local_send", "msgs/s", median(direct), median(raw)};
  r1.extra["receiver"] = "node::spawn";
  r1.extra["rounds"] = rounds;
  r1.extra["scheduler_threads"] = threads;
  r1.extra["config"] = "defaults";
  troupe::bench::result r2{"local_send_supervised", "msgs/s", median(via_handle), median(raw)};
  r2.extra["receiver"] = "supervisor child via stable handle";
  r2.extra["rounds"] = rounds;
  r2.extra["config"] = "defaults";
  return {r1, r2};
}

} // namespace

TROUPE_BENCHMARK("local_send", "one-way local messages: troupe actor vs raw CAF actor", run);
