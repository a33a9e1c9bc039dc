# Convenience targets; ./run (README.md) is the real entry point, so that a machine
# without make can start from it too.
.PHONY: demo test bench asan-test tsan-test build clean
demo test bench asan-test tsan-test build:
	@./run $@
clean:
	rm -rf build build-asan build-tsan build-mutation

# Deliberate bugs in the main invariants, one at a time: every one must make a test
# fail (scripts/mutation-check.sh; slow, not in CI).
.PHONY: mutation-check
mutation-check:
	@scripts/mutation-check.sh

# Fuzz the transport's frame, handshake and CBOR decoders with libFuzzer (clang) for
# FUZZ_SECONDS; new inputs go to build/fuzz/corpus, crashes to build/fuzz/.
FUZZ_SECONDS ?= 60
.PHONY: fuzz
fuzz:
	@scripts/install-deps.sh
	@cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
	@cmake --build build --target troupe-fuzz-wire
	@mkdir -p build/fuzz/corpus
	@build/fuzz/troupe-fuzz-wire -max_total_time=$(FUZZ_SECONDS) -max_len=4096 \
	  -artifact_prefix=build/fuzz/ build/fuzz/corpus tests/remote/fuzz/corpus

# Fuzz every reader of journal rows (SQLite backend, replay_main, `troupe journal`)
# with libFuzzer for FUZZ_SECONDS; new inputs go to build/fuzz/rows-corpus.
.PHONY: fuzz-journal
fuzz-journal:
	@scripts/install-deps.sh
	@cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
	@cmake --build build --target troupe-fuzz-journal-rows
	@mkdir -p build/fuzz/rows-corpus
	@build/fuzz/troupe-fuzz-journal-rows -max_total_time=$(FUZZ_SECONDS) -max_len=4096 \
	  -artifact_prefix=build/fuzz/ build/fuzz/rows-corpus tests/persistence/fuzz/corpus
