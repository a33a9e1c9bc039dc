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
	@$(BUILD)/samples/supervised_tree/troupe-demo

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
