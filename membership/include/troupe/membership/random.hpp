// troupe::membership::deterministic_rng: the seeded generator deterministic cores
// take instead of reading OS randomness (docs/membership.md, "Deterministic core").
//
// xoshiro256** seeded through splitmix64: the same seed gives the same sequence on
// every platform and standard library (std::uniform_int_distribution does not
// promise that, which is why the helpers below are written out).
//
// Thread-safety: none; one generator per core.
#pragma once

#include <cstdint>

namespace troupe::membership {

class deterministic_rng {
public:
  explicit deterministic_rng(std::uint64_t seed) noexcept {
    for (auto& word : state_) {
      seed += 0x9e3779b97f4a7c15ULL;
      auto z = seed;
      z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
      z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
      word = z ^ (z >> 31);
    }
  }

  std::uint64_t next() noexcept {
    auto result = rotl(state_[1] * 5, 7) * 9;
    auto t = state_[1] << 17;
    state_[2] ^= state_[0];
    state_[3] ^= state_[1];
    state_[1] ^= state_[2];
    state_[0] ^= state_[3];
    state_[2] ^= t;
    state_[3] = rotl(state_[3], 45);
    return result;
  }

  /// Uniform in [0, n); n must be > 0. Rejection sampling: no modulo bias.
  std::uint64_t below(std::uint64_t n) noexcept {
    auto limit = ~std::uint64_t{0} - (~std::uint64_t{0} % n);
    for (;;) {
      auto x = next();
      if (x < limit)
        return x % n;
    }
  }

  /// Uniform in [lo, hi] (inclusive); requires lo <= hi.
  std::int64_t between(std::int64_t lo, std::int64_t hi) noexcept {
    return lo + static_cast<std::int64_t>(below(static_cast<std::uint64_t>(hi - lo) + 1));
  }

  /// Uniform in [0, 1).
  double unit() noexcept { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

  /// True with probability p.
  bool chance(double p) noexcept { return unit() < p; }

private:
  static std::uint64_t rotl(std::uint64_t x, int k) noexcept { return (x << k) | (x >> (64 - k)); }
  std::uint64_t state_[4];
};

} // namespace troupe::membership
