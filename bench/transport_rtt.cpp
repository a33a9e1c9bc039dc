// transport_rtt: request/response round trips of a 100-byte message between two
// processes, one at a time, over troupe's transport, versus a raw TCP ping-pong
// (blocking send/recv of the same 100 bytes, TCP_NODELAY) in the same run. Reports
// p50 (the bar) and p99; ratio = baseline latency / troupe latency (higher is
// better). Each variant runs three interleaved rounds of seconds / 3; the round with
// the median p50 of each is compared.
//
// The main line measures the transport: the requester is a blocking actor on its
// own thread (waiting with a receive timeout) and the responder a detached actor,
// so each delivery wakes a thread directly. The `scheduled` line uses event-based
// actors on the node's scheduler instead (a CAF request with a timeout, as every
// cross-node ask of an entity): what troupe's scheduler costs on top (see
// actors/src/scheduler.hpp). Both nodes run with the defaults a user gets.
#include "transport_common.hpp"

#include "troupe/actors/ask.hpp"

#include <algorithm>
#include <future>

namespace troupe::bench::transport {

namespace {

constexpr const char* bench_name = "transport_rtt";
constexpr int warmup = 2000;
constexpr std::size_t max_samples = 200000;

struct pinger_state {
  std::vector<double> samples;
  int warm = 0;
  double sent_at = 0;
  double deadline = 0;
};

/// Asks `dest` one request at a time, recording each round trip in microseconds.
caf::behavior pinger(caf::stateful_actor<pinger_state>* self, caf::actor dest, caf::message msg,
                     double seconds, std::promise<std::vector<double>>* done) {
  self->state.samples.reserve(max_samples);
  return {
    [=](go_atom) {
      auto& st = self->state;
      auto now = now_seconds();
      if (st.deadline == 0)
        st.deadline = now + seconds;
      if (now >= st.deadline || st.samples.size() >= max_samples) {
        done->set_value(std::move(st.samples));
        self->quit();
        return;
      }
      st.sent_at = now;
      self->request(dest, std::chrono::seconds{10}, msg)
        .then(
          [=](const bench_msg&) {
            auto& s = self->state;
            if (s.warm < warmup)
              ++s.warm;
            else
              s.samples.push_back((now_seconds() - s.sent_at) * 1e6);
            self->send(self, go_atom::value);
          },
          [=](caf::error& err) {
            std::fprintf(stderr, "transport_rtt: %s\n", self->system().render(err).c_str());
            done->set_value({});
            self->quit();
          });
    },
  };
}

/// Event-based requester, scheduled responder.
std::vector<double> run_troupe_scheduled(double seconds) {
  peer_process peer{bench_name, "troupe_echo_scheduled"};
  bench_node me;
  auto dest = me.t->actor_for(remote::node_address{"127.0.0.1", peer.port()}, "echo");
  std::promise<std::vector<double>> done;
  auto p = me.n->spawn("pinger", pinger, dest,
                       caf::make_message(bench_msg{std::string(payload_size, 'r')}), seconds,
                       &done);
  if (!p)
    throw std::runtime_error(p.error().to_string());
  caf::anon_send(*p, go_atom::value);
  return done.get_future().get();
}

/// Blocking requester on this thread, detached responder.
std::vector<double> run_troupe(double seconds) {
  peer_process peer{bench_name, "troupe_echo_detached"};
  bench_node me;
  auto dest = me.t->actor_for(remote::node_address{"127.0.0.1", peer.port()}, "echo");
  auto msg = caf::make_message(bench_msg{std::string(payload_size, 'r')});
  std::vector<double> samples;
  samples.reserve(max_samples);
  {
    caf::scoped_actor self{me.n->system()};
    double deadline = 0;
    bool failed = false;
    for (int i = 0; !failed; ++i) {
      auto t0 = now_seconds();
      if (i == warmup)
        deadline = t0 + seconds;
      if (i >= warmup && (t0 >= deadline || samples.size() >= max_samples))
        break;
      // The timeout is the waiting thread's own (receive ... after), not a
      // request timeout: CAF 0.17 arms those on its clock thread, which costs a
      // thread wake-up per request (~15-20 us here) that is not the transport's.
      auto handle = self->request(dest, caf::infinite, msg);
      caf::blocking_actor::accept_one_cond one;
      self->varargs_receive(
        one, handle.id(),
        [&](const bench_msg&) {
          if (i >= warmup)
            samples.push_back((now_seconds() - t0) * 1e6);
        },
        [&](caf::error& err) {
          std::fprintf(stderr, "transport_rtt: %s\n", me.n->system().render(err).c_str());
          failed = true;
        },
        caf::after(std::chrono::seconds{10}) >> [&] {
          std::fprintf(stderr, "transport_rtt: no response within 10 s\n");
          failed = true;
        });
    }
  }
  release_thread_caf_state();
  return samples;
}

std::vector<double> run_raw(double seconds) {
  peer_process peer{bench_name, "raw_echo"};
  int fd = raw_connect(peer.port());
  char buf[payload_size];
  std::memset(buf, 'r', sizeof(buf));
  std::vector<double> samples;
  samples.reserve(max_samples);
  double deadline = 0;
  for (int i = 0;; ++i) {
    auto t0 = now_seconds();
    if (i == warmup)
      deadline = t0 + seconds;
    if (i >= warmup && (t0 >= deadline || samples.size() >= max_samples))
      break;
    if (!write_all(fd, buf, sizeof(buf)) || !read_all(fd, buf, sizeof(buf)))
      throw std::runtime_error("raw echo closed");
    if (i >= warmup)
      samples.push_back((now_seconds() - t0) * 1e6);
  }
  ::close(fd);
  return samples;
}

void raw_echo_role() {
  std::uint16_t port = 0;
  int lfd = raw_listen(port);
  announce_port(port);
  int fd = ::accept(lfd, nullptr, nullptr);
  no_delay(fd);
  char buf[payload_size];
  while (read_all(fd, buf, sizeof(buf)) && write_all(fd, buf, sizeof(buf)))
    ;
  ::close(fd);
  ::close(lfd);
  wait_for_parent();
}

std::vector<result> transport_rtt(const options& opts) {
  auto role = peer_role();
  if (!role.empty()) {
    if (role == "troupe_echo_detached")
      serve_actor<caf::detached>("echo", bench_echo);
    else if (role == "troupe_echo_scheduled")
      serve_actor("echo", bench_echo);
    else if (role == "raw_echo")
      raw_echo_role();
    return {};
  }
  // TROUPE_BENCH_PART=troupe|scheduled|raw runs one part alone (for profiling).
  auto part = std::string{std::getenv("TROUPE_BENCH_PART") ? std::getenv("TROUPE_BENCH_PART") : ""};
  auto wanted = [&](const char* p) { return part.empty() || part == p; };
  // Three interleaved rounds per variant; the round with the median p50 of each is
  // compared (the machine is shared), every round's p50 is listed.
  constexpr int rounds = 3;
  auto round_seconds = opts.seconds / rounds;
  struct round {
    double p50 = 0;
    double p99 = 0;
    std::size_t samples = 0;
  };
  struct variant {
    std::vector<round> runs;
    void add(std::vector<double> xs) {
      if (xs.empty())
        return;
      auto n = xs.size();
      auto r50 = percentile(xs, 50);
      runs.push_back({r50, percentile(xs, 99), n});
    }
    round median() {
      std::sort(runs.begin(), runs.end(), [](auto& a, auto& b) { return a.p50 < b.p50; });
      return runs.empty() ? round{} : runs[runs.size() / 2];
    }
    nlohmann::json all() const {
      auto j = nlohmann::json::array();
      for (auto& r : runs)
        j.push_back(r.p50);
      return j;
    }
  };
  variant raw_runs;
  variant troupe_runs;
  variant scheduled_runs;
  for (int i = 0; i < rounds; ++i) {
    if (wanted("raw"))
      raw_runs.add(run_raw(round_seconds));
    if (wanted("troupe"))
      troupe_runs.add(run_troupe(round_seconds));
    if (wanted("scheduled"))
      scheduled_runs.add(run_troupe_scheduled(round_seconds));
  }
  auto raw = raw_runs.median();
  auto troupe = troupe_runs.median();
  auto scheduled = scheduled_runs.median();
  result p50{"transport_rtt", "us", troupe.p50, raw.p50, true};
  p50.extra["troupe_p99_us"] = troupe.p99;
  p50.extra["baseline_p99_us"] = raw.p99;
  p50.extra["p99_ratio"] = troupe.p99 > 0 ? raw.p99 / troupe.p99 : 0.0;
  p50.extra["troupe_rounds_p50_us"] = troupe_runs.all();
  p50.extra["baseline_rounds_p50_us"] = raw_runs.all();
  p50.extra["troupe_samples"] = troupe.samples;
  p50.extra["troupe_is"] = "blocking requester (receive timeout), detached responder";
  p50.extra["baseline_is"] = "raw TCP ping-pong between two processes";
  p50.extra["config"] = "defaults";
  result p99{"transport_rtt_p99", "us", troupe.p99, raw.p99, true};
  result sched{"transport_rtt_scheduled", "us", scheduled.p50, raw.p50, true};
  sched.extra["troupe_p99_us"] = scheduled.p99;
  sched.extra["troupe_rounds_p50_us"] = scheduled_runs.all();
  sched.extra["troupe_is"] = "event-based requester and responder on the node's scheduler";
  sched.extra["config"] = "defaults";
  return {p50, p99, sched};
}

} // namespace

TROUPE_BENCHMARK("transport_rtt",
                 "request/response between two processes over troupe's transport vs a raw TCP "
                 "ping-pong (p50, p99)",
                 transport_rtt);

} // namespace troupe::bench::transport
