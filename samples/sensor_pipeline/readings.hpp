// The demo's readings and the TCP client that sends them (the tests use both:
// they fold the same readings into the aggregates they expect).
#pragma once

#include "sensor.hpp"

#include <arpa/inet.h>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <string>

namespace sensors {

inline std::string sensor_id(std::size_t k) {
  return fmt::format("sensor-{}", k);
}

/// Reading number i (0, 1, ...) of a run over `sensors` sensors: sensor i mod
/// sensors, a value in quarter steps from -50 to 80 (exact in binary, so sums do
/// not depend on rounding), and timestamp base + i, so each sensor's timestamps
/// increase along its readings.
inline reading generated_reading(std::size_t i, std::size_t sensors) {
  constexpr std::int64_t base = 1'700'000'000'000;
  auto step = static_cast<std::int64_t>((i * 7919 + 13) % 521);
  return {sensor_id(i % sensors), static_cast<double>(step - 200) / 4.0,
          base + static_cast<std::int64_t>(i)};
}

/// Which of `clients` connections sends the readings of sensor k: each sensor
/// reports over one connection (sensor.hpp says why).
inline std::size_t client_of(std::size_t sensor, std::size_t clients) {
  return sensor % clients;
}

/// A TCP client that writes lines to 127.0.0.1:port: blocking, or, after
/// set_blocking(false), as much as the kernel takes now. Errors as values.
class line_client {
public:
  line_client() = default;
  line_client(const line_client&) = delete;
  line_client& operator=(const line_client&) = delete;
  ~line_client() { close(); }

  /// Connects; send_buffer > 0 sets SO_SNDBUF first (the kernel doubles it).
  troupe::expected<void> connect(std::uint16_t port, int send_buffer = 0) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd_ < 0)
      return failed("socket");
    if (send_buffer > 0 && ::setsockopt(fd_, SOL_SOCKET, SO_SNDBUF, &send_buffer, sizeof send_buffer) != 0)
      return failed("setsockopt(SO_SNDBUF)");
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
      return failed(fmt::format("connect to 127.0.0.1:{}", port));
    return {};
  }

  troupe::expected<void> set_blocking(bool blocking) {
    int flags = ::fcntl(fd_, F_GETFL);
    flags = blocking ? flags & ~O_NONBLOCK : flags | O_NONBLOCK;
    if (flags < 0 || ::fcntl(fd_, F_SETFL, flags) != 0)
      return failed("fcntl");
    return {};
  }

  /// Writes from `data`; the bytes written (all of them when blocking; when not,
  /// fewer, possibly none, once the socket's send buffer is full).
  troupe::expected<std::size_t> write(std::string_view data) {
    std::size_t done = 0;
    while (done < data.size()) {
      auto n = ::send(fd_, data.data() + done, data.size() - done, MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        break;
      if (n < 0)
        return failed("send");
      done += static_cast<std::size_t>(n);
    }
    return done;
  }

  /// Ends the stream of lines (the server delivers the last one) and closes.
  void close() {
    if (fd_ < 0)
      return;
    ::shutdown(fd_, SHUT_WR);
    ::close(fd_);
    fd_ = -1;
  }

private:
  troupe::error failed(const std::string& what) {
    return troupe::error{troupe::errc::io_error, fmt::format("{}: {}", what, std::strerror(errno))};
  }

  int fd_ = -1;
};

} // namespace sensors
