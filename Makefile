# wasmbox: build, images, demo, tests, install and benchmarks. `make help` lists the targets.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

# One target dir outside the clone, so repeated runs on one machine reuse the build.
export CARGO_TARGET_DIR ?= $(HOME)/.cache/wasmbox/target
BIN        := $(CARGO_TARGET_DIR)/release
SHIM       := $(BIN)/containerd-shim-wasmbox-v1
WASMBOX    := $(BIN)/wasmbox
export WASMBOX_IMAGES ?= $(CARGO_TARGET_DIR)/wasmbox-images
IMAGES     := $(WASMBOX_IMAGES)
GUESTS     := $(CARGO_TARGET_DIR)
DEMO_WORK  ?= /tmp/wasmbox-demo
BENCH_WORK ?= /tmp/wasmbox-bench
CONTAINERD_CONFIG ?= /etc/containerd/config.toml
PREFIX     ?= /usr/local
# wasmtime-cli (`wasmtime serve`), the same wasmtime version as wasmbox, for the HTTP benchmark only.
WASMTIME_CLI_ROOT ?= $(HOME)/.cache/wasmbox/wasmtime-cli
WASMTIME   := $(WASMTIME_CLI_ROOT)/bin/wasmtime

.PHONY: help deps build images demo test install bench stress clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

deps: ## install what is missing: Debian packages and the Rust wasm targets
	@scripts/deps.sh

build: ## build the shim and the wasmbox CLI (one release build of the workspace)
	cargo build --release --workspace --bins

images: build ## build the example guests and their OCI images into $(IMAGES)
	@scripts/images.sh "$(WASMBOX)" "$(IMAGES)" "$(GUESTS)"

demo: deps images ## start a private containerd and run Wasm images (and busybox) through it
	@scripts/demo.sh "$(SHIM)" "$(IMAGES)" "$(DEMO_WORK)"

# wasmbox's own crates; the vendored ones keep the formatting and lints they were published with.
CRATES   := -p wasmbox-runtime -p wasmbox-oci -p wasmbox-shim -p wasmbox-cri-tests
VENDORED := --exclude libcontainer --exclude containerd-shimkit --exclude containerd-shim-wasm

test: deps images ## formatting, lints, unit and end-to-end tests through real containerds (needs root)
	cargo fmt --check $(CRATES)
	cargo clippy --release $(CRATES) --all-targets -- -D warnings
	cargo test --release --workspace $(VENDORED) --no-fail-fast
	@# The vendored crates' own tests of the modules wasmbox patches (their other tests need a
	@# tty, user namespaces or a containerd of their own).
	cargo test --release -p libcontainer --lib -- process:: rootfs:: container::
	cargo test --release -p containerd-shimkit -p containerd-shim-wasm --lib

install: build ## put the shim in $(PREFIX)/bin and add the runtime to $(CONTAINERD_CONFIG)
	install -D -m 0755 "$(SHIM)" "$(PREFIX)/bin/containerd-shim-wasmbox-v1"
	install -D -m 0755 "$(WASMBOX)" "$(PREFIX)/bin/wasmbox"
	@scripts/containerd-config.sh add "$(CONTAINERD_CONFIG)"

bench: deps images $(WASMTIME) ## start-up and memory against runc, Python with/without --precompile, HTTP against wasmtime serve; results in docs/benchmarks.md
	@scripts/bench.sh "$(SHIM)" "$(IMAGES)" "$(BENCH_WORK)" docs/benchmarks.md "$(GUESTS)/wasm32-wasip1/release/hello-rust.wasm"
	@scripts/bench-http.sh "$(SHIM)" "$(IMAGES)" "$(BENCH_WORK)-http" docs/benchmarks.md "$(GUESTS)/wasm32-wasip2/release/hello_http.wasm" "$(WASMTIME)"

$(WASMTIME): # built once (about 10 minutes on 2 cores): the serve command and nothing else
	cargo install wasmtime-cli --version 48.0.8 --locked --root "$(WASMTIME_CLI_ROOT)" --no-default-features \
	  --features run,serve,cranelift,parallel-compilation,pooling-allocator,component-model,component-model-async

stress: deps images ## 1000 sequential + 50 concurrent Wasm containers, then a leak check; figures in docs/benchmarks.md
	@scripts/stress.sh docs/benchmarks.md

clean: ## remove the build (the shared target dir)
	rm -rf "$(CARGO_TARGET_DIR)"
