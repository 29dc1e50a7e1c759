# Two commands do everything: `make demo` and `make test`. Both install what is missing first.
PRESET ?= release
BUILD  := build
JOBS   ?= $(shell nproc)

.PHONY: all setup build test demo bench fuzz clean

all: build

setup:
	@scripts/setup

build: setup
	@cmake --preset $(PRESET) >/dev/null
	@cmake --build --preset $(PRESET) -j $(JOBS)

test: build
	@ctest --preset $(PRESET) -j $(JOBS)

demo: build
	@scripts/demo

bench: build
	@scripts/bench

fuzz: setup
	@scripts/fuzz

clean:
	rm -rf build build-debug build-asan build-fuzz
