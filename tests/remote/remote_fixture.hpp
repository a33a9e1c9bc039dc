// In-process remote tests: nodes with a started transport, and a recorder of peer
// events.
#pragma once

#include "remote/remote_support.hpp"
#include "remote/security_mode.hpp"
#include "remote/test_actors.hpp"
#include "support/node_fixture.hpp"
#include "support/wait.hpp"

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

/// Records a transport's peer events; tests wait on them.
class event_log {
public:
  /// Declare it after the node it watches: it unsubscribes when destroyed.
  explicit event_log(remote::transport& t) : t_(t) {
    id_ = t.subscribe([this](const remote::peer_event& e) {
      std::lock_guard<std::mutex> guard{mtx_};
      events_.push_back(e);
    });
  }
  ~event_log() { t_.unsubscribe(id_); }
  event_log(const event_log&) = delete;
  event_log& operator=(const event_log&) = delete;

  std::vector<remote::peer_event> events() const {
    std::lock_guard<std::mutex> guard{mtx_};
    return events_;
  }

  /// Waits for an event matching `kind` (and `pred`); returns it.
  std::optional<remote::peer_event>
  wait_for(remote::peer_event::kind kind,
           std::function<bool(const remote::peer_event&)> pred = nullptr,
           std::chrono::milliseconds timeout = std::chrono::seconds{20}) const {
    std::optional<remote::peer_event> found;
    wait_until(
      [&] {
        std::lock_guard<std::mutex> guard{mtx_};
        for (auto& e : events_)
          if (e.what == kind && (!pred || pred(e))) {
            found = e;
            return true;
          }
        return false;
      },
      timeout);
    return found;
  }

  std::size_t count(remote::peer_event::kind kind) const {
    std::lock_guard<std::mutex> guard{mtx_};
    return static_cast<std::size_t>(
      std::count_if(events_.begin(), events_.end(), [&](auto& e) { return e.what == kind; }));
  }

private:
  remote::transport& t_;
  remote::transport::subscription id_ = 0;
  mutable std::mutex mtx_;
  std::vector<remote::peer_event> events_;
};

/// Captures warnings a node logs (tests assert on logged reasons).
class log_capture {
public:
  explicit log_capture(logger& log) : log_(log) {
    handle_ = log.add_sink([this](const log_record& r) {
      std::lock_guard<std::mutex> guard{mtx_};
      lines_.emplace_back(r.message);
    });
  }
  ~log_capture() { log_.remove_sink(handle_); }

  /// How many lines contain `text`.
  std::size_t count(std::string_view text) const {
    std::lock_guard<std::mutex> guard{mtx_};
    return static_cast<std::size_t>(std::count_if(lines_.begin(), lines_.end(), [&](auto& l) {
      return l.find(text) != std::string::npos;
    }));
  }
  bool contains(std::string_view text) const {
    std::lock_guard<std::mutex> guard{mtx_};
    for (auto& l : lines_)
      if (l.find(text) != std::string::npos)
        return true;
    return false;
  }
  bool wait_for(std::string_view text, std::chrono::milliseconds timeout = std::chrono::seconds{10}) const {
    return wait_until([&] { return contains(text); }, timeout);
  }

private:
  logger& log_;
  int handle_ = 0;
  mutable std::mutex mtx_;
  std::vector<std::string> lines_;
};

inline std::uint64_t counter(node& n, std::string_view name, const metric_labels& labels = {}) {
  return n.metrics().counter_value(name, labels).value_or(0);
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
