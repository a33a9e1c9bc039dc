// A man in the middle: accepts connections on 127.0.0.1 and relays each to a
// target, recording every byte in both directions, and on request flips one bit
// of what goes to the target. Tests point a node at it to see what the wire
// carries (is it encrypted?) and whether tampering is noticed.
#pragma once

#include "remote/raw_peer.hpp"

#include <atomic>
#include <mutex>
#include <string>
#include <thread>

namespace troupe::test {

class tcp_relay {
public:
  explicit tcp_relay(remote::node_address target) : target_(std::move(target)) {
    thread_ = std::thread{[this] { run(); }};
  }
  ~tcp_relay() {
    stop_ = true;
    thread_.join();
  }
  tcp_relay(const tcp_relay&) = delete;
  tcp_relay& operator=(const tcp_relay&) = delete;

  remote::node_address address() const { return listener_.address(); }

  /// Everything relayed so far, both directions.
  std::string seen() const {
    std::lock_guard<std::mutex> guard{mtx_};
    return seen_;
  }
  std::size_t bytes_relayed() const {
    std::lock_guard<std::mutex> guard{mtx_};
    return seen_.size();
  }

  /// Flips a bit in the next bytes relayed to the target.
  void corrupt_next() { corrupt_ = true; }

private:
  void run() {
    while (!stop_) {
      auto from = listener_.accept(std::chrono::milliseconds{50});
      if (from.fd() < 0)
        continue;
      auto to = raw_socket::connect_to(target_);
      relay(from, to);
    }
  }

  /// Pumps bytes both ways until either side closes or the relay stops.
  void relay(raw_socket& client, raw_socket& server) {
    while (!stop_) {
      pollfd p[2] = {{client.fd(), POLLIN, 0}, {server.fd(), POLLIN, 0}};
      if (::poll(p, 2, 50) <= 0)
        continue;
      for (int i = 0; i < 2; ++i) {
        if ((p[i].revents & (POLLIN | POLLHUP | POLLERR)) == 0)
          continue;
        auto& in = i == 0 ? client : server;
        auto& out = i == 0 ? server : client;
        auto got = in.read_some(std::chrono::milliseconds{0});
        if (!got)
          return;  // closed: the other side closes when `relay` returns
        if (got->empty())
          continue;
        {
          std::lock_guard<std::mutex> guard{mtx_};
          seen_.append(got->begin(), got->end());
        }
        if (i == 0 && corrupt_.exchange(false))
          (*got)[got->size() / 2] ^= 0x10;
        if (!out.write(*got))
          return;
      }
    }
  }

  remote::node_address target_;
  raw_listener listener_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> corrupt_{false};
  mutable std::mutex mtx_;
  std::string seen_;
  std::thread thread_;
};

} // namespace troupe::test
