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
for image in hello busybox probe; do ctr images import "$images/$image.tar" >/dev/null; done

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

# Memory of idle containers: PSS summed over every process a container costs (its shim, the
# shim's helpers, the container's own processes), from /proc/PID/smaps_rollup.
pss_kib() { awk '/^Pss:/ {print $2}' "/proc/$1/smaps_rollup" 2>/dev/null || echo 0; }
container_pids() { # the shim processes started for container $1, and the processes in its cgroup
  pgrep -f -- "-id $1( |$)" || true
  cat "/sys/fs/cgroup/pids/$NS/$1/cgroup.procs" 2>/dev/null || true
}
idle=${IDLE:-20}
measure_idle() { # measure_idle LABEL RUNTIME_FLAGS IMAGE ARGS… → "mean_kib processes_per_container"
  local label=$1 flags=$2 image=$3; shift 3
  for i in $(seq "$idle"); do ctr run -d $flags "$image" "idle-$label-$i" "$@" >/dev/null; done
  sleep 2
  local total=0 procs=0
  for i in $(seq "$idle"); do
    for pid in $(container_pids "idle-$label-$i" | sort -u); do
      total=$((total + $(pss_kib "$pid"))); procs=$((procs + 1))
    done
  done
  for i in $(seq "$idle"); do
    ctr tasks kill -s SIGKILL "idle-$label-$i" >/dev/null 2>&1 || true
  done
  sleep 1
  for i in $(seq "$idle"); do
    ctr tasks delete "idle-$label-$i" >/dev/null 2>&1 || true
    ctr containers delete "idle-$label-$i" >/dev/null 2>&1 || true
  done
  echo "$((total / idle)) $((procs / idle))"
}
read -r wasm_pss wasm_procs < <(measure_idle wasm "--runtime io.containerd.wasmbox.v1" localhost/wasmbox/probe:latest /probe.wasm sleep 600)
read -r runc_pss runc_procs < <(measure_idle runc "" localhost/wasmbox/busybox:latest /bin/busybox sleep 600)

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

## Memory: $idle idle containers of one image

PSS summed over every process each container costs (its shim and the shim's helper processes, and
the processes in the container's cgroup), divided by $idle; from \`/proc/PID/smaps_rollup\`, in the same run.

| what | PSS per container | processes per container |
|---|---|---|
| wasmbox: \`probe\` guest sleeping (Wasm, tar layout, compiled code mapped from the cache) | $(awk -v k="$wasm_pss" 'BEGIN {printf "%.1f MiB", k/1024}') | $wasm_procs |
| runc: busybox \`sleep\` | $(awk -v k="$runc_pss" 'BEGIN {printf "%.1f MiB", k/1024}') | $runc_procs |

In-process floor (\`wasmbox-run --repeat $rounds\`: the same engine and module in one process, no container):

| what | ms |
|---|---|
| compile the module | $compile_ms |
| instantiate and run (median of $rounds) | $run_ms |
MD
cat "$out"
