// libFuzzer target for the transport's frame and handshake decoders. Built with
// clang by `make fuzz` (target troupe-fuzz-wire); see wire_fuzz_entry.hpp.
#include "remote/fuzz/wire_fuzz_entry.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  return troupe::test::fuzz_wire_one_input(data, size);
}
