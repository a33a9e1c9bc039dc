// troupe-test-transport-peer [--key=value ...]: a node in its own process for the
// multi-process transport tests. Takes config flags (e.g. --node.port=7355),
// starts the transport, serves the test actors ("echo", "sink", "blackhole",
// "relay"), prints
//
//   READY <port> <incarnation as 16 hex digits>
//
// and runs until SIGTERM/SIGINT (then shuts down and exits 0) or until killed.
// Every ping the blackhole swallows prints "BLACKHOLE <count>".
#include "remote/remote_support.hpp"
#include "remote/test_actors.hpp"

#include <csignal>
#include <cstdio>

#include <pthread.h>

using namespace troupe;

int main(int argc, char** argv) {
  // Block the stop signals in every thread; main waits for them below.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  auto schema = node_config_keys();
  schema.add("log.level", config_type::string, std::string{"warn"}, "Lowest level written.");
  auto cfg = config::load(std::move(schema), argc, argv);
  if (!cfg) {
    std::fprintf(stderr, "transport-peer: %s\n", cfg.error().to_string().c_str());
    return 2;
  }
  auto n = node::start(std::move(*cfg));
  if (!n) {
    std::fprintf(stderr, "transport-peer: %s\n", n.error().to_string().c_str());
    return 2;
  }
  auto& nd = **n;
  if (auto r = test::add_test_message_types(nd); !r) {
    std::fprintf(stderr, "transport-peer: %s\n", r.error().to_string().c_str());
    return 2;
  }
  auto t = remote::transport::start(nd);
  if (!t) {
    std::fprintf(stderr, "transport-peer: %s\n", t.error().to_string().c_str());
    return 2;
  }
  auto swallowed = std::make_shared<std::atomic<int>>(0);
  auto serve = [&](const std::string& name, auto fun) {
    auto a = nd.spawn(name, fun);
    return a && (*t)->register_actor(name, *a);
  };
  bool ok = serve("echo", test::echo_actor) && serve("sink", test::sink_actor)
            && serve("relay", test::relay_actor)
            && serve("blackhole", [swallowed](caf::stateful_actor<test::blackhole_state>* self) {
                 return test::blackhole_actor(self, [swallowed] {
                   std::printf("BLACKHOLE %d\n", ++*swallowed);
                   std::fflush(stdout);
                 });
               });
  if (!ok) {
    std::fprintf(stderr, "transport-peer: cannot start the test actors\n");
    return 2;
  }
  std::printf("READY %u %016llx\n", static_cast<unsigned>((*t)->address().port),
              static_cast<unsigned long long>((*t)->identity().incarnation));
  std::fflush(stdout);
  int sig = 0;
  sigwait(&stop_signals, &sig);
  auto report = nd.shutdown();
  return report.clean ? 0 : 1;
}
