// entity_memory: heap bytes per idle sharded entity with 1,000,000 entities on one
// node, versus heap bytes per idle raw CAF actor, in the same run.
//
// Troupe side: the bank's account type sharded on a one-node cluster with an
// in-memory journal; one get_balance ask per id starts each entity (recovery finds
// no events, so the journal stores nothing), and what stays allocated once every
// ask is answered, divided by the entities, is the figure: the actor, its state,
// and the region's bookkeeping. Baseline: 1,000,000 event-based CAF actors with a
// one-handler behaviour, spawned and left idle. Both are malloc's bytes in use
// (mallinfo2, with malloc held to one arena so that it sees every thread's), like
// erlang:memory(total) in the Erlang peer, not RSS.
#include "sharded_bench.hpp"

#include <malloc.h>
#include <unistd.h>

#include <cstdio>

namespace {

using namespace troupe::bench::sharded;

/// TROUPE_BENCH_ENTITIES overrides the count (for a quick look under a heap profiler).
const int entities = [] {
  auto* e = std::getenv("TROUPE_BENCH_ENTITIES");
  return e ? std::max(1, std::atoi(e)) : 1'000'000;
}();
constexpr int window = 512;

double heap_bytes() {
  auto m = ::mallinfo2();
  return static_cast<double>(m.uordblks + m.hblkhd);
}

double troupe_bytes_per_entity() {
  troupe::sharding::sharding_settings s;
  s.number_of_shards = 1000;
  auto node = start_node(s);
  auto asks = balance_asks(*node, entities);  // the refs are the user's, not the entities'
  auto before = heap_bytes();
  auto c = std::make_shared<counters>();
  auto a = node->system().spawn(asker, c, asks, entities, window, order::each_once);
  while (c->done.load() + c->failed.load() < static_cast<std::uint64_t>(entities))
    std::this_thread::sleep_for(50ms);
  if (c->failed.load() > 0)
    troupe::bench::die(fmt::format("entity_memory: {} asks failed", c->failed.load()));
  caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
  auto r = troupe::sharding::report(*node, "account", 60s);
  if (!r || r->entities != static_cast<std::size_t>(entities))
    troupe::bench::die("entity_memory: not every entity is running");
  auto after = heap_bytes();
  node->shutdown();
  return (after - before) / entities;
}

double raw_bytes_per_actor() {
  caf::actor_system_config cfg;
  caf::actor_system sys{cfg};
  auto before = heap_bytes();
  std::vector<caf::actor> actors;
  actors.reserve(entities);
  auto vector_bytes = heap_bytes() - before;
  for (int k = 0; k < entities; ++k)
    actors.push_back(sys.spawn([]() -> caf::behavior {
      return {[](std::int64_t x) { return x; }};
    }));
  auto after = heap_bytes();
  for (auto& x : actors)
    caf::anon_send_exit(x, caf::exit_reason::user_shutdown);
  return (after - before - vector_bytes) / entities;
}

/// The baseline, measured in a fresh process (this benchmark re-executed with
/// TROUPE_BENCH_PEER=raw), so that neither side sees memory the other freed.
double raw_bytes_in_own_process() {
  char exe[4096] = {};
  if (::readlink("/proc/self/exe", exe, sizeof(exe) - 1) <= 0)
    troupe::bench::die("entity_memory: cannot find its own executable");
  auto cmd = fmt::format("TROUPE_BENCH_PEER=raw '{}' entity_memory", exe);
  auto* f = ::popen(cmd.c_str(), "r");
  if (f == nullptr)
    troupe::bench::die("entity_memory: cannot start the baseline process");
  double bytes = 0;
  char line[256];
  while (std::fgets(line, sizeof(line), f) != nullptr)
    if (std::sscanf(line, "RAW_BYTES %lf", &bytes) == 1)
      break;
  if (::pclose(f) != 0 || bytes <= 0)
    troupe::bench::die("entity_memory: the baseline process failed");
  return bytes;
}

std::vector<troupe::bench::result> run(const troupe::bench::options&) {
  // mallinfo2 counts the main arena only: with one arena, what CAF's worker
  // threads allocate (actors initialize there) is counted too, on both sides.
  ::mallopt(M_ARENA_MAX, 1);
  if (auto* role = std::getenv("TROUPE_BENCH_PEER"); role != nullptr && std::string{role} == "raw") {
    std::printf("RAW_BYTES %.1f\n", raw_bytes_per_actor());
    std::fflush(stdout);
    return {};
  }
  auto troupe_bytes = troupe_bytes_per_entity();
  auto raw_bytes = raw_bytes_in_own_process();
  troupe::bench::result r;
  r.bench = "entity_memory";
  r.unit = "bytes/entity";
  r.troupe = troupe_bytes;
  r.baseline = raw_bytes;
  r.lower_is_better = true;
  r.extra = {{"entities", entities}};
  return {r};
}

} // namespace

TROUPE_BENCHMARK("entity_memory",
                 "heap bytes per idle sharded entity (1M on one node) vs per idle raw CAF actor",
                 run);
