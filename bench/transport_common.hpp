// Shared by bench/transport_*.cpp: the peer process (troupe-bench re-executing
// itself), the 100-byte benchmark message, and raw-socket helpers.
//
// A benchmark that needs a peer starts `troupe-bench <its name>` again with
// TROUPE_BENCH_PEER=<role> in the environment; its function sees the variable,
// plays the role and returns no results. The peer prints "PORT <n>" when it
// listens and stops when its stdin closes (the parent dies or is done).
#pragma once

#include "harness.hpp"

#include "troupe/actors/node.hpp"
#include "troupe/actors/remote/message_types.hpp"
#include "troupe/actors/remote/transport.hpp"

#include <caf/all.hpp>
#include <caf/io/all.hpp>
#include <nlohmann/json.hpp>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

namespace troupe::bench::transport {

/// The message both transports carry: 100 bytes of payload.
struct bench_msg {
  std::string payload;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(bench_msg, payload)

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, bench_msg& x) {
  return f(caf::meta::type_name("bench_msg"), x.payload);
}

using done_atom = caf::atom_constant<caf::atom("b_done")>;
using go_atom = caf::atom_constant<caf::atom("b_go")>;

inline constexpr std::size_t payload_size = 100;

/// The peer role this process plays, or "" in the parent.
inline std::string peer_role() {
  auto r = std::getenv("TROUPE_BENCH_PEER");
  return r ? r : "";
}

/// Blocks until stdin closes (the parent is done with this peer).
inline void wait_for_parent() {
  char buf[256];
  while (::read(STDIN_FILENO, buf, sizeof(buf)) > 0)
    ;
}

inline void announce_port(std::uint16_t port) {
  std::printf("PORT %u\n", static_cast<unsigned>(port));
  std::fflush(stdout);
}

/// A peer process: troupe-bench re-executed in `role` for benchmark `bench`.
class peer_process {
public:
  peer_process(const std::string& bench, const std::string& role) {
    int in[2];
    int out[2];
    if (::pipe2(in, O_CLOEXEC) != 0 || ::pipe2(out, O_CLOEXEC) != 0)
      throw std::runtime_error("pipe2 failed");
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in[0], STDIN_FILENO);
    posix_spawn_file_actions_adddup2(&fa, out[1], STDOUT_FILENO);
    std::vector<std::string> env_store;
    for (char** e = environ; *e != nullptr; ++e)
      if (std::strncmp(*e, "TROUPE_BENCH_PEER=", 18) != 0)
        env_store.emplace_back(*e);
    env_store.push_back("TROUPE_BENCH_PEER=" + role);
    std::vector<char*> envp;
    for (auto& e : env_store)
      envp.push_back(e.data());
    envp.push_back(nullptr);
    std::string exe = "/proc/self/exe";
    std::string name = bench;
    char* argv[] = {exe.data(), name.data(), nullptr};
    if (posix_spawn(&pid_, exe.c_str(), &fa, nullptr, argv, envp.data()) != 0)
      throw std::runtime_error("posix_spawn failed");
    posix_spawn_file_actions_destroy(&fa);
    ::close(in[0]);
    ::close(out[1]);
    stdin_ = in[1];
    stdout_ = out[0];
    port_ = read_port();
  }

  ~peer_process() {
    ::close(stdin_);  // the peer shuts down on EOF
    int status = 0;
    bool exited = false;
    for (int i = 0; i < 500 && !exited; ++i) {
      exited = ::waitpid(pid_, &status, WNOHANG) == pid_;
      if (!exited)
        ::poll(nullptr, 0, 10);  // reaping has no fd to wait on
    }
    if (!exited) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, &status, 0);
    }
    ::close(stdout_);
  }

  std::uint16_t port() const { return port_; }
  pid_t pid() const { return pid_; }

private:
  std::uint16_t read_port() {
    std::string line;
    char c = 0;
    for (;;) {
      pollfd p{stdout_, POLLIN, 0};
      if (::poll(&p, 1, 30000) <= 0 || ::read(stdout_, &c, 1) != 1)
        throw std::runtime_error("the benchmark peer did not report its port");
      if (c == '\n')
        break;
      line += c;
    }
    if (line.rfind("PORT ", 0) != 0)
      throw std::runtime_error("unexpected line from the benchmark peer: " + line);
    return static_cast<std::uint16_t>(std::stoi(line.substr(5)));
  }

  pid_t pid_ = -1;
  int stdin_ = -1;
  int stdout_ = -1;
  std::uint16_t port_ = 0;
};

/// A troupe node for benchmarks: the defaults a user gets (quiet logging aside),
/// the message types registered and the transport started.
struct bench_node {
  std::unique_ptr<node> n;
  std::shared_ptr<remote::transport> t;

  explicit bench_node(std::vector<std::string> overrides = {}) {
    config cfg{node_config_keys()};
    (void) cfg.set_text("log.level", "warn");
    for (auto& kv : overrides) {
      auto eq = kv.find('=');
      if (auto r = cfg.set_text(kv.substr(0, eq), kv.substr(eq + 1)); !r)
        throw std::runtime_error(r.error().to_string());
    }
    auto started = node::start(std::move(cfg));
    if (!started)
      throw std::runtime_error(started.error().to_string());
    n = std::move(*started);
    if (auto r = remote::add_message_type<bench_msg>(*n, "bench.msg"); !r)
      throw std::runtime_error(r.error().to_string());
    auto tr = remote::transport::start(*n);
    if (!tr)
      throw std::runtime_error(tr.error().to_string());
    t = *tr;
  }
};

/// Answers every benchmark message with itself.
inline caf::behavior bench_echo(caf::event_based_actor*) {
  return {[](const bench_msg& m) { return m; }};
}

/// A peer's role: a troupe node that serves `fun` under `name` until the parent is
/// done (spawned with spawn options `Os`).
template <caf::spawn_options Os = caf::no_spawn_options, class F>
void serve_actor(const std::string& name, F fun) {
  bench_node me;
  auto a = me.n->spawn<Os>(name, fun);
  if (!a || !me.t->register_actor(name, *a))
    throw std::runtime_error("cannot start the actor '" + name + "'");
  announce_port(me.t->address().port);
  wait_for_parent();
}

/// CAF's own configuration for the remoting baseline: the middleman, the message
/// type, and as many scheduler threads as troupe's default.
struct caf_bench_config : caf::actor_system_config {
  caf_bench_config() {
    load<caf::io::middleman>();
    add_message_type<bench_msg>("bench_msg");
    set("scheduler.max-threads", static_cast<size_t>(troupe::default_scheduler_threads()));
  }
};

// -- raw sockets ----------------------------------------------------------------------

inline int raw_listen(std::uint16_t& port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0 || ::listen(fd, 4) != 0)
    throw std::runtime_error("raw listen failed");
  socklen_t len = sizeof(sa);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len);
  port = ntohs(sa.sin_port);
  return fd;
}

inline void no_delay(int fd) {
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

inline int raw_connect(std::uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0)
    throw std::runtime_error("raw connect failed");
  no_delay(fd);
  return fd;
}

inline bool write_all(int fd, const void* data, std::size_t n) {
  auto p = static_cast<const char*>(data);
  while (n > 0) {
    auto w = ::send(fd, p, n, MSG_NOSIGNAL);
    if (w <= 0)
      return false;
    p += w;
    n -= static_cast<std::size_t>(w);
  }
  return true;
}

inline bool read_all(int fd, void* data, std::size_t n) {
  auto p = static_cast<char*>(data);
  while (n > 0) {
    auto r = ::recv(fd, p, n, 0);
    if (r <= 0)
      return false;
    p += r;
    n -= static_cast<std::size_t>(r);
  }
  return true;
}

/// Peak resident set size of this process in MiB.
inline double peak_rss_mib() {
  std::ifstream in{"/proc/self/status"};
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmHWM:", 0) == 0)
      return std::stod(line.substr(6)) / 1024.0;
  return 0;
}

} // namespace troupe::bench::transport
