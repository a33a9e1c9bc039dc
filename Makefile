# Convenience targets; ./run (README.md) is the real entry point, so that a machine
# without make can start from it too.
.PHONY: demo test bench asan-test build clean
demo test bench asan-test build:
	@./run $@
clean:
	rm -rf build build-asan
