#!/usr/bin/env bash
# `make bench`: start-up of the Wasm hello image through wasmbox against busybox `echo` through
# runc, interleaved in one run on one private containerd, plus the in-process floor; the figures
# are written to OUT (docs/benchmarks.md).
#   scripts/bench.sh SHIM IMAGES_DIR WORK OUT HELLO_WASM
set -euo pipefail
shim=$1 images=$2 work=$3 out=$4 hello_wasm=$5
here=$(cd "$(dirname "$0")" && pwd)
rounds=${ROUNDS:-20}

"$here/containerd.sh" start "$work" "$shim"
trap '"$here/containerd.sh" stop "$work"' EXIT
export NS=wasmbox-bench
ctr() { "$here/containerd.sh" ctr "$work" "$@"; }
for image in hello busybox; do ctr images import "$images/$image.tar" >/dev/null; done

now_ns() { date +%s%N; }
ms_since() { echo $(( ($(now_ns) - $1) / 1000 )) | awk '{printf "%.1f", $1/1000}'; }
median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else printf "%.1f", (a[NR/2]+a[NR/2+1])/2}'; }
wasm_run() { ctr run --rm --runtime io.containerd.wasmbox.v1 localhost/wasmbox/hello:latest "$1" >/dev/null; }
runc_run() { ctr run --rm localhost/wasmbox/busybox:latest "$1" >/dev/null; }

# The first run of each: wasmbox compiles the module and fills its cache.
t=$(now_ns); wasm_run bench-wasm-first; wasm_first=$(ms_since "$t")
t=$(now_ns); runc_run bench-runc-first; runc_first=$(ms_since "$t")

wasm_times=() runc_times=()
for i in $(seq "$rounds"); do
  t=$(now_ns); wasm_run "bench-wasm-$i"; wasm_times+=("$(ms_since "$t")")
  t=$(now_ns); runc_run "bench-runc-$i"; runc_times+=("$(ms_since "$t")")
done
wasm_median=$(printf '%s\n' "${wasm_times[@]}" | median)
runc_median=$(printf '%s\n' "${runc_times[@]}" | median)
ratio=$(awk -v a="$wasm_median" -v b="$runc_median" 'BEGIN {printf "%.2f", a/b}')

floor=$("$(dirname "$shim")/wasmbox-run" --repeat "$rounds" "$hello_wasm" 2>&1 >/dev/null | tail -n 1)
compile_ms=$(sed -n 's/.*compile_ms=\([0-9.]*\).*/\1/p' <<<"$floor")
run_ms=$(sed -n 's/.*run_median_ms=\([0-9.]*\).*/\1/p' <<<"$floor")

"$here/doc-section.sh" "$out" startup <<MD
## Start-up: \`ctr run --rm\` of the Wasm hello image against busybox \`echo\` with runc

Command: \`make bench\` (\`scripts/bench.sh\`). Last run: $(date -u +%Y-%m-%d), $(nproc) cores, Linux $(uname -r),
$(containerd --version | awk '{print $1, $3}'), $(runc --version | head -n 1).

$rounds rounds, interleaved (wasmbox, then runc, in each round), on one private containerd, after one
first run of each. The hello image is \`examples/hello-rust\` (wasm32-wasip1, $(stat -c %s "$hello_wasm") bytes) in a tar layer;
busybox is Debian's static busybox in a tar layer running \`echo\`. Times are wall-clock times of the
whole \`ctr run --rm\` command (create, start, wait, delete).

| what | median (ms) |
|---|---|
| \`ctr run --rm --runtime io.containerd.wasmbox.v1\` hello | $wasm_median |
| \`ctr run --rm\` busybox echo (runc) | $runc_median |
| **ratio wasmbox / runc** | **$ratio** |
| first run of hello (compiles, fills the cache) | $wasm_first |
| first run of busybox (runc) | $runc_first |

In-process floor (\`wasmbox-run --repeat $rounds\`: the same engine and module in one process, no container):

| what | ms |
|---|---|
| compile the module | $compile_ms |
| instantiate and run (median of $rounds) | $run_ms |
MD
cat "$out"
