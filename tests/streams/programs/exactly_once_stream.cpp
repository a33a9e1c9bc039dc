// Helper for the exactly-once process tests: a one-node cluster with the
// dedup_tally entity sharded on a SQLite journal, and a stream of ELEMENTS
// deterministic elements into it (offset o -> the value o for entity
// "t-<o mod ENTITIES>") through entities_flow_with_offsets and commit_offsets
// into the journal file's offset store.
//
//   troupe-test-exactly-once-stream DB MODE ELEMENTS ENTITIES GATE COMMIT_EVERY COMMIT_INTERVAL_MS
//
// MODE: exactly-once (each command carries its origin: producer "numbers", the
// offset; the entity deduplicates) or at-least-once (no origin). The stream
// resumes after the committed offset. GATE > 0: the source stops after offset
// GATE and waits forever (the test kills the process); 0: it ends after ELEMENTS.
// COMMIT_INTERVAL_MS 0: commits by count only.
//
// Prints "resuming after C"; "committed O" after each offset saved; "gate N" once
// the elements up to GATE are all acknowledged; "finished N" when the stream
// completed (N elements acknowledged in this run), then exits 0.
#include "streams/dedup_tally.hpp"

#include "troupe/actors/node.hpp"
#include "troupe/actors/remote/transport.hpp"
#include "troupe/membership/cluster.hpp"
#include "troupe/persistence/journal_service.hpp"
#include "troupe/persistence/projection.hpp"
#include "troupe/sharding/sharding.hpp"
#include "troupe/streams/streams.hpp"

#include <fmt/core.h>

#include <atomic>
#include <cstdio>
#include <future>
#include <mutex>
#include <optional>
#include <string>

using namespace std::chrono_literals;
using namespace troupe;
namespace ts = troupe::streams;

namespace {

constexpr const char* producer = "numbers";

std::mutex out_mtx;

void print_line(const std::string& line) {
  std::lock_guard<std::mutex> guard{out_mtx};
  std::fputs(line.c_str(), stdout);
  std::fputc('\n', stdout);
  std::fflush(stdout);
}

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "exactly-once-stream: %s\n", what.c_str());
  std::exit(1);
}

struct args {
  std::string db;
  bool dedup = true;
  std::int64_t elements = 0;
  std::int64_t entities = 0;
  std::int64_t gate = 0;
  std::size_t commit_every = 0;
  std::int64_t commit_interval_ms = 0;
};

args parse(int argc, char** argv) {
  if (argc != 8)
    die("usage: DB MODE ELEMENTS ENTITIES GATE COMMIT_EVERY COMMIT_INTERVAL_MS");
  args a;
  a.db = argv[1];
  std::string mode = argv[2];
  if (mode != "exactly-once" && mode != "at-least-once")
    die("MODE is exactly-once or at-least-once");
  a.dedup = mode == "exactly-once";
  a.elements = std::stoll(argv[3]);
  a.entities = std::stoll(argv[4]);
  a.gate = std::stoll(argv[5]);
  a.commit_every = static_cast<std::size_t>(std::stoull(argv[6]));
  a.commit_interval_ms = std::stoll(argv[7]);
  return a;
}

template <class T>
T checked(expected<T> r, const char* what) {
  if (!r)
    die(fmt::format("{}: {}", what, r.error().to_string()));
  return std::move(*r);
}

std::unique_ptr<node> start_node(const std::string& db) {
  auto schema = node_config_keys();
  persistence::add_config_keys(schema);
  config cfg{std::move(schema)};
  if (!cfg.set_text("log.level", "warn") || !cfg.set("persistence.journal.path", db)
      || !cfg.set("persistence.journal.create-if-missing", true))
    die("bad config");
  auto codec = std::make_shared<codec_registry>();
  dedup_tally::register_types(*codec);
  auto n = checked(node::start(std::move(cfg), node::options{codec}), "node");
  auto t = checked(remote::transport::start(*n), "transport");
  checked(persistence::install_journal(*n), "journal");
  membership::membership_settings ms;
  ms.seed_nodes = {t->address()};  // a one-node cluster
  auto c = checked(membership::cluster::start(*n, ms), "cluster");
  if (auto up = c->wait_until_up(30s); !up)
    die("cluster: " + up.error().to_string());
  sharding::sharding_settings s;
  s.number_of_shards = 10;
  s.passivate_idle_after = 0s;
  if (auto r = sharding::start<dedup_tally::entity>(*n, s); !r)
    die("sharding: " + r.error().to_string());
  return n;
}

/// The offsets after `after`: up to the gate and then none, forever, or to the end.
ts::source<std::int64_t> numbers(std::int64_t after, const args& a,
                                 std::optional<ts::source_queue<std::int64_t>>& never) {
  auto last = a.gate > 0 ? std::min(a.gate, a.elements) : a.elements;
  auto upto = ts::from_range(after + 1, std::max(after + 1, last + 1));
  if (a.gate == 0)
    return upto;
  auto [forever, handle] = ts::queue_source<std::int64_t>(1);  // never offered, never completed
  never = handle;
  return upto.via(ts::concat(forever));
}

} // namespace

int main(int argc, char** argv) {
  auto a = parse(argc, argv);
  auto n = start_node(a.db);
  auto store = checked(persistence::sqlite_offset_store::open({.path = a.db}), "offset store");
  auto after = static_cast<std::int64_t>(checked(ts::committed_offset(*store, producer, "tallies"), "load"));
  print_line(fmt::format("resuming after {}", after));

  auto entity_of = [entities = a.entities](const std::int64_t& o) { return fmt::format("t-{}", o % entities); };
  auto command_of = [dedup = a.dedup](const std::int64_t& o) {
    auto from = dedup ? persistence::origin{producer, static_cast<std::uint64_t>(o)} : persistence::origin{};
    return dedup_tally::add{o, from};
  };
  ts::entity_sink_options opts;
  opts.ask.parallelism = 16;
  opts.ask.timeout = 10s;
  auto save = [inner = ts::sqlite_offset_saver(store, producer, "tallies")](persistence::offset_type o) {
    auto r = inner(o);
    if (r)
      print_line(fmt::format("committed {}", o));
    return r;
  };
  auto acked = std::make_shared<std::atomic<std::int64_t>>(0);
  auto gate_count = a.gate > 0 ? a.gate - after : -1;
  std::optional<ts::source_queue<std::int64_t>> never;
  auto done = numbers(after, a, never)
                .via(ts::entities_flow_with_offsets<dedup_tally::entity, std::int64_t>(
                  *n, entity_of, command_of, [](const std::int64_t& o) { return o; }, opts))
                .via(ts::commit_offsets(save, {.every_n = a.commit_every,
                                               .every_interval = std::chrono::milliseconds{a.commit_interval_ms}}))
                .to(ts::for_each<ts::offset_ack<persistence::done>>([acked, gate_count](const auto&) {
                  if (acked->fetch_add(1) + 1 == gate_count)
                    print_line(fmt::format("gate {}", gate_count));
                }))
                .run(*n, {.name = "numbers"});
  if (!done)
    die("stream: " + done.error().to_string());
  auto r = done->wait(300s);
  if (!r)
    die("stream: " + r.error().to_string());
  print_line(fmt::format("finished {}", acked->load()));
  n->shutdown();
  return 0;
}
