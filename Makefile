# wasmbox: build, images, demo, tests, install and benchmarks. `make help` lists the targets.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

# One target dir outside the clone, so repeated runs on one machine reuse the build.
export CARGO_TARGET_DIR ?= $(HOME)/.cache/wasmbox/target
# The build names its target (.cargo/config.toml), so its binaries are under the target's name.
BIN        := $(CARGO_TARGET_DIR)/x86_64-unknown-linux-gnu/release
SHIM       := $(BIN)/containerd-shim-wasmbox-v1
WASMBOX    := $(BIN)/wasmbox
OCI_RUNTIME := $(BIN)/wasmbox-oci
export WASMBOX_IMAGES ?= $(CARGO_TARGET_DIR)/wasmbox-images
# containerd 1.7, 2.1 and Docker 28 for the tests (scripts/releases.sh, run by `make deps`).
export WASMBOX_RELEASES ?= $(HOME)/.cache/wasmbox/releases
IMAGES     := $(WASMBOX_IMAGES)
GUESTS     := $(CARGO_TARGET_DIR)
DEMO_WORK  ?= /tmp/wasmbox-demo
BENCH_WORK ?= /tmp/wasmbox-bench
CONTAINERD_CONFIG ?= /etc/containerd/config.toml
PREFIX     ?= /usr/local
# wasmtime-cli (`wasmtime serve`), the same wasmtime version as wasmbox, for the HTTP benchmark only.
WASMTIME_CLI_ROOT ?= $(HOME)/.cache/wasmbox/wasmtime-cli
WASMTIME   := $(WASMTIME_CLI_ROOT)/bin/wasmtime

.PHONY: help deps build images demo test test-matrix install bench stress clean claim-target

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

deps: ## install what is missing: Debian packages, PyPI and npm tools, the Rust wasm targets; fetch containerd 1.7, 2.1 and Docker 28 for the tests
	@scripts/deps.sh

build: claim-target ## build the shim, wasmbox-oci and the wasmbox CLI (one release build of the workspace)
	cargo build --release --workspace --bins

# Two clones sharing $(CARGO_TARGET_DIR): cargo judges freshness by mtimes, so a clone whose
# sources are older than the other clone's build would reuse binaries built from the other
# clone's sources (seen: tests reading files through the other clone's CARGO_MANIFEST_DIR). When
# another clone built last, this one's sources are touched: its own crates rebuild, the
# dependencies from crates.io stay cached.
CLONE_MARK := $(CARGO_TARGET_DIR)/.wasmbox-clone
claim-target:
	@if [ "$$(cat "$(CLONE_MARK)" 2>/dev/null)" != "$(CURDIR)" ]; then \
	  echo "build: $(CARGO_TARGET_DIR) was last built by another clone: rebuilding this clone's crates"; \
	  find shim runtime oci k8s vendor examples -path examples/js/node_modules -prune -o \
	    \( -name '*.rs' -o -name Cargo.toml -o -name '*.wat' -o -name '*.wit' \) -print0 | xargs -0 touch; \
	  mkdir -p "$(CARGO_TARGET_DIR)"; echo "$(CURDIR)" > "$(CLONE_MARK)"; \
	fi

images: build ## build the example guests and their OCI images into $(IMAGES)
	@scripts/images.sh "$(WASMBOX)" "$(IMAGES)" "$(GUESTS)"

demo: deps images ## start a private containerd and run Wasm images (and busybox) through it
	@scripts/demo.sh "$(SHIM)" "$(IMAGES)" "$(DEMO_WORK)"

# The smoke set run on every containerd release (each test checks that its container left nothing):
# a module, a component, exit codes, a trap's message, mounts, the missing-file error, HTTP, and
# artifacts and pods through CRI.
SMOKE_CTR := rust_wasip1_module rust_wasip2_component exit_code_of_proc_exit trap_exits bind_mount_is \
             write_to_read_only_mount missing_entrypoint http_component_serves
SMOKE_CRI := wasm_oci_artifacts pods_run_wasm

# wasmbox's own crates; the vendored ones keep the formatting and lints they were published with.
CRATES   := -p wasmbox-runtime -p wasmbox-oci -p wasmbox-shim -p wasmbox-cri-tests
VENDORED := --exclude libcontainer --exclude libcgroups --exclude containerd-shimkit --exclude containerd-shim-wasm

# Each test suite runs within a time limit (scripts/within.sh): all of them finish in minutes, so a
# test that hangs fails `make test` with its name instead of running into CI's limit.
# $(call suite,CARGO-ARGS,TEST-FILTERS) builds the suite's binaries (outside the limit), then runs them.
WITHIN := scripts/within.sh 1200
suite = cargo test --release $(1) --no-run; $(WITHIN) cargo test --release $(1) -- $(2)

test: deps images ## formatting, lints, unit and end-to-end tests through real containerds (needs root)
	cargo fmt --check $(CRATES)
	cargo clippy --release $(CRATES) --all-targets -- -D warnings
	$(call suite,--workspace $(VENDORED) --no-fail-fast,)
	@# The smoke set on containerd 1.7 and 2.1 (the full suites: make test-matrix).
	for release in 1.7 2.1; do \
	  export WASMBOX_CONTAINERD=$$release; \
	  $(call suite,-p wasmbox-shim --test ctr --test http,$(SMOKE_CTR)); \
	  $(call suite,-p wasmbox-cri-tests --test cri,$(SMOKE_CRI)); \
	done
	@# The vendored crates' own tests of the modules wasmbox patches (their other tests need a
	@# tty, user namespaces or a containerd of their own, or race: libcontainer's
	@# seccomp_listener test can connect before its listener is bound and then waits forever).
	$(call suite,-p libcontainer --lib,process::channel:: rootfs::mount::)
	$(call suite,-p libcgroups --lib,v1::controller:: v1::manager::)
	$(call suite,-p containerd-shimkit -p containerd-shim-wasm --lib,)

test-matrix: deps images ## the ctr, CRI and Docker suites on containerd 1.6 (the host's), 1.7 and 2.1
	for release in host 1.7 2.1; do \
	  echo "== containerd $$release"; \
	  export WASMBOX_CONTAINERD=$$release; \
	  $(call suite,-p wasmbox-shim -p wasmbox-cri-tests --no-fail-fast,); \
	done

install: build ## put the shim (also as containerd-shim-wasmbox-wasmer-v1), wasmbox-oci and the CLI in $(PREFIX)/bin and add the runtimes wasmbox and wasmbox-wasmer to $(CONTAINERD_CONFIG)
	install -D -m 0755 "$(SHIM)" "$(PREFIX)/bin/containerd-shim-wasmbox-v1"
	ln -sfn containerd-shim-wasmbox-v1 "$(PREFIX)/bin/containerd-shim-wasmbox-wasmer-v1"
	install -D -m 0755 "$(OCI_RUNTIME)" "$(PREFIX)/bin/wasmbox-oci"
	install -D -m 0755 "$(WASMBOX)" "$(PREFIX)/bin/wasmbox"
	"$(PREFIX)/bin/wasmbox" node configure --layout containerd --config "$(CONTAINERD_CONFIG)"

bench: deps images $(WASMTIME) ## start-up and memory against runc, Python with/without --precompile, HTTP against wasmtime serve; results in docs/benchmarks.md
	@scripts/bench.sh "$(SHIM)" "$(IMAGES)" "$(BENCH_WORK)" docs/benchmarks.md "$(GUESTS)/wasm32-wasip1/release/hello-rust.wasm"
	@scripts/bench-http.sh "$(SHIM)" "$(IMAGES)" "$(BENCH_WORK)-http" docs/benchmarks.md "$(GUESTS)/wasm32-wasip2/release/hello_http.wasm" "$(WASMTIME)"

$(WASMTIME): # built once (about 10 minutes on 2 cores): the serve command and nothing else
	cargo install wasmtime-cli --version 48.0.8 --locked --root "$(WASMTIME_CLI_ROOT)" --no-default-features \
	  --features run,serve,cranelift,parallel-compilation,pooling-allocator,component-model,component-model-async

stress: deps images ## 1000 sequential + 50 concurrent Wasm runs, 1000 idle Wasm then runc containers, leak checks; figures in docs/benchmarks.md
	@scripts/stress.sh docs/benchmarks.md

clean: ## remove the build (the shared target dir)
	rm -rf "$(CARGO_TARGET_DIR)"
