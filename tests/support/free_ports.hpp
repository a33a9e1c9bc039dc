// Free TCP ports on 127.0.0.1 for tests and benchmarks that must name ports before
// their processes start (seed lists). Each port was bound once and released; another
// process could take it in between, which on a test machine does not happen.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <cstdint>
#include <vector>

namespace troupe::test {

inline std::vector<std::uint16_t> free_ports(std::size_t n) {
  boost::asio::io_context io;
  std::vector<boost::asio::ip::tcp::acceptor> held;  // all bound at once: n distinct ports
  std::vector<std::uint16_t> ports;
  for (std::size_t i = 0; i < n; ++i) {
    held.emplace_back(io, boost::asio::ip::tcp::endpoint{boost::asio::ip::make_address("127.0.0.1"), 0});
    ports.push_back(held.back().local_endpoint().port());
  }
  return ports;
}

} // namespace troupe::test
