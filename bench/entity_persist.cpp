// Event-sourced entities on the SQLite journal versus raw SQLite doing the same
// storage work, in the same run (WAL + synchronous=FULL everywhere). troupe and the
// baseline are measured in alternating windows, so that both see the same machine
// (on a shared machine others' load drifts within seconds). The node runs with the
// defaults a user gets (one CAF worker per core, the journal's default batch
// limit); the JSON lines say "config":"defaults".
//
//   persist          10,000 entities, one 100-byte event per command, every entity
//                    with a command in flight (10,000 in flight), acknowledged
//                    events/s; baseline: prepared inserts of the same rows into the
//                    same schema, the best of a few transaction sizes.
//   replay           recover one entity from 100,000 events (spawn until its first
//                    reply) in events/s; baseline: one SELECT of the same rows.
//   persist_latency  one entity, one event per command, one command at a time:
//                    p50 / p99 of command->reply; baseline: one INSERT per
//                    durable transaction.
#include "harness.hpp"
#include "journal_load.hpp"
#include "raw_sqlite.hpp"

#include "troupe/actors/ask.hpp"
#include "troupe/actors/node.hpp"
#include "troupe/persistence/entity.hpp"
#include "troupe/persistence/journal_service.hpp"
#include "troupe/persistence/sqlite_journal.hpp"

#include <caf/all.hpp>
#include <fmt/core.h>

#include <atomic>
#include <future>
#include <thread>

namespace troupe::bench {

namespace {

using namespace troupe::persistence;
using namespace std::chrono_literals;

constexpr int entity_count = 10'000;
/// Client actors sending the commands, each keeping 100 asks in flight. (One actor
/// with 10,000 pending requests is itself the bottleneck in CAF 0.17: each reply
/// costs it time proportional to its pending requests.)
constexpr std::size_t driver_count = 1000;
/// Commands each entity has in flight.
constexpr int commands_per_entity = 1;
/// Alternating troupe / raw measuring windows.
constexpr int rounds = 3;

// -- the entity ----------------------------------------------------------------------------

/// A 100-byte event: CBOR {"d": <95 chars>} is 1 + 2 + 2 + 95 bytes.
/// Its JSON functions are written the way the samples write theirs (the macro; a
/// hand-written `j = nlohmann::json{{"d", e.d}}` builds the document through
/// temporaries: a third of the CAF worker's allocations per event, benchmarks.md).
struct appended {
  std::string d;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(appended, d)

struct append {
  std::string d;
  using reply = done;
};
struct count {
  using reply = std::uint64_t;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(append, d)
inline void to_json(nlohmann::json& j, const count&) {
  j = nlohmann::json::object();
}
inline void from_json(const nlohmann::json&, count&) {}

struct log_entity {
  static constexpr std::string_view entity_type = "bench";
  using command = std::variant<append, count>;
  using event = std::variant<appended>;
  struct state {
    std::uint64_t events = 0;
    std::uint64_t bytes = 0;
  };
  using effect = persistence::effect<log_entity>;

  static effect on_command(const state&, const append& c) { return effect::persist(appended{c.d}); }
  static effect on_command(const state& s, const count& c) { return effect::reply(c, s.events); }
  static state on_event(state s, const appended& e) {
    ++s.events;
    s.bytes += e.d.size();
    return s;
  }
};

const std::string& payload_text() {
  static const std::string text(95, 'x');
  return text;
}

std::size_t payload_bytes() {
  static const auto n = nlohmann::json::to_cbor(nlohmann::json(appended{payload_text()})).size();
  return n;
}

/// A node with the SQLite journal at `path` (WAL + synchronous=FULL).
std::unique_ptr<node> start_node(const std::string& path) {
  auto schema = node_config_keys();
  add_config_keys(schema);
  config cfg{std::move(schema)};
  for (auto [k, v] : {std::pair{"log.level", "warn"}, std::pair{"node.name", "bench"},
                      std::pair{"persistence.journal.synchronous", "full"},
                      std::pair{"persistence.journal.create-if-missing", "true"}})
    if (!cfg.set_text(k, v))
      die(std::string{"bad setting "} + k);
  if (!cfg.set("persistence.journal.path", path))
    die("bad journal path");
  auto codec = std::make_shared<codec_registry>();
  if (!codec->add<appended>("bench.appended") || !codec->add<append>("bench.append")
      || !codec->add<count>("bench.count") || !codec->add<std::uint64_t>("bench.uint64"))
    die("codec");
  auto n = node::start(std::move(cfg), node::options{codec});
  if (!n)
    die(n.error().to_string());
  if (auto j = install_journal(**n); !j)
    die(j.error().to_string());
  return std::move(*n);
}

// -- raw SQLite ------------------------------------------------------------------------------

/// Writes the persist benchmark's rows: `ids` entities' 100-byte events.
raw_event_writer raw_writer(const std::string& path, int ids) {
  create_journal_schema(path);
  std::vector<std::string> names;
  for (int i = 0; i < ids; ++i)
    names.push_back(persistence_id_of("bench", fmt::format("e{}", i)));
  return raw_event_writer{path, names,
                          {"bench.appended",
                           nlohmann::json::to_cbor(nlohmann::json(appended{payload_text()})),
                           "bench-writer-0123456789"}};
}

// -- persist -------------------------------------------------------------------------------

/// Keeps `depth` appends in flight per entity: the next command to an entity leaves
/// as soon as one was acknowledged (durable). First asks every entity once (so that
/// all of them recovered); appends start and stop with the shared `running` flag
/// and a resume message (1).
struct driver_state {
  std::vector<entity_ref<log_entity>> refs;
  std::shared_ptr<std::atomic<std::uint64_t>> acked;
  std::shared_ptr<std::atomic<std::int64_t>> in_flight;
  std::shared_ptr<std::atomic<bool>> running;
  std::shared_ptr<std::promise<void>> ready;
  std::size_t waiting = 0;
};

void send_next(caf::stateful_actor<driver_state>* self, std::size_t i) {
  auto& st = self->state;
  st.in_flight->fetch_add(1, std::memory_order_relaxed);
  troupe::ask<done>(self, st.refs[i], 60s, append{payload_text()})
    .then([self, i](expected<done> r) {
      auto& st = self->state;
      st.in_flight->fetch_sub(1, std::memory_order_relaxed);
      if (!r)
        die("append failed: " + r.error().to_string());
      st.acked->fetch_add(1, std::memory_order_relaxed);
      if (st.running->load(std::memory_order_relaxed))
        send_next(self, i);
    });
}

caf::behavior driver(caf::stateful_actor<driver_state>* self, driver_state init) {
  self->state = std::move(init);
  self->state.waiting = self->state.refs.size();
  for (auto& ref : self->state.refs)
    troupe::ask<std::uint64_t>(self, ref, 120s, count{}).then([self](expected<std::uint64_t> r) {
      if (!r)
        die("recovery before the benchmark failed: " + r.error().to_string());
      if (--self->state.waiting == 0)
        self->state.ready->set_value();
    });
  return {[self](int depth) {
    for (int d = 0; d < depth; ++d)
      for (std::size_t i = 0; i < self->state.refs.size(); ++i)
        send_next(self, i);
  }};
}

/// Waits without busy-polling (the benchmark's own clock, not a test).
void pause_for(double seconds) {
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
}

std::vector<result> persist(const options& opts) {
  scratch_dir dir;
  result r;
  r.bench = "persist";
  r.unit = "events/s";
  // The raw baseline's best transaction size, each probed briefly on a fresh file.
  int best_batch = 0;
  double best = 0;
  for (int batch : {1024, 4096, 16384}) {
    auto w = raw_writer(dir.file(fmt::format("probe-{}.db", batch)), entity_count);
    transaction_rate(w, batch, std::min(0.3, opts.seconds / 10));
    auto rate = transaction_rate(w, batch, std::min(1.0, opts.seconds / 3));
    if (rate > best) {
      best = rate;
      best_batch = batch;
    }
  }
  auto raw = raw_writer(dir.file("raw.db"), entity_count);

  auto n = start_node(dir.file("troupe.db"));
  std::vector<entity_ref<log_entity>> refs;
  for (int i = 0; i < entity_count; ++i) {
    auto ref = spawn_entity<log_entity>(*n, fmt::format("e{}", i));
    if (!ref)
      die(ref.error().to_string());
    refs.push_back(*ref);
  }
  auto acked = std::make_shared<std::atomic<std::uint64_t>>(0);
  auto in_flight = std::make_shared<std::atomic<std::int64_t>>(0);
  auto running = std::make_shared<std::atomic<bool>>(false);
  std::vector<std::future<void>> recovered;
  std::vector<caf::actor> drivers;
  for (std::size_t k = 0; k < driver_count; ++k) {
    auto ready = std::make_shared<std::promise<void>>();
    recovered.push_back(ready->get_future());
    std::vector<entity_ref<log_entity>> mine;
    for (std::size_t i = k; i < refs.size(); i += driver_count)
      mine.push_back(refs[i]);
    auto d = n->spawn("bench-driver", driver, driver_state{mine, acked, in_flight, running, ready});
    if (!d)
      die(d.error().to_string());
    drivers.push_back(*d);
  }
  for (auto& f : recovered)
    f.wait();
  auto resume = [&] {
    running->store(true);
    for (auto& d : drivers)
      caf::anon_send(d, commands_per_entity);
  };
  auto stop = [&] {
    running->store(false);
    while (in_flight->load() > 0)
      pause_for(0.001);
  };
  // Warm up both: the first rows of every id.
  auto warm = std::min(1.0, opts.seconds / 3);
  resume();
  pause_for(warm);
  stop();
  transaction_rate(raw, best_batch, warm);
  // Alternate troupe and raw windows, so that both see the same machine (others'
  // load on a shared machine drifts within seconds).
  double troupe_events = 0, troupe_time = 0, raw_events = 0, raw_time = 0;
  for (int round = 0; round < rounds; ++round) {
    resume();
    pause_for(0.2);  // ramp up: every entity has a command in flight again
    auto a0 = acked->load();
    auto t0 = now_seconds();
    pause_for(opts.seconds / rounds);
    troupe_events += static_cast<double>(acked->load() - a0);
    troupe_time += now_seconds() - t0;
    stop();
    auto window = opts.seconds / rounds;
    raw_events += transaction_rate(raw, best_batch, window) * window;
    raw_time += window;
  }
  r.troupe = troupe_events / troupe_time;
  r.baseline = raw_events / raw_time;
  auto batches = n->metrics().histogram("troupe_persistence_journal_batch_events", {}).read();
  r.extra["mean_batch_events"] =
    batches.count ? batches.sum / static_cast<double>(batches.count) : 0.0;
  n->shutdown();
  r.extra["entities"] = entity_count;
  r.extra["in_flight"] = entity_count * commands_per_entity;
  r.extra["clients"] = driver_count;
  r.extra["event_bytes"] = payload_bytes();
  r.extra["synchronous"] = "full";
  r.extra["baseline_batch_rows"] = best_batch;
  r.extra["baseline_merge_every_rows"] = raw_event_writer::merge_every_rows;
  r.extra["scheduler_threads"] = default_scheduler_threads();
  r.extra["config"] = "defaults";
  return {r};
}

// -- replay --------------------------------------------------------------------------------

constexpr sequence_nr replay_events = 100'000;

std::vector<result> replay(const options& opts) {
  scratch_dir dir;
  auto path = dir.file("replay.db");
  auto n = start_node(path);
  const std::string entity_id = "replayed";
  const std::string pid = persistence_id_of("bench", entity_id);
  {
    // Setup: 100,000 events of one id, written straight into the journal.
    auto& j = find_journal(*n)->journal();
    auto payload = nlohmann::json::to_cbor(nlohmann::json(appended{payload_text()}));
    for (sequence_nr s = 1; s <= replay_events; s += 1000) {
      atomic_write w;
      w.persistence_id = pid;
      for (sequence_nr k = 0; k < 1000; ++k) {
        auto& e = w.events.emplace_back();
        e.seq = s + k;
        e.manifest = "bench.appended";
        e.payload = payload;
        e.writer = "bench-writer";
      }
      for (auto& res : j.write(std::span<const atomic_write>{&w, 1}))
        if (!res)
          die(res.error().to_string());
    }
  }
  // One recovery: spawn, wait for the first reply (commands wait for recovery),
  // stop. Returns the seconds it took.
  auto recover_once = [&] {
    auto t0 = now_seconds();
    auto ref = spawn_entity<log_entity>(*n, entity_id);
    if (!ref)
      die(ref.error().to_string());
    auto c = ref->ask(count{}, 60s);
    auto t1 = now_seconds();
    if (!c || *c != replay_events)
      die("replay recovered the wrong state");
    caf::anon_send_exit(ref->actor(), caf::exit_reason::user_shutdown);
    return t1 - t0;
  };
  raw_event_reader raw{path};
  auto select_once = [&] {
    auto t0 = now_seconds();
    auto read = raw.read(pid);
    if (read.rows != replay_events || read.payload_bytes != replay_events * payload_bytes())
      die("raw replay read the wrong rows");
    return now_seconds() - t0;
  };
  // Warm the page cache, then alternate recoveries and raw SELECTs so that both
  // see the same machine.
  recover_once();
  select_once();
  double troupe_busy = 0, raw_busy = 0;
  int passes = 0;
  for (auto start = now_seconds(); now_seconds() - start < 2 * opts.seconds; ++passes) {
    troupe_busy += recover_once();
    raw_busy += select_once();
  }
  result r;
  r.bench = "replay";
  r.unit = "events/s";
  r.troupe = static_cast<double>(passes * replay_events) / troupe_busy;
  r.baseline = static_cast<double>(passes * replay_events) / raw_busy;
  r.extra["passes"] = passes;
  r.extra["page_size"] = 2000;
  r.extra["scheduler_threads"] = default_scheduler_threads();
  r.extra["config"] = "defaults";
  n->shutdown();
  r.extra["events"] = replay_events;
  r.extra["event_bytes"] = payload_bytes();
  return {r};
}

// -- persist_latency -----------------------------------------------------------------------

/// Sends one command at a time from inside an actor and records each round trip.
struct latency_state {
  entity_ref<log_entity> ref;
  std::vector<double>* samples;
  double deadline;
  double sent = 0;
  std::promise<void>* finished;
};

void next_latency(caf::stateful_actor<latency_state>* self) {
  self->state.sent = now_seconds();
  troupe::ask<done>(self, self->state.ref, 60s, append{payload_text()})
    .then([self](expected<done> r) {
      auto& st = self->state;
      if (!r)
        die(r.error().to_string());
      auto now = now_seconds();
      st.samples->push_back((now - st.sent) * 1e6);
      if (now < st.deadline) {
        next_latency(self);
      } else {
        st.finished->set_value();
        self->quit();
      }
    });
}

std::vector<result> persist_latency(const options& opts) {
  scratch_dir dir;
  auto n = start_node(dir.file("troupe.db"));
  auto ref = spawn_entity<log_entity>(*n, "latency");
  if (!ref || !ref->ask(count{}, 60s))
    die("cannot start the entity");
  auto w = raw_writer(dir.file("raw.db"), 1);
  for (int i = 0; i < 50; ++i) {  // warm up both
    if (!ref->ask(append{payload_text()}, 60s))
      die("warm-up append failed");
    w.transaction(1);
  }
  // Alternating blocks of one-at-a-time commands and of raw 1-row commits.
  std::vector<double> troupe_us;
  std::vector<double> raw_us;
  constexpr int blocks = 6;
  for (int b = 0; b < blocks; ++b) {
    std::promise<void> finished;
    auto deadline = now_seconds() + opts.seconds / blocks;
    auto a = n->spawn("latency-driver",
                      [&](caf::stateful_actor<latency_state>* self) -> caf::behavior {
                        self->state = latency_state{*ref, &troupe_us, deadline, 0, &finished};
                        next_latency(self);
                        return {[](int) {}};
                      });
    if (!a)
      die(a.error().to_string());
    finished.get_future().wait();
    deadline = now_seconds() + opts.seconds / blocks;
    while (now_seconds() < deadline) {
      auto t0 = now_seconds();
      w.transaction(1);
      raw_us.push_back((now_seconds() - t0) * 1e6);
    }
  }
  n->shutdown();
  std::vector<result> out;
  for (double p : {50.0, 99.0}) {
    result r;
    r.bench = fmt::format("persist_latency_p{}", static_cast<int>(p));
    r.unit = "us";
    r.lower_is_better = true;
    auto t = troupe_us;
    auto b = raw_us;
    r.troupe = percentile(t, p);
    r.baseline = percentile(b, p);
    r.extra["samples"] = troupe_us.size();
    r.extra["baseline_samples"] = raw_us.size();
    r.extra["synchronous"] = "full";
    r.extra["scheduler_threads"] = default_scheduler_threads();
    r.extra["config"] = "defaults";
    out.push_back(r);
  }
  return out;
}

} // namespace

TROUPE_BENCHMARK("persist",
                 "10k entities, 100 B events, 10k commands in flight, WAL+FULL, vs raw SQLite",
                 persist);
TROUPE_BENCHMARK("replay", "recover one entity from 100k events vs a raw SELECT of them",
                 replay);
TROUPE_BENCHMARK("persist_latency",
                 "one entity, one event per command: p50/p99 vs a raw durable 1-row commit",
                 persist_latency);

} // namespace troupe::bench
