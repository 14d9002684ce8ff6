#!/usr/bin/env bash
# `make bench`: start-up of the Wasm hello image through wasmbox against busybox `echo` through
# runc, interleaved in one run on one private containerd, plus the in-process floor; the figures
# are written to OUT (docs/benchmarks.md).
#   scripts/bench.sh SHIM IMAGES_DIR WORK OUT HELLO_WASM
set -euo pipefail
shim=$1 images=$2 work=$3 out=$4 hello_wasm=$5
here=$(cd "$(dirname "$0")" && pwd)
rounds=${ROUNDS:-20}

# The images were built here: the bench node trusts their precompiled layers (the Python series).
WASMBOX_PRECOMPILED=trust "$here/containerd.sh" start "$work" "$shim"
trap '"$here/containerd.sh" stop "$work"' EXIT
export NS=wasmbox-bench
ctr() { "$here/containerd.sh" ctr "$work" "$@"; }
for image in hello busybox probe probe-precompiled python python-compiling; do
  ctr images import "$images/$image.tar" >/dev/null
done

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

# The Python component (componentize-py, ~18 MB of Wasm): first and later runs with the
# precompiled layer (image `python`) and without it (image `python-compiling`). The node-local
# cache is emptied before each first run, so that each first run is a real one.
py_rounds=${PY_ROUNDS:-10}
py_run() { ctr run --rm --runtime io.containerd.wasmbox.v1 "localhost/wasmbox/$1:latest" "$2" >/dev/null; }
py_series() { # py_series IMAGE → "first_ms median_ms"
  rm -f "$work"/cache/*
  local t first times=()
  t=$(now_ns); py_run "$1" "bench-$1-first"; first=$(ms_since "$t")
  for i in $(seq "$py_rounds"); do t=$(now_ns); py_run "$1" "bench-$1-$i"; times+=("$(ms_since "$t")"); done
  echo "$first $(printf '%s\n' "${times[@]}" | median)"
}
read -r py_pre_first py_pre_median < <(py_series python)
read -r py_first py_median < <(py_series python-compiling)
py_ratio=$(awk -v a="$py_pre_first" -v b="$wasm_median" 'BEGIN {printf "%.2f", a/b}')
py_wasm=$("$(dirname "$shim")/wasmbox" image inspect "$images/python-compiling.tar" | sed -n 's/.*component (WASI preview 2), \([0-9]*\) bytes/\1/p')

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
  local total=0 procs=0 code_rss=0 code_pss=0
  for i in $(seq "$idle"); do
    for pid in $(container_pids "idle-$label-$i" | sort -u); do
      total=$((total + $(pss_kib "$pid"))); procs=$((procs + 1))
      # The compiled code's mapping (a cache entry or the image's .cwasm): resident vs proportional.
      read -r r p < <(awk '/^[0-9a-f]+-[0-9a-f]+ / {code = ($6 ~ /cwasm$/)} code && /^Rss:/ {r += $2} code && /^Pss:/ {p += $2}
                          END {print r + 0, p + 0}' "/proc/$pid/smaps" 2>/dev/null || echo "0 0")
      code_rss=$((code_rss + r)); code_pss=$((code_pss + p))
    done
  done
  echo "$label: compiled code resident $((code_rss / idle)) KiB per container, PSS $((code_pss / idle)) KiB" >&2
  echo "$((code_rss / idle)) $((code_pss / idle))" > "$work/code-$label"
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
# The same guest from its precompiled layer (the cache emptied, so the image's code is what is mapped).
rm -f "$work"/cache/*
read -r pre_pss pre_procs < <(measure_idle pre "--runtime io.containerd.wasmbox.v1" localhost/wasmbox/probe-precompiled:latest /probe.wasm sleep 600)
read -r code_rss code_pss < "$work/code-wasm"
read -r pre_code_rss pre_code_pss < "$work/code-pre"
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
| wasmbox: the same guest with its precompiled layer (\`probe-precompiled\`, code mapped from the image) | $(awk -v k="$pre_pss" 'BEGIN {printf "%.1f MiB", k/1024}') | $pre_procs |
| runc: busybox \`sleep\` | $(awk -v k="$runc_pss" 'BEGIN {printf "%.1f MiB", k/1024}') | $runc_procs |

Both Wasm rows map the compiled code from one file (a cache entry, or the image's file in the
read-only lower layer of the overlay), so its pages are shared by all $idle containers: per
container, the compiled code is $code_rss KiB resident but $code_pss KiB PSS from the cache, and
$pre_code_rss KiB resident, $pre_code_pss KiB PSS from the image's precompiled layer.

## A big component: Python (componentize-py), with and without \`--precompile\`

\`examples/python\` is $py_wasm bytes of Wasm (CPython in a component). Image \`python\` is built with
\`wasmbox image build --precompile\`, \`python-compiling\` without. The node-local cache is emptied
before each first run. Median of $py_rounds later runs.

| image | first run (ms) | later runs, median (ms) |
|---|---|---|
| \`python\` (precompiled layer) | $py_pre_first | $py_pre_median |
| \`python-compiling\` (compiles on its first run, then maps from the cache) | $py_first | $py_median |
| first run of \`python\` / median of hello | **$py_ratio** | |

In-process floor (\`wasmbox-run --repeat $rounds\`: the same engine and module in one process, no container):

| what | ms |
|---|---|
| compile the module | $compile_ms |
| instantiate and run (median of $rounds) | $run_ms |
MD
cat "$out"
