#!/usr/bin/env bash
# `make bench`: start-up of the Wasm hello image through wasmbox (on wasmtime and on Wasmer) against
# busybox `echo` through runc (interleaved, one run, one private containerd), where wasmbox's time
# goes phase by phase, memory per idle container against the number of containers (wasmbox with a
# shim per container, on each engine, wasmbox with one shim per group, runc), the Python component with and without its precompiled
# layer, and the in-process floor. Figures go to OUT (docs/benchmarks.md), plots next to it.
#   scripts/bench.sh SHIM IMAGES_DIR WORK OUT HELLO_WASM
set -euo pipefail
shim=$1 images=$2 work=$3 out=$4 hello_wasm=$5
here=$(cd "$(dirname "$0")" && pwd)
docs=$(dirname "$out")
rounds=${ROUNDS:-20} py_rounds=${PY_ROUNDS:-10} sizes=${SIZES:-10 25 50}
command -v gnuplot >/dev/null || { echo "bench: installing gnuplot-nox (Debian)"; apt-get install -y -qq gnuplot-nox >/dev/null; }

# A fresh containerd and an empty compiled-code cache: the first runs below are cold.
"$here/containerd.sh" stop "$work" >/dev/null 2>&1 || true
rm -rf "$work"
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
# min, median and max of the numbers on stdin
stats() { sort -g | awk '{a[NR]=$1} END {if (!NR) {print "- - -"; exit}
  m = (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2; printf "%.1f %.1f %.1f\n", a[1], m, a[NR]}'; }
spread() { awk '{printf "%s (%s–%s)", $2, $1, $3}'; }   # "min med max" → "med (min–max)"
wasm_run() { ctr run --rm --runtime io.containerd.wasmbox.v1 localhost/wasmbox/hello:latest "$1" >/dev/null; }
wasmer_run() { ctr run --rm --runtime io.containerd.wasmbox-wasmer.v1 localhost/wasmbox/hello:latest "$1" >/dev/null; }
runc_run() { ctr run --rm localhost/wasmbox/busybox:latest "$1" >/dev/null; }

# --- start-up -------------------------------------------------------------------------------
[ -z "$(ls -A "$work/cache" 2>/dev/null)" ] || { echo "bench: the cache is not empty before the first run" >&2; exit 1; }
t=$(now_ns); wasm_run bench-wasm-first; wasm_first=$(ms_since "$t")
t=$(now_ns); runc_run bench-runc-first; runc_first=$(ms_since "$t")
t=$(now_ns); wasmer_run bench-wasmer-first; wasmer_first=$(ms_since "$t")
wasm_times=() runc_times=() wasmer_times=()
for i in $(seq "$rounds"); do
  t=$(now_ns); wasm_run "bench-wasm-$i"; wasm_times+=("$(ms_since "$t")")
  t=$(now_ns); runc_run "bench-runc-$i"; runc_times+=("$(ms_since "$t")")
  t=$(now_ns); wasmer_run "bench-wasmer-$i"; wasmer_times+=("$(ms_since "$t")")
done
read -r wasm_min wasm_med wasm_max < <(printf '%s\n' "${wasm_times[@]}" | stats)
read -r runc_min runc_med runc_max < <(printf '%s\n' "${runc_times[@]}" | stats)
read -r wasmer_min wasmer_med wasmer_max < <(printf '%s\n' "${wasmer_times[@]}" | stats)
ratio=$(awk -v a="$wasm_med" -v b="$runc_med" 'BEGIN {printf "%.2f", a/b}')
wasmer_ratio=$(awk -v a="$wasmer_med" -v b="$runc_med" 'BEGIN {printf "%.2f", a/b}')

# Phases, from the lines the shim logs for each timed run (containerd's log): create (the create
# helper: namespaces, mounts, cgroups, the module loaded in the container's init), load (mapping
# or compiling the module, part of create), start, run (from the start to the init's exit, as the
# shim sees it), delete. The rest is containerd, ctr, starting the shim and the exit reaching ctr.
phase() { # phase NAME [RUNS] → stats over the timed rounds of RUNS (bench-wasm, bench-wasmer)
  local runs=${2:-bench-wasm}
  grep -h -o -E "$runs-[0-9]+: phase $1: [0-9.]+|instance=\"$runs-[0-9]+\" msg=\"phase $1: [0-9.]+" \
    "$work/containerd.log" | awk '{print $NF}' | stats
}
read -r create_min create_med create_max < <(phase create)
read -r load_min load_med load_max < <(phase load)
read -r start_min start_med start_max < <(phase start)
read -r delete_min delete_med delete_max < <(phase delete)
read -r run_min run_med run_max < <(phase run)
first_load=$(grep -h -o -E 'instance="bench-wasm-first" msg="phase load: [0-9.]+' "$work/containerd.log" | awk '{print $NF}')
read -r wasmer_create_min wasmer_create_med wasmer_create_max < <(phase create bench-wasmer)
read -r wasmer_load_min wasmer_load_med wasmer_load_max < <(phase load bench-wasmer)
read -r wasmer_run_min wasmer_run_med wasmer_run_max < <(phase run bench-wasmer)
wasmer_first_load=$(grep -h -o -E 'instance="bench-wasmer-first" msg="phase load: [0-9.]+' "$work/containerd.log" | awk '{print $NF}')
rest_med=$(awk -v t="$wasm_med" -v c="$create_med" -v s="$start_med" -v d="$delete_med" -v r="$run_med" \
  'BEGIN {printf "%.1f", t-c-s-d-r}')

# --- in-process floor -----------------------------------------------------------------------
floor=$("$(dirname "$shim")/wasmbox-run" --repeat "$rounds" "$hello_wasm" 2>&1 >/dev/null | tail -n 1)
compile_ms=$(sed -n 's/.*compile_ms=\([0-9.]*\).*/\1/p' <<<"$floor")
run_ms=$(sed -n 's/.*run_median_ms=\([0-9.]*\).*/\1/p' <<<"$floor")
wasmer_floor=$("$(dirname "$shim")/wasmbox-run" --engine wasmer --repeat "$rounds" "$hello_wasm" 2>&1 >/dev/null | tail -n 1)
wasmer_compile_ms=$(sed -n 's/.*compile_ms=\([0-9.]*\).*/\1/p' <<<"$wasmer_floor")
wasmer_run_ms=$(sed -n 's/.*run_median_ms=\([0-9.]*\).*/\1/p' <<<"$wasmer_floor")

# --- the Python component -------------------------------------------------------------------
py_run() { ctr run --rm --runtime io.containerd.wasmbox.v1 "localhost/wasmbox/$1:latest" "$2" >/dev/null; }
py_series() { # py_series IMAGE → "first min med max"
  rm -rf "$work"/cache/*
  local t first times=()
  t=$(now_ns); py_run "$1" "bench-$1-first"; first=$(ms_since "$t")
  for i in $(seq "$py_rounds"); do t=$(now_ns); py_run "$1" "bench-$1-$i"; times+=("$(ms_since "$t")"); done
  echo "$first $(printf '%s\n' "${times[@]}" | stats)"
}
read -r py_pre_first py_pre_min py_pre_med py_pre_max < <(py_series python)
read -r py_first py_min py_med py_max < <(py_series python-compiling)
py_wasm=$("$(dirname "$shim")/wasmbox" image inspect "$images/python-compiling.tar" | sed -n 's/.*component (WASI preview 2), \([0-9]*\) bytes/\1/p')

# --- memory per idle container ----------------------------------------------------------------
# Each container's cost: the processes in it (`ctr tasks ps`) plus its share of its shim (the
# shim's PSS divided by the containers it serves; a container's init is the shim's child).
# PSS and RSS from /proc/PID/smaps_rollup; min, median and max over the containers.
rollup() { awk '/^Rss:/ {r=$2} /^Pss:/ {p=$2} END {print r+0, p+0}' "/proc/$1/smaps_rollup" 2>/dev/null || echo "0 0"; }
ppid_of() { awk '{sub(/.*\) /, ""); print $2}' "/proc/$1/stat"; }
mem_series() { # mem_series LABEL N FLAGS IMAGE ARGS… → "pss_min pss_med pss_max rss_min rss_med rss_max procs"
  local label=$1 n=$2 flags=$3 image=$4; shift 4
  local ids=() id
  for i in $(seq "$n"); do id="idle-$label-$n-$i"; ids+=("$id"); ctr run -d $flags "$image" "$id" "$@" >/dev/null; done
  sleep 2
  declare -A shim_of=() served=()
  local pids_of=()
  for id in "${ids[@]}"; do
    local pids; pids=$(ctr tasks ps "$id" | awk 'NR>1 {print $1}' | tr '\n' ' ')
    pids_of+=("$pids")
    local shim; shim=$(ppid_of "${pids%% *}")
    shim_of[$id]=$shim; served[$shim]=$(( ${served[$shim]:-0} + 1 ))
  done
  # Measured idle: a call (the `ctr tasks ps` above) maps the code that answers it, which a shim
  # lets go a second after its last call.
  sleep 2
  local k=0 pss_list=() rss_list=() procs=0
  for id in "${ids[@]}"; do
    local pss=0 rss=0 shim=${shim_of[$id]}
    for pid in ${pids_of[$k]}; do read -r r p < <(rollup "$pid"); rss=$((rss + r)); pss=$((pss + p)); procs=$((procs + 1)); done
    read -r r p < <(rollup "$shim")
    rss=$((rss + r / ${served[$shim]})); pss=$((pss + p / ${served[$shim]}))
    pss_list+=("$(awk -v k="$pss" 'BEGIN {printf "%.2f", k/1024}')"); rss_list+=("$(awk -v k="$rss" 'BEGIN {printf "%.2f", k/1024}')")
    k=$((k + 1))
  done
  local shims=${#served[@]}
  for id in "${ids[@]}"; do ctr tasks kill -s SIGKILL "$id" >/dev/null 2>&1 || true; done
  sleep 1
  for id in "${ids[@]}"; do
    ctr tasks delete "$id" >/dev/null 2>&1 || true
    ctr containers delete "$id" >/dev/null 2>&1 || true
  done
  echo "$(printf '%s\n' "${pss_list[@]}" | stats2) $(printf '%s\n' "${rss_list[@]}" | stats2) $(awk -v p="$procs" -v s="$shims" -v n="$n" 'BEGIN {printf "%.2f", (p+s)/n}')"
}
stats2() { sort -g | awk '{a[NR]=$1} END {m = (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2; printf "%.2f %.2f %.2f", a[1], m, a[NR]}'; }
# The probe's code compiled into the cache first (the Python series emptied it): a container that
# compiles keeps the compiler's heap, which is not what an idle container of a cached module costs.
ctr run --rm --runtime io.containerd.wasmbox.v1 localhost/wasmbox/probe:latest bench-probe-warm /probe.wasm exit 0 >/dev/null
ctr run --rm --runtime io.containerd.wasmbox-wasmer.v1 localhost/wasmbox/probe:latest bench-probe-warm-wasmer /probe.wasm exit 0 >/dev/null
mem_data="$work/memory.dat"
echo "# n wasm(pss min med max rss min med max procs) grouped(…) runc(…) wasmer(…)" > "$mem_data"
mem_rows=""
row() { # row LABEL "pss(min med max) rss(min med max) procs", for N=$n
  set -- "$1" $2
  printf '| %s | %s | %s MiB (%s–%s) | %s MiB (%s–%s) | %s |\n' "$n" "$1" "$3" "$2" "$4" "$6" "$5" "$7" "$8"
}
for n in $sizes; do
  wasm=$(mem_series wasm "$n" "--runtime io.containerd.wasmbox.v1" localhost/wasmbox/probe:latest /probe.wasm sleep 600)
  grouped=$(mem_series group "$n" "--runtime io.containerd.wasmbox.v1 --annotation io.containerd.runc.v2.group=bench-$n" \
    localhost/wasmbox/probe:latest /probe.wasm sleep 600)
  runc=$(mem_series runc "$n" "" localhost/wasmbox/busybox:latest /bin/busybox sleep 600)
  wasmer=$(mem_series wasmer "$n" "--runtime io.containerd.wasmbox-wasmer.v1" localhost/wasmbox/probe:latest /probe.wasm sleep 600)
  echo "$n $wasm $grouped $runc $wasmer" >> "$mem_data"
  mem_rows+="$(row "wasmbox, a shim per container" "$wasm")"$'\n'
  mem_rows+="$(row "wasmbox on Wasmer, a shim per container" "$wasmer")"$'\n'
  mem_rows+="$(row "wasmbox, one shim for the group" "$grouped")"$'\n'
  mem_rows+="$(row "runc busybox \`sleep\`" "$runc")"$'\n'
done
# The same guest from its precompiled layer (the cache emptied: the image's code is what is
# mapped), at the largest size.
biggest=${sizes##* }
rm -rf "$work"/cache/*
pre=$(mem_series pre "$biggest" "--runtime io.containerd.wasmbox.v1" localhost/wasmbox/probe-precompiled:latest /probe.wasm sleep 600)
n=$biggest; mem_rows+="$(row "wasmbox, a shim per container, code from the image's precompiled layer" "$pre")"$'\n'

# --- plots ----------------------------------------------------------------------------------
startup_data="$work/startup.dat"
{
  echo "1 \"wasmbox hello\" $wasm_min $wasm_med $wasm_max"
  echo "2 \"runc busybox echo\" $runc_min $runc_med $runc_max"
  echo "3 \"wasmbox hello on Wasmer\" $wasmer_min $wasmer_med $wasmer_max"
} > "$startup_data"
gnuplot <<GP
set terminal svg size 640,360 font "sans,12" background "white"
set output "$docs/bench-startup.svg"
set title "ctr run --rm: median, min–max over $rounds interleaved rounds"
set ylabel "ms"; set yrange [0:*]; set xrange [0.4:3.6]; set style fill solid 0.5; set boxwidth 0.5; unset key
set xtics ("wasmbox hello" 1, "runc busybox echo" 2, "wasmbox hello on Wasmer" 3)
plot "$startup_data" using 1:4 with boxes lc rgb "#4477aa", "" using 1:4:3:5 with yerrorbars lc rgb "black" pt 0
set output "$docs/bench-memory.svg"
set title "PSS per idle container: median, min–max over the containers"
set xlabel "idle containers"; set ylabel "MiB"; set yrange [0:*]; set xrange [0:*]; set key top right; unset xtics; set xtics
plot "$mem_data" using 1:3:2:4 with yerrorlines title "wasmbox, a shim per container", \
     "" using 1:10:9:11 with yerrorlines title "wasmbox, one shim per group", \
     "" using 1:17:16:18 with yerrorlines title "runc busybox sleep", \
     "" using 1:24:23:25 with yerrorlines title "wasmbox on Wasmer, a shim per container"
GP

"$here/doc-section.sh" "$out" startup <<MD
## Start-up: \`ctr run --rm\` of the Wasm hello image against busybox \`echo\` with runc

Command: \`make bench\` (\`scripts/bench.sh\`). Last run: $(date -u +%Y-%m-%d), $(nproc) cores, Linux $(uname -r),
$(containerd --version | awk '{print $1, $3}'), $(runc --version | head -n 1).

$rounds rounds, interleaved (wasmbox, then runc, in each round), on one fresh private containerd, after
one first run of each. The hello image is \`examples/hello-rust\` (wasm32-wasip1, $(stat -c %s "$hello_wasm") bytes) in a tar
layer; busybox is Debian's static busybox in a tar layer running \`echo\`. Times are wall-clock times of
the whole \`ctr run --rm\` command (create, start, wait, delete), as median (min–max).

![start-up](bench-startup.svg)

| what | ms |
|---|---|
| \`ctr run --rm --runtime io.containerd.wasmbox.v1\` hello | $(echo "$wasm_min $wasm_med $wasm_max" | spread) |
| \`ctr run --rm\` busybox echo (runc) | $(echo "$runc_min $runc_med $runc_max" | spread) |
| **ratio of the medians, wasmbox / runc** | **$ratio** |
| first run of hello: cold, the cache empty (compiles the module, $first_load ms, and fills the cache) | $wasm_first |
| first run of busybox (runc) | $runc_first |
| \`ctr run --rm --runtime io.containerd.wasmbox-wasmer.v1\` hello (Wasmer) | $(echo "$wasmer_min $wasmer_med $wasmer_max" | spread) |
| ratio of the medians, wasmbox on Wasmer / runc | $wasmer_ratio |
| first run of hello on Wasmer: its cache entry empty (Wasmer compiles the module, $wasmer_first_load ms) | $wasmer_first |

### Where wasmbox's time goes

From the lines the shim logs for each timed run (\`phase NAME: MS\` in containerd's log), median (min–max):

| phase | ms |
|---|---|
| create: the shim execs \`wasmbox-oci\` as its create helper (and reads the image's layers and labels from containerd meanwhile), which has libcontainer make the container (namespaces, mounts, cgroups) and the container's init load the module | $(echo "$create_min $create_med $create_max" | spread) |
| … of which load: the module's compiled code mapped from the node's cache | $(echo "$load_min $load_med $load_max" | spread) |
| start: the init told to run the guest | $(echo "$start_min $start_med $start_max" | spread) |
| run: from the start to the init's exit, as the shim sees it (the guest instantiated with its WASI context, its \`_start\`, the process's end) | $(echo "$run_min $run_med $run_max" | spread) |
| delete: the container's state, cgroups and mounts removed | $(echo "$delete_min $delete_med $delete_max" | spread) |
| the rest of the median (containerd's create and delete, the snapshot, \`ctr\`, starting the shim process, the guest's exit reaching the shim and \`ctr\`) | $rest_med |

On Wasmer (\`--runtime io.containerd.wasmbox-wasmer.v1\`), median (min–max): create $(echo "$wasmer_create_min $wasmer_create_med $wasmer_create_max" | spread) ms,
of which load $(echo "$wasmer_load_min $wasmer_load_med $wasmer_load_max" | spread) ms (Wasmer copies the cached code into memory
of its own, where wasmtime maps it), run $(echo "$wasmer_run_min $wasmer_run_med $wasmer_run_max" | spread) ms.

In-process floor (\`wasmbox-run --repeat $rounds\`: the same engine and module in one process, no container):
compiling the module takes $compile_ms ms; instantiating and running it, $run_ms ms (median of $rounds).
On Wasmer (\`wasmbox-run --engine wasmer\`): compiling $wasmer_compile_ms ms, instantiating and running $wasmer_run_ms ms.

## Memory per idle container

Command: \`make bench\`. A sleeping guest (\`probe sleep\`, Wasm, its code mapped from the node's cache)
or busybox \`sleep\` (runc); N containers started one after another, then measured. A container's cost is
the PSS (and RSS) of the processes in it (\`ctr tasks ps\`) plus its share of its shim: the shim's
figure divided by the containers it serves. With \`--annotation io.containerd.runc.v2.group=G\` all N share
one shim (containerd-shim-runc-v2 reads the same annotation; CRI groups a pod's containers the same way).
Median (min–max) over the N containers; processes counts the shim once per group.

![memory](bench-memory.svg)

| N | runtime | PSS per container | RSS per container | processes per container |
|---|---|---|---|---|
$mem_rows
RSS counts every page a process maps, shared or not: most of a wasmbox process's RSS is code (the
init's \`wasmbox-oci\`, the shim's own binary, libc), one copy in the page cache for the whole node
(Linux maps cached file pages 64 KiB around each page a process touches); PSS divides each shared
page among the processes that map it. Once a container runs, its init and its shim let go of the
code that creating and starting it needed (it stays in the page cache; see
\`vendor/containerd-shim-wasm/src/sys/unix/resident.rs\`); what they map when idle is what the guest's
run and the shim's replies touched since.

## A big component: Python (componentize-py), with and without \`--precompile\`

\`examples/python\` is $py_wasm bytes of Wasm (CPython in a component). Image \`python\` is built with
\`wasmbox image build --precompile\`, \`python-compiling\` without. The node's cache is emptied
before each first run. Later runs: median (min–max) of $py_rounds.

| image | first run (ms) | later runs (ms) |
|---|---|---|
| \`python\` (precompiled layer, trusted by this node) | $py_pre_first | $(echo "$py_pre_min $py_pre_med $py_pre_max" | spread) |
| \`python-compiling\` (compiles on its first run, then maps from the cache) | $py_first | $(echo "$py_min $py_med $py_max" | spread) |
MD
echo "bench: wasmbox $wasm_med ms, on Wasmer $wasmer_med ms, runc $runc_med ms (ratio $ratio, Wasmer $wasmer_ratio); memory at $biggest: $(tail -n 1 "$mem_data")"
