// Raw TCP sockets that speak (or abuse) the wire protocol by hand: hostile clients
// and a fake peer that stops reading. Blocking POSIX calls with poll() deadlines.
#pragma once

#include "troupe/actors/remote/address.hpp"
#include "troupe/actors/remote/handshake.hpp"
#include "troupe/actors/remote/wire.hpp"

#include <doctest/doctest.h>

#include <chrono>
#include <optional>
#include <string>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

namespace troupe::test {

class raw_socket {
public:
  explicit raw_socket(int fd = -1) : fd_(fd) {}
  raw_socket(raw_socket&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  raw_socket& operator=(raw_socket&& other) noexcept {
    std::swap(fd_, other.fd_);
    return *this;
  }
  ~raw_socket() { close(); }

  /// Connects to `a`; from `source` (an address of the loopback network such as
  /// "127.0.0.2", so that the peer sees another source address) if given.
  static raw_socket connect_to(const remote::node_address& a, const std::string& source = {}) {
    raw_socket s{::socket(AF_INET, SOCK_STREAM, 0)};
    REQUIRE(s.fd_ >= 0);
    if (!source.empty()) {
      sockaddr_in from{};
      from.sin_family = AF_INET;
      REQUIRE(::inet_pton(AF_INET, source.c_str(), &from.sin_addr) == 1);
      REQUIRE(::bind(s.fd_, reinterpret_cast<sockaddr*>(&from), sizeof(from)) == 0);
    }
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(a.port);
    REQUIRE(::inet_pton(AF_INET, a.host.c_str(), &sa.sin_addr) == 1);
    REQUIRE(::connect(s.fd_, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) == 0);
    return s;
  }

  int fd() const { return fd_; }

  void close() {
    if (fd_ >= 0)
      ::close(std::exchange(fd_, -1));
  }

  /// Writes everything; false if the peer closed.
  bool write(remote::wire::byte_span data) {
    while (!data.empty()) {
      auto n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n <= 0)
        return false;
      data = data.subspan(static_cast<std::size_t>(n));
    }
    return true;
  }

  /// Reads what is available within `timeout`; nullopt on EOF or error, an empty
  /// vector on timeout.
  std::optional<remote::wire::bytes> read_some(std::chrono::milliseconds timeout) {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(timeout.count())) <= 0)
      return remote::wire::bytes{};
    remote::wire::bytes buf(64 * 1024);
    auto n = ::recv(fd_, buf.data(), buf.size(), 0);
    if (n <= 0)
      return std::nullopt;
    buf.resize(static_cast<std::size_t>(n));
    return buf;
  }

  /// Reads one whole frame (type + body appended to `frame`); false on EOF/timeout.
  bool read_frame(remote::wire::bytes& frame,
                  std::chrono::milliseconds timeout = std::chrono::seconds{10}) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      remote::wire::frame_view f{};
      std::size_t consumed = 0;
      error err;
      if (remote::wire::scan_frame(pending_, UINT32_MAX, f, consumed, err)
          == remote::wire::scan_status::frame) {
        frame.assign(pending_.begin(), pending_.begin() + static_cast<std::ptrdiff_t>(consumed));
        pending_.erase(pending_.begin(), pending_.begin() + static_cast<std::ptrdiff_t>(consumed));
        return true;
      }
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0)
        return false;
      auto got = read_some(left);
      if (!got)
        return false;
      pending_.insert(pending_.end(), got->begin(), got->end());
    }
  }

  /// True once the peer closed the connection (EOF or reset) within `timeout`;
  /// everything read meanwhile is discarded.
  bool closed_by_peer(std::chrono::milliseconds timeout = std::chrono::seconds{10}) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
      if (!read_some(left))
        return true;
    }
    return false;
  }

private:
  int fd_;
  remote::wire::bytes pending_;
};

class raw_listener {
public:
  raw_listener() {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(fd_ >= 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = 0;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) == 0);
    REQUIRE(::listen(fd_, 8) == 0);
    socklen_t len = sizeof(sa);
    REQUIRE(::getsockname(fd_, reinterpret_cast<sockaddr*>(&sa), &len) == 0);
    port_ = ntohs(sa.sin_port);
  }
  ~raw_listener() { ::close(fd_); }

  remote::node_address address() const { return {"127.0.0.1", port_}; }

  /// Accepts one connection within `timeout` (invalid socket on timeout).
  raw_socket accept(std::chrono::milliseconds timeout = std::chrono::seconds{10}) {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(timeout.count())) <= 0)
      return raw_socket{};
    return raw_socket{::accept(fd_, nullptr, nullptr)};
  }

private:
  int fd_ = -1;
  std::uint16_t port_ = 0;
};

/// Plays one side of a handshake over a raw socket; true once established.
inline bool raw_handshake(raw_socket& s, remote::handshake& hs) {
  using remote::handshake;
  remote::wire::bytes out;
  if (hs.current() == handshake::state::awaiting_welcome) {
    hs.start(out);
    if (!s.write(out))
      return false;
  }
  while (hs.current() != handshake::state::established) {
    remote::wire::bytes frame;
    if (!s.read_frame(frame))
      return false;
    out.clear();
    remote::wire::frame_view f{static_cast<remote::wire::frame_type>(frame[4]),
                               remote::wire::byte_span{frame}.subspan(remote::wire::header_size)};
    auto st = hs.on_frame(f, out);
    if (!out.empty() && !s.write(out))
      return false;
    if (st == handshake::state::failed)
      return false;
  }
  return true;
}

/// Handshake settings of a hand-made peer.
inline remote::handshake_settings raw_settings(std::uint16_t port, std::string cluster = "troupe",
                                               std::string secret = "") {
  return {remote::node_identity{remote::node_address{"127.0.0.1", port}, 0xabcdef},
          std::move(cluster), std::move(secret), 4u << 20};
}

} // namespace troupe::test
