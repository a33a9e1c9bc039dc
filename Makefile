# The entry points a new user runs (see README.md). Each installs missing Debian
# packages, configures and builds into build/ (or build-asan/), then runs.
JOBS      ?= $(shell nproc)
BUILD     ?= build
ASAN_BUILD ?= build-asan
CTEST_ARGS ?=

.PHONY: deps build demo test bench asan-test clean

deps:
	@scripts/install-deps.sh

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

demo: build
	@$(BUILD)/samples/troupe-demo

test: build
	@cd $(BUILD) && ctest -j $(JOBS) --output-on-failure --timeout 300 $(CTEST_ARGS)

bench: build
	@$(BUILD)/bench/troupe-bench all

asan-test: deps
	@cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTROUPE_SANITIZE=ON -DTROUPE_BUILD_BENCH=OFF >/dev/null
	@cmake --build $(ASAN_BUILD) -j $(JOBS)
	@cd $(ASAN_BUILD) && ctest -j $(JOBS) --output-on-failure --timeout 600 $(CTEST_ARGS)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)

# Fuzz the transport's frame, handshake and CBOR decoders with libFuzzer (clang) for
# FUZZ_SECONDS; new inputs go to $(BUILD)/fuzz/corpus, crashes to $(BUILD)/fuzz/.
FUZZ_SECONDS ?= 60
.PHONY: fuzz
fuzz: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release >/dev/null
	@cmake --build $(BUILD) --target troupe-fuzz-wire
	@mkdir -p $(BUILD)/fuzz/corpus
	@$(BUILD)/fuzz/troupe-fuzz-wire -max_total_time=$(FUZZ_SECONDS) -max_len=4096 \
	  -artifact_prefix=$(BUILD)/fuzz/ $(BUILD)/fuzz/corpus tests/remote/fuzz/corpus
