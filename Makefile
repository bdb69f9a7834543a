# Thin wrapper over CMake. Every target first makes sure the Debian packages
# are there (deploy/install-deps.sh is idempotent and quick when nothing is missing).
BUILD ?= build
FUZZ_BUILD ?= build-fuzz
JOBS ?= $(shell nproc)
SANITIZE ?= 0
CMAKE_FLAGS ?=

ifeq ($(SANITIZE),1)
BUILD := build-sanitize
CMAKE_FLAGS += -DWIDEEP_SANITIZE=ON
endif

.PHONY: all deps build test demo stop bench fuzz clean

all: build

deps:
	@bash deploy/install-deps.sh

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_FLAGS) \
		-DWIDEEP_FUZZ_DIR=$(abspath $(FUZZ_BUILD)) >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

fuzz: deps
	@CC=clang cmake -S . -B $(FUZZ_BUILD) -DWIDEEP_FUZZ=ON -DWIDEEP_CUDA=OFF \
		-DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build $(FUZZ_BUILD) -j $(JOBS)

test: build fuzz
	@cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

demo: build
	@bash deploy/demo.sh $(BUILD)

# Stops a running `make demo` (its router and decode worker drain and exit).
stop:
	@if [ -s $(BUILD)/demo/pids ]; then kill -TERM $$(cat $(BUILD)/demo/pids) 2>/dev/null; \
		echo "stopped"; else echo "no demo running"; fi

# The ep lines are issue 3's configuration (normal mode, about 6 GB of memory over the four
# ranks, ~15 s here) and DeepEP's low-latency size (128 tokens per rank). The kv lines: the
# KV transfer of 1..4096-token requests (8 layers, 4 KV heads x 128, bf16, scattered pages)
# against a raw UCX put, over UCX's shared-memory transports and over TCP.
bench: build
	@$(BUILD)/bin/wideep-bench engine --random qwen3-moe-mid
	@$(BUILD)/bin/wideep-bench ep --ranks 4 --tokens 4096 --hidden 7168 --topk 8 --experts 256 \
		--mode normal --transport shm
	@$(BUILD)/bin/wideep-bench ep --ranks 4 --tokens 4096 --hidden 7168 --topk 8 --experts 256 \
		--mode normal --transport shm --zero-copy
	@$(BUILD)/bin/wideep-bench ep --ranks 4 --tokens 128 --hidden 7168 --topk 8 --experts 256 \
		--mode low_latency --transport shm
	@$(BUILD)/bin/wideep-bench router --model-path deploy/tiny-model --connections 32
	@UCX_TLS=sm,self $(BUILD)/bin/wideep-bench kv
	@UCX_TLS=tcp,self $(BUILD)/bin/wideep-bench kv

clean:
	rm -rf build build-sanitize $(FUZZ_BUILD)
