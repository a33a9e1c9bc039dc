// Replays a fuzzer's checked-in corpus through its entry point with the normal
// compiler (and under ASan/UBSan in the sanitizer build): every input, plus
// deterministic mutations of each (bytes flipped, inserted, dropped, truncated),
// reproducible from the seed.
#pragma once

#include <doctest/doctest.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <random>
#include <vector>

namespace troupe::test {

/// Feeds each file of `dir` and `mutations` mutations of it to `one_input`;
/// returns the number of corpus files.
inline std::size_t replay_corpus(const std::filesystem::path& dir, int mutations,
                                 std::uint64_t seed,
                                 const std::function<void(const std::uint8_t*, std::size_t)>& one_input) {
  REQUIRE(std::filesystem::is_directory(dir));
  std::size_t inputs = 0;
  std::mt19937_64 rng{seed};
  for (auto& entry : std::filesystem::directory_iterator{dir}) {
    std::ifstream in{entry.path(), std::ios::binary};
    std::vector<std::uint8_t> data{std::istreambuf_iterator<char>{in},
                                   std::istreambuf_iterator<char>{}};
    INFO(entry.path().filename().string());
    one_input(data.data(), data.size());
    ++inputs;
    for (int round = 0; round < mutations && !data.empty(); ++round) {
      auto m = data;
      auto pos = rng() % m.size();
      switch (rng() % 4) {
        case 0: m[pos] ^= static_cast<std::uint8_t>(1u << (rng() % 8)); break;
        case 1: m.insert(m.begin() + static_cast<std::ptrdiff_t>(pos), static_cast<std::uint8_t>(rng())); break;
        case 2: m.erase(m.begin() + static_cast<std::ptrdiff_t>(pos)); break;
        default: m.resize(pos); break;
      }
      one_input(m.data(), m.size());
    }
  }
  return inputs;
}

} // namespace troupe::test
