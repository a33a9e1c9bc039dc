// transport_throughput: one-way 100-byte messages from an actor in this process to
// an actor in another, over troupe's transport versus CAF 0.17.6 remoting
// (middleman publish / remote_actor) in the same run; a second line compares with
// a raw loopback socket that batches frames into 64 KiB writes.
//
// Both senders respect flow control, so neither measures a backlog piling up in
// memory: troupe's sender waits for the `writable` event when the transport
// refuses a send; CAF has no backpressure, so its sender keeps at most two
// 10,000-message windows unconfirmed (a request after each window). A rate is
// the messages the receiving actor counted / the time until that count came back.
// Each transport runs three interleaved rounds of `seconds` (a fresh peer process
// per round); the median round of each is compared, all rounds are listed.
#include "transport_common.hpp"

#include "troupe/actors/ask.hpp"

#include <algorithm>
#include <cmath>
#include <future>

namespace troupe::bench::transport {

namespace {

constexpr const char* bench_name = "transport_throughput";

struct run_result {
  std::uint64_t count = 0;
  double seconds = 0;
  double rate() const { return seconds > 0 ? static_cast<double>(count) / seconds : 0; }
};

struct sink_state {
  std::uint64_t count = 0;
};

caf::behavior counting_sink(caf::stateful_actor<sink_state>* self) {
  return {
    [=](const bench_msg&) { ++self->state.count; },
    [=](done_atom) { return self->state.count; },
  };
}

caf::message make_bench_message() {
  return caf::make_message(bench_msg{std::string(payload_size, 'm')});
}

// -- troupe ---------------------------------------------------------------------------

struct troupe_sender_state {
  double start = 0;
  double deadline = 0;
  bool waiting = false;
};

/// Sends until `seconds` passed (pausing while the transport refuses), then asks
/// the sink for its count; the request is queued behind every message sent.
caf::behavior troupe_sender(caf::stateful_actor<troupe_sender_state>* self,
                            remote::remote_actor dest, caf::actor dest_handle, caf::message msg,
                            double seconds, std::promise<run_result>* done) {
  auto finish = [=] {
    self->request(dest_handle, std::chrono::seconds{120}, done_atom::value)
      .then(
        [=](std::uint64_t count) {
          done->set_value({count, now_seconds() - self->state.start});
          self->quit();
        },
        [=](caf::error& err) {
          std::fprintf(stderr, "transport_throughput: %s\n", self->system().render(err).c_str());
          done->set_value({});
          self->quit();
        });
  };
  auto send_batch = [=] {
    auto& st = self->state;
    if (now_seconds() >= st.deadline)
      return finish();
    for (int i = 0; i < 1024; ++i) {
      if (auto r = dest.send_message(msg); !r) {
        if (r.error().code() != errc::overloaded) {
          std::fprintf(stderr, "transport_throughput: %s\n", r.error().to_string().c_str());
          return finish();
        }
        st.waiting = true;  // the writable event resumes
        return;
      }
    }
    self->send(self, go_atom::value);
  };
  return {
    [=](go_atom) {
      if (self->state.start == 0) {
        self->state.start = now_seconds();
        self->state.deadline = self->state.start + seconds;
      }
      send_batch();
    },
    [=](const remote::peer_event& e) {
      if (e.what == remote::peer_event::kind::writable && self->state.waiting) {
        self->state.waiting = false;
        send_batch();
      }
    },
  };
}

run_result run_troupe(double seconds, nlohmann::json& extra) {
  peer_process peer{bench_name, "troupe_sink"};
  bench_node me;
  remote::node_address addr{"127.0.0.1", peer.port()};
  auto handle = me.t->actor_for(addr, "sink");
  // Connect before measuring.
  if (!ask<std::uint64_t>(me.n->system(), handle, std::chrono::seconds{10}, done_atom::value))
    throw std::runtime_error("the troupe peer does not answer");
  auto& metrics = me.n->metrics();
  auto frames0 = metrics.counter_value("troupe_transport_frames_sent_total").value_or(0);
  auto writes0 = metrics.counter_value("troupe_transport_writes_total").value_or(0);
  std::promise<run_result> done;
  auto sender = me.n->spawn("sender", troupe_sender, me.t->remote(addr, "sink"), handle,
                            make_bench_message(), seconds, &done);
  if (!sender)
    throw std::runtime_error(sender.error().to_string());
  me.t->subscribe(*sender);
  caf::anon_send(*sender, go_atom::value);
  auto result = done.get_future().get();
  auto frames = metrics.counter_value("troupe_transport_frames_sent_total").value_or(0) - frames0;
  auto writes = metrics.counter_value("troupe_transport_writes_total").value_or(0) - writes0;
  extra["troupe_frames_per_write"] = writes > 0 ? static_cast<double>(frames) / writes : 0.0;
  extra["troupe_refused_sends"] =
    metrics.counter_value("troupe_transport_send_rejected_total", {{"reason", "overloaded"}})
      .value_or(0);
  return result;
}

// -- CAF remoting -------------------------------------------------------------------------

struct caf_sender_state {
  double start = 0;
  double deadline = 0;
  std::uint64_t sent = 0;
  int unconfirmed = 0;
  bool waiting = false;
};

constexpr std::uint64_t caf_window = 10000;

caf::behavior caf_sender(caf::stateful_actor<caf_sender_state>* self, caf::actor dest,
                         caf::message msg, double seconds, std::promise<run_result>* done) {
  auto finish = [=] {
    self->request(dest, std::chrono::seconds{120}, done_atom::value)
      .then(
        [=](std::uint64_t count) {
          done->set_value({count, now_seconds() - self->state.start});
          self->quit();
        },
        [=](caf::error&) {
          done->set_value({});
          self->quit();
        });
  };
  return {
    [=](go_atom) {
      auto& st = self->state;
      if (st.start == 0) {
        st.start = now_seconds();
        st.deadline = st.start + seconds;
      }
      if (now_seconds() >= st.deadline)
        return finish();
      for (int i = 0; i < 1000; ++i)
        self->send(dest, msg);
      st.sent += 1000;
      if (st.sent % caf_window == 0) {
        ++st.unconfirmed;
        self->request(dest, std::chrono::seconds{120}, done_atom::value)
          .then(
            [=](std::uint64_t) {
              --self->state.unconfirmed;
              if (self->state.waiting) {
                self->state.waiting = false;
                self->send(self, go_atom::value);
              }
            },
            [=](caf::error&) { finish(); });
        if (st.unconfirmed >= 2) {
          st.waiting = true;
          return;
        }
      }
      self->send(self, go_atom::value);
    },
  };
}

run_result run_caf(double seconds) {
  peer_process peer{bench_name, "caf_sink"};
  caf_bench_config cfg;
  caf::actor_system sys{cfg};
  auto dest = sys.middleman().remote_actor("127.0.0.1", peer.port());
  if (!dest)
    throw std::runtime_error("remote_actor: " + sys.render(dest.error()));
  std::promise<run_result> done;
  auto sender = sys.spawn(caf_sender, *dest, make_bench_message(), seconds, &done);
  caf::anon_send(sender, go_atom::value);
  auto result = done.get_future().get();
  caf::anon_send_exit(*dest, caf::exit_reason::user_shutdown);
  return result;
}

void caf_sink_role() {
  caf_bench_config cfg;
  caf::actor_system sys{cfg};
  auto sink = sys.spawn(counting_sink);
  auto port = sys.middleman().publish(sink, 0, "127.0.0.1", true);
  if (!port)
    throw std::runtime_error("publish: " + sys.render(port.error()));
  announce_port(*port);
  wait_for_parent();
  caf::anon_send_exit(sink, caf::exit_reason::user_shutdown);
}

// -- raw batched socket -----------------------------------------------------------------------

/// Frames are u32 length + payload; a frame of length 0 asks for the count.
run_result run_raw(double seconds) {
  peer_process peer{bench_name, "raw_sink"};
  int fd = raw_connect(peer.port());
  constexpr std::size_t frame = 4 + payload_size;
  std::vector<char> batch((64 * 1024 / frame) * frame);
  for (std::size_t off = 0; off < batch.size(); off += frame) {
    std::uint32_t len = htonl(payload_size);
    std::memcpy(batch.data() + off, &len, 4);
    std::memset(batch.data() + off + 4, 'm', payload_size);
  }
  auto start = now_seconds();
  auto deadline = start + seconds;
  while (now_seconds() < deadline)
    if (!write_all(fd, batch.data(), batch.size()))
      throw std::runtime_error("raw sink closed");
  std::uint32_t marker = 0;
  std::uint64_t count = 0;
  if (!write_all(fd, &marker, 4) || !read_all(fd, &count, sizeof(count)))
    throw std::runtime_error("raw sink did not answer");
  auto elapsed = now_seconds() - start;
  ::close(fd);
  return {count, elapsed};
}

void raw_sink_role() {
  std::uint16_t port = 0;
  int lfd = raw_listen(port);
  announce_port(port);
  int fd = ::accept(lfd, nullptr, nullptr);
  std::vector<char> buf(1 << 20);
  std::size_t have = 0;
  std::uint64_t count = 0;
  for (;;) {
    auto n = ::recv(fd, buf.data() + have, buf.size() - have, 0);
    if (n <= 0)
      break;
    have += static_cast<std::size_t>(n);
    std::size_t pos = 0;
    while (have - pos >= 4) {
      std::uint32_t len = 0;
      std::memcpy(&len, buf.data() + pos, 4);
      len = ntohl(len);
      if (len == 0) {
        write_all(fd, &count, sizeof(count));
        pos += 4;
        continue;
      }
      if (have - pos < 4 + len)
        break;
      ++count;
      pos += 4 + len;
    }
    std::memmove(buf.data(), buf.data() + pos, have - pos);
    have -= pos;
  }
  ::close(fd);
  ::close(lfd);
  wait_for_parent();
}

// -- the benchmark ----------------------------------------------------------------------------

std::vector<result> transport_throughput(const options& opts) {
  auto role = peer_role();
  if (!role.empty()) {
    if (role == "troupe_sink")
      serve_actor("sink", counting_sink);
    else if (role == "caf_sink")
      caf_sink_role();
    else if (role == "raw_sink")
      raw_sink_role();
    return {};
  }
  // TROUPE_BENCH_PART=troupe|caf|raw runs one part alone (for profiling).
  auto part = std::string{std::getenv("TROUPE_BENCH_PART") ? std::getenv("TROUPE_BENCH_PART") : ""};
  auto wanted = [&](const char* p) { return part.empty() || part == p; };
  // Three interleaved rounds per transport, the median of each compared: the
  // machine is shared, and a neighbour's burst should not decide the comparison.
  constexpr int rounds = 3;
  auto round_seconds = opts.seconds;  // shorter rounds measure the ramp-up
  nlohmann::json extra = nlohmann::json::object();
  std::vector<run_result> caf_runs;
  std::vector<run_result> troupe_runs;
  for (int i = 0; i < rounds; ++i) {
    if (wanted("caf"))
      caf_runs.push_back(run_caf(round_seconds));
    if (wanted("troupe"))
      troupe_runs.push_back(run_troupe(round_seconds, extra));
  }
  auto median = [](std::vector<run_result>& runs, nlohmann::json& all) {
    std::sort(runs.begin(), runs.end(),
              [](const run_result& a, const run_result& b) { return a.rate() < b.rate(); });
    for (auto& r : runs)
      all.push_back(std::round(r.rate()));
    return runs.empty() ? run_result{} : runs[runs.size() / 2];
  };
  auto caf_rounds = nlohmann::json::array();
  auto troupe_rounds = nlohmann::json::array();
  auto caf = median(caf_runs, caf_rounds);
  auto troupe = median(troupe_runs, troupe_rounds);
  run_result raw;
  if (wanted("raw"))
    raw = run_raw(round_seconds);
  extra["troupe_rounds"] = troupe_rounds;
  extra["caf_rounds"] = caf_rounds;
  extra["message_bytes"] = payload_size;
  extra["config"] = "defaults";
  result vs_caf{"transport_throughput", "msgs/s", troupe.rate(), caf.rate()};
  vs_caf.extra = extra;
  vs_caf.extra["baseline_is"] = "CAF 0.17.6 remoting (publish/remote_actor)";
  result vs_raw{"transport_throughput_vs_raw_socket", "msgs/s", troupe.rate(), raw.rate()};
  vs_raw.extra["baseline_is"] = "raw loopback socket, 64 KiB batched writes (reference)";
  return {vs_caf, vs_raw};
}

} // namespace

TROUPE_BENCHMARK("transport_throughput",
                 "one-way 100-byte actor messages between two processes: troupe vs CAF remoting "
                 "(and vs a raw batched socket)",
                 transport_throughput);

} // namespace troupe::bench::transport
