// local_send: one-way messages into a troupe actor through troupe's API versus raw
// CAF anon_send to a raw CAF actor, in the same run, with the same scheduler size.
//
// The troupe side is what a user writes: a node, an actor started under the
// guardian with node::spawn (troupe's default handlers installed), messages sent to
// the handle it returns. A second line measures the same through a supervisor's
// stable child handle, which adds one routing hop.
#include "harness.hpp"

#include "troupe/actors/node.hpp"
#include "troupe/actors/supervisor.hpp"

#include <caf/all.hpp>

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

std::vector<troupe::bench::result> run(const troupe::bench::options& opts) {
  auto threads = static_cast<std::int64_t>(std::max(2u, std::thread::hardware_concurrency()));
  // troupe
  troupe::config cfg{troupe::node_config_keys()};
  (void) cfg.set_text("log.level", "warn");
  (void) cfg.set("scheduler.threads", threads);
  auto node = std::move(*troupe::node::start(std::move(cfg)));
  auto tp = std::make_shared<progress>();
  auto target = *node->spawn("counter", counter, tp);
  troupe::supervisor_spec spec{.name = "bench"};
  spec.children = {troupe::make_child("counter", counter, tp)};
  auto sup = *node->spawn_supervisor(spec);
  auto handle = *troupe::child_handle(node->system(), sup, "counter", 5s);
  // raw CAF
  caf::actor_system_config raw_cfg;
  raw_cfg.set("scheduler.max-threads", static_cast<size_t>(threads));
  caf::actor_system raw_sys{raw_cfg};
  auto rp = std::make_shared<progress>();
  auto raw_target = raw_sys.spawn(counter, rp);

  // Warm up both, then alternate rounds so drift in machine load hits both alike.
  flood(target, *tp, 0.2);
  flood(raw_target, *rp, 0.2);
  double best_troupe = 0, best_raw = 0, best_handle = 0;
  auto round = opts.seconds / 3;
  for (int i = 0; i < 3; ++i) {
    best_raw = std::max(best_raw, flood(raw_target, *rp, round / 3));
    best_troupe = std::max(best_troupe, flood(target, *tp, round / 3));
    best_handle = std::max(best_handle, flood(handle, *tp, round / 3));
  }
  node->shutdown();
  troupe::bench::result direct{"local_send", "msgs/s", best_troupe, best_raw};
  direct.extra["receiver"] = "node::spawn";
  troupe::bench::result via_handle{"local_send_supervised", "msgs/s", best_handle, best_raw};
  via_handle.extra["receiver"] = "supervisor child via stable handle";
  return {direct, via_handle};
}

} // namespace

TROUPE_BENCHMARK("local_send", "one-way local messages: troupe actor vs raw CAF actor", run);
