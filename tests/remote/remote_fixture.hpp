// In-process remote tests: nodes with a started transport, and a recorder of peer
// events.
#pragma once

#include "remote/remote_support.hpp"
#include "remote/security_mode.hpp"
#include "remote/test_actors.hpp"
#include "support/log_capture.hpp"
#include "support/node_fixture.hpp"
#include "support/wait.hpp"

#include "troupe/actors/ask.hpp"

#include <doctest/doctest.h>

#include <fstream>
#include <functional>
#include <mutex>

namespace troupe::test {

struct remote_node {
  std::unique_ptr<node> n;
  std::shared_ptr<remote::transport> t;

  /// A node with the running variant's security settings (security_mode.hpp),
  /// then `overrides`.
  explicit remote_node(std::vector<std::string> overrides = {},
                       remote::transport_options opts = {}) {
    auto settings = security_overrides();
    settings.insert(settings.end(), overrides.begin(), overrides.end());
    n = make_node(std::move(settings));
    REQUIRE(add_test_message_types(*n));
    auto started = remote::transport::start(*n, std::move(opts));
    REQUIRE(started);
    t = *started;
  }

  template <class F>
  caf::actor serve(const std::string& name, F fun) {
    auto a = n->spawn(name, fun);
    REQUIRE(a);
    REQUIRE(t->register_actor(name, *a));
    return *a;
  }

  const remote::node_address& address() const { return t->address(); }
  caf::actor_system& sys() { return n->system(); }
};

/// Records what a transport reports through one subscription (events, heartbeat
/// samples, packets); tests wait on it. Declare it after the node it watches: it
/// unsubscribes when destroyed.
template <class T>
class recorder {
public:
  /// `subscribe(transport, callback)` subscribes `callback` and returns the id.
  template <class Subscribe>
  recorder(remote::transport& t, Subscribe subscribe) : t_(t) {
    id_ = subscribe(t, [this](const T& x) {
      std::lock_guard<std::mutex> guard{mtx_};
      items_.push_back(x);
    });
  }
  ~recorder() { stop(); }
  recorder(const recorder&) = delete;
  recorder& operator=(const recorder&) = delete;

  std::vector<T> items() const {
    std::lock_guard<std::mutex> guard{mtx_};
    return items_;
  }
  std::size_t size() const {
    std::lock_guard<std::mutex> guard{mtx_};
    return items_.size();
  }
  bool wait_for_count(std::size_t n,
                      std::chrono::milliseconds timeout = std::chrono::seconds{20}) const {
    return wait_until([&] { return size() >= n; }, timeout);
  }
  /// Unsubscribes now: nothing is recorded after this returns.
  void stop() {
    if (id_ != 0)
      t_.unsubscribe(std::exchange(id_, 0));
  }

  /// The first item matching `pred`, waiting for it.
  std::optional<T> wait_for_match(const std::function<bool(const T&)>& pred,
                                  std::chrono::milliseconds timeout) const {
    std::optional<T> found;
    wait_until(
      [&] {
        std::lock_guard<std::mutex> guard{mtx_};
        for (auto& x : items_)
          if (pred(x)) {
            found = x;
            return true;
          }
        return false;
      },
      timeout);
    return found;
  }

private:
  remote::transport& t_;
  remote::transport::subscription id_ = 0;
  mutable std::mutex mtx_;
  std::vector<T> items_;
};

/// Records a transport's peer events.
class event_log : public recorder<remote::peer_event> {
public:
  explicit event_log(remote::transport& t)
    : recorder(t, [](remote::transport& x, auto fn) { return x.subscribe(std::move(fn)); }) {}

  std::vector<remote::peer_event> events() const { return items(); }

  /// Waits for an event matching `kind` (and `pred`); returns it.
  std::optional<remote::peer_event>
  wait_for(remote::peer_event::kind kind,
           std::function<bool(const remote::peer_event&)> pred = nullptr,
           std::chrono::milliseconds timeout = std::chrono::seconds{20}) const {
    return wait_for_match([&](auto& e) { return e.what == kind && (!pred || pred(e)); },
                          timeout);
  }

  std::size_t count(remote::peer_event::kind kind) const {
    auto all = items();
    return static_cast<std::size_t>(
      std::count_if(all.begin(), all.end(), [&](auto& e) { return e.what == kind; }));
  }
};

/// The packets of one channel.
class packet_log : public recorder<remote::packet> {
public:
  packet_log(remote::transport& t, std::string channel)
    : recorder(t, [channel](remote::transport& x, auto fn) {
        return x.subscribe_packets(channel, std::move(fn));
      }) {}
};

/// The heartbeat samples of a transport.
class heartbeat_log : public recorder<remote::heartbeat_sample> {
public:
  explicit heartbeat_log(remote::transport& t)
    : recorder(t, [](remote::transport& x, auto fn) {
        return x.subscribe_heartbeats(std::move(fn));
      }) {}
};

inline std::uint64_t counter(node& n, std::string_view name, const metric_labels& labels = {}) {
  return n.metrics().counter_value(name, labels).value_or(0);
}

/// troupe_transport_connection_errors_total{reason}.
inline std::uint64_t connection_errors(node& n, std::string_view reason) {
  return counter(n, "troupe_transport_connection_errors_total", {{"reason", std::string{reason}}});
}

/// troupe_transport_dropped_messages_total{reason}.
inline std::uint64_t dropped_messages(node& n, std::string_view reason) {
  return counter(n, "troupe_transport_dropped_messages_total", {{"reason", std::string{reason}}});
}

/// `a` followed by `b` (settings lists).
inline std::vector<std::string> with(std::vector<std::string> a, const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

/// Reconnects within milliseconds (tests of losses and restarts).
inline const std::vector<std::string> quick_backoff{"transport.reconnect-backoff-min=10ms",
                                                    "transport.reconnect-backoff-max=50ms"};

/// What a sink (test_actors.hpp: sink) has received.
inline sink_stats stats_of(caf::actor_system& sys, const caf::actor& sink) {
  auto s = ask<sink_stats>(sys, sink, std::chrono::seconds{10}, sink_stats_request{});
  REQUIRE(s);
  return *s;
}

/// The node still answers a well-behaved peer (a new node with `settings`).
inline void serves_a_good_peer(remote_node& target, std::vector<std::string> settings = {}) {
  settings.push_back("node.name=good");
  remote_node good{settings};
  auto r = ask<pong>(good.sys(), good.t->actor_for(target.address(), "echo"),
                     std::chrono::seconds{10}, ping{1, "ok"});
  REQUIRE(r);
  CHECK(r->text == "ok");
}

/// Resident set size of this process in KiB (Linux).
inline std::size_t rss_kib() {
  std::ifstream in{"/proc/self/status"};
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmRSS:", 0) == 0)
      return std::stoul(line.substr(6));
  return 0;
}

} // namespace troupe::test
