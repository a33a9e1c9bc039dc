// Replays the wire fuzzer's checked-in corpus (tests/remote/fuzz/corpus) through the
// same entry point as the libFuzzer target, plus deterministic mutations of every
// input, with the normal compiler (and under ASan/UBSan in the sanitizer build).
#include "remote/fuzz/wire_fuzz_entry.hpp"

#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>

namespace {

std::filesystem::path corpus_dir() {
  return std::filesystem::path{__FILE__}.parent_path() / "fuzz" / "corpus";
}

std::vector<std::uint8_t> read_file(const std::filesystem::path& p) {
  std::ifstream in{p, std::ios::binary};
  return {std::istreambuf_iterator<char>{in}, std::istreambuf_iterator<char>{}};
}

} // namespace

TEST_CASE("the wire fuzzer's corpus and mutations of it decode without a crash") {
  REQUIRE(std::filesystem::is_directory(corpus_dir()));
  std::size_t inputs = 0;
  std::mt19937_64 rng{20261121};
  for (auto& entry : std::filesystem::directory_iterator{corpus_dir()}) {
    auto data = read_file(entry.path());
    INFO(entry.path().filename().string());
    troupe::test::fuzz_wire_one_input(data.data(), data.size());
    ++inputs;
    // Flip, insert, drop and truncate bytes: cheap coverage of the error paths
    // around every seed, reproducible from the fixed seed above.
    for (int round = 0; round < 200 && !data.empty(); ++round) {
      auto m = data;
      auto pos = rng() % m.size();
      switch (rng() % 4) {
        case 0: m[pos] ^= static_cast<std::uint8_t>(1u << (rng() % 8)); break;
        case 1: m.insert(m.begin() + static_cast<std::ptrdiff_t>(pos), static_cast<std::uint8_t>(rng())); break;
        case 2: m.erase(m.begin() + static_cast<std::ptrdiff_t>(pos)); break;
        default: m.resize(pos); break;
      }
      troupe::test::fuzz_wire_one_input(m.data(), m.size());
    }
  }
  CHECK(inputs >= 15);
}
