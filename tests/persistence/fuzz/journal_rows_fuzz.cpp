// libFuzzer target for every reader of journal rows. Built with clang by `make
// fuzz-journal` (target troupe-fuzz-journal-rows); see journal_rows_fuzz_entry.hpp.
#include "persistence/fuzz/journal_rows_fuzz_entry.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  return troupe::test::fuzz_journal_rows_one_input(data, size);
}
