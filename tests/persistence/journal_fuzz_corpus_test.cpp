// Replays the journal rows fuzzer's checked-in corpus (tests/persistence/fuzz/corpus)
// through the same entry point as the libFuzzer target, plus deterministic
// mutations of every input: every reader of journal rows survives each of them.
#include "persistence/fuzz/journal_rows_fuzz_entry.hpp"

#include "support/fuzz_corpus.hpp"

TEST_CASE("the journal rows fuzzer's corpus and mutations of it are read without a crash") {
  auto dir = std::filesystem::path{__FILE__}.parent_path() / "fuzz" / "corpus";
  auto inputs = troupe::test::replay_corpus(dir, 3, 20261202, [](const std::uint8_t* d, std::size_t n) {
    troupe::test::fuzz_journal_rows_one_input(d, n);
  });
  CHECK(inputs >= 20);
}
