// SHA-256 (FIPS 180-4) and HMAC-SHA256 (RFC 2104) for the transport's handshake
// authentication. Small and dependency-free so the handshake code stays free of
// OpenSSL and fuzzable; not a general-purpose crypto library.
//
// Thread-safety: pure functions.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string_view>

namespace troupe::remote {

using sha256_digest = std::array<std::uint8_t, 32>;

/// Incremental SHA-256.
class sha256 {
public:
  sha256();
  void update(std::span<const std::uint8_t> data);
  void update(std::string_view text);
  sha256_digest finish();

  static sha256_digest of(std::span<const std::uint8_t> data);

private:
  void block(const std::uint8_t* p);

  std::array<std::uint32_t, 8> h_;
  std::array<std::uint8_t, 64> buf_{};
  std::uint64_t total_ = 0;
  std::size_t used_ = 0;
};

/// HMAC-SHA256(key, parts[0] || parts[1] || ...).
sha256_digest hmac_sha256(std::span<const std::uint8_t> key,
                          std::initializer_list<std::span<const std::uint8_t>> parts);

/// Compares in time independent of where the inputs differ.
bool equal_in_constant_time(std::span<const std::uint8_t> a, std::span<const std::uint8_t> b);

} // namespace troupe::remote
