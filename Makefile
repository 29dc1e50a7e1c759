# Two commands do everything: `make demo` and `make test`. Both install what is missing first.
PRESET ?= release
BUILD  := build
JOBS   ?= $(shell nproc)
CMAKE_FLAGS ?=   # e.g. -DPRICER_WERROR=ON (what CI builds with)

.PHONY: all setup build test demo demo-real quality bench fuzz asan tsan tidy clean

all: build

setup:
	@scripts/setup

build: setup
	@cmake --preset $(PRESET) $(CMAKE_FLAGS) >/dev/null
	@cmake --build --preset $(PRESET) -j $(JOBS)

test: build
	@ctest --preset $(PRESET) -j $(JOBS)

demo: build
	@scripts/demo

# The same pipeline on the real Amazon data in ../shared/data (or $PRICER_DATA).
demo-real: build
	@scripts/demo-real

# The full real-data recipe (at most an hour on 2 cores); rewrites its table in docs/results.md.
quality: build
	@REAL_SCALE=quality scripts/demo-real
	@scripts/results-table $${DEMO_OUT:-quality-out}/leaderboard.md docs/results.md

bench: build
	@scripts/bench

fuzz: setup
	@scripts/fuzz

# Sanitizer builds (clang) of the library and a set of test files, and their tests.
asan: setup
	@scripts/sanitize asan

tsan: setup
	@scripts/sanitize tsan

# clang-tidy's bugprone checks over src/, with the release preset's compile commands.
tidy: setup
	@cmake --preset $(PRESET) $(CMAKE_FLAGS) >/dev/null
	@tools/lint/tidy.sh

clean:
	rm -rf build build-debug build-asan build-tsan
