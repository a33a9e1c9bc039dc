#include "heartbeat_ring.hpp"

#include <algorithm>
#include <cstdint>

namespace troupe::membership {

namespace {

std::uint64_t fnv1a(std::uint64_t h, const void* data, std::size_t size) {
  auto p = static_cast<const unsigned char*>(data);
  for (std::size_t i = 0; i < size; ++i) {
    h ^= p[i];
    h *= 0x100000001b3ULL;
  }
  return h;
}

std::uint64_t ring_position(const node_identity& n) {
  auto h = fnv1a(0xcbf29ce484222325ULL, n.address.host.data(), n.address.host.size());
  unsigned char port[2] = {static_cast<unsigned char>(n.address.port >> 8),
                           static_cast<unsigned char>(n.address.port & 0xff)};
  h = fnv1a(h, port, 2);
  for (int shift = 56; shift >= 0; shift -= 8) {
    auto b = static_cast<unsigned char>(n.incarnation >> shift);
    h = fnv1a(h, &b, 1);
  }
  return h;
}

} // namespace

std::vector<node_identity> ring_receivers(const gossip& g, const node_identity& self,
                                          std::size_t n) {
  std::vector<std::pair<std::uint64_t, const node_identity*>> ring;
  // Down members stay on the ring until removed: they are removed only once
  // unreachable, so someone must notice that they stopped.
  for (auto& m : g.members)
    ring.emplace_back(ring_position(m.node), &m.node);
  std::sort(ring.begin(), ring.end(), [](const auto& a, const auto& b) {
    return a.first != b.first ? a.first < b.first : *a.second < *b.second;
  });
  auto me = std::find_if(ring.begin(), ring.end(), [&](const auto& x) { return *x.second == self; });
  std::vector<node_identity> result;
  if (me == ring.end())
    return result;
  auto unreachable = g.unreachable_as_seen_by(self);
  auto start = static_cast<std::size_t>(me - ring.begin());
  std::size_t counted = 0;
  for (std::size_t step = 1; step < ring.size() && counted < n; ++step) {
    auto& node = *ring[(start + step) % ring.size()].second;
    result.push_back(node);
    if (!std::binary_search(unreachable.begin(), unreachable.end(), node))
      ++counted;
  }
  return result;
}

} // namespace troupe::membership
