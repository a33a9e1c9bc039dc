// entity_ask_remote: ask round trips to sharded entities that live in another
// process, through sharding's entity_ref, versus raw request/response over
// troupe's transport between the same two processes, in the same run.
//
// A peer process (troupe-bench re-executed) runs a one-node cluster whose node has
// the role "host" and the bank's account type sharded over 100 shards on an
// in-memory journal, plus an echo actor registered with its transport. This
// process joins that cluster without the role, so its region is proxy-only: every
// ask goes ref -> local region -> transport -> the peer's region -> the entity and
// back. 10,000 accounts are opened first; then an asking actor keeps `window`
// get_balance asks in flight over random accounts. Baseline: the same asking
// pattern against the peer's echo actor over the same transport (a 16-byte
// message each way).
#include "sharded_bench.hpp"
#include "transport_common.hpp"

namespace {

using namespace troupe::bench::sharded;
namespace tt = troupe::bench::transport;

constexpr const char* bench_name = "entity_ask_remote";
constexpr int entities = 10'000;
constexpr int window = 256;

troupe::sharding::sharding_settings hosted_by(std::string role) {
  troupe::sharding::sharding_settings s;
  s.role = std::move(role);
  return s;
}

/// The peer: hosts the accounts and the echo actor until the parent is done.
void host_role() {
  auto n = start_node(hosted_by("host"), {}, cluster_role{std::nullopt, {"host"}});
  if (auto r = troupe::remote::add_message_type<tt::bench_msg>(*n, "bench.msg"); !r)
    troupe::bench::die(r.error().to_string());
  auto t = troupe::remote::transport::of(*n);
  auto echo = n->spawn("echo", tt::bench_echo);
  if (!echo || !t->register_actor("echo", *echo))
    troupe::bench::die("entity_ask_remote: cannot start the echo actor");
  tt::announce_port(t->address().port);
  tt::wait_for_parent();
  n->shutdown();
}

std::vector<troupe::bench::result> run(const troupe::bench::options& opts) {
  if (tt::peer_role() == "host") {
    host_role();
    return {};
  }
  tt::peer_process peer{bench_name, "host"};
  troupe::remote::node_address peer_address{"127.0.0.1", peer.port()};
  auto node = start_node(hosted_by("host"), {}, cluster_role{peer_address, {}});
  if (auto r = troupe::remote::add_message_type<tt::bench_msg>(*node, "bench.msg"); !r)
    troupe::bench::die(r.error().to_string());
  for (int k = 0; k < entities; ++k)
    if (auto r = troupe::sharding::entity_for<bank::account>(*node, fmt::format("acct-{}", k))
                   .ask(bank::open_account{"bench"}, 30s);
        !r)
      troupe::bench::die("opening the accounts on the peer failed: " + r.error().to_string());
  auto t = asker_rate(node->system(), balance_asks(*node, entities), entities, 1, window,
                      order::random, opts.seconds);

  // Baseline: the peer's echo actor over the same transport.
  auto echo = troupe::remote::transport::of(*node)->actor_for(peer_address, "echo");
  auto msg = tt::bench_msg{std::string(16, 'b')};
  auto echo_asks = ask_fn{[echo, msg](caf::event_based_actor* self, int, ask_done done) {
    self->request(echo, caf::infinite, msg)
      .then([done](const tt::bench_msg&) { done(true); }, [done](caf::error&) { done(false); });
  }};
  auto b = asker_rate(node->system(), echo_asks, entities, 1, window, order::random, opts.seconds);
  node->shutdown();

  troupe::bench::result r;
  r.bench = bench_name;
  r.unit = "asks/s";
  r.troupe = t.rate;
  r.baseline = b.rate;
  r.extra = {{"entities", entities}, {"in_flight", window}, {"failed", t.failed},
             {"baseline_failed", b.failed}};
  return {r};
}

} // namespace

TROUPE_BENCHMARK("entity_ask_remote",
                 "asks to 10k sharded entities in another process vs raw request/response over "
                 "troupe's transport",
                 run);
