// Replays the wire fuzzer's checked-in corpus (tests/remote/fuzz/corpus) through the
// same entry point as the libFuzzer target, plus deterministic mutations of every
// input, with the normal compiler (and under ASan/UBSan in the sanitizer build).
#include "remote/fuzz/wire_fuzz_entry.hpp"

#include "support/fuzz_corpus.hpp"

TEST_CASE("the wire fuzzer's corpus and mutations of it decode without a crash") {
  auto dir = std::filesystem::path{__FILE__}.parent_path() / "fuzz" / "corpus";
  auto inputs = troupe::test::replay_corpus(dir, 200, 20261121, [](const std::uint8_t* d, std::size_t n) {
    troupe::test::fuzz_wire_one_input(d, n);
  });
  CHECK(inputs >= 15);
}
