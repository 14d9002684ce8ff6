#!/usr/bin/env bash
# `make bench`, HTTP part: requests per second and p99 latency of the hello-http component
# (examples/hello-http) served by wasmbox through containerd, side by side with `wasmtime serve`
# (wasmtime-cli, the same wasmtime version) serving the same component on the same machine,
# measured with wrk, interleaved. Figures go to OUT (docs/benchmarks.md), section "http".
#   scripts/bench-http.sh SHIM IMAGES_DIR WORK OUT HTTP_WASM WASMTIME
set -euo pipefail
shim=$1 images=$2 work=$3 out=$4 http_wasm=$5 wasmtime=$6
here=$(cd "$(dirname "$0")" && pwd)
rounds=${HTTP_ROUNDS:-3} seconds=${HTTP_SECONDS:-5} connections=${HTTP_CONNECTIONS:-32}
command -v wrk >/dev/null || { echo "bench-http: installing wrk (Debian)"; apt-get install -y -qq wrk >/dev/null; }
command -v gnuplot >/dev/null || { echo "bench-http: installing gnuplot-nox (Debian)"; apt-get install -y -qq gnuplot-nox >/dev/null; }
[ -x "$wasmtime" ] || { echo "bench-http: no wasmtime at $wasmtime" >&2; exit 1; }

"$here/containerd.sh" start "$work" "$shim"
serve_pid=""
cleanup() {
  [ -n "$serve_pid" ] && kill "$serve_pid" 2>/dev/null || true
  "$here/containerd.sh" stop "$work"
}
trap cleanup EXIT
export NS=wasmbox-bench
ctr() { "$here/containerd.sh" ctr "$work" "$@"; }
ctr images import "$images/hello-http.tar" >/dev/null

wasmbox_port=${HTTP_PORT:-18181} wasmtime_port=$(( ${HTTP_PORT:-18181} + 1 ))
# The ports must be free, and what answers on them must be the servers started here.
listener_pids() { ss -Hltnp "sport = :$1" | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u; }
for port in $wasmbox_port $wasmtime_port; do
  [ -z "$(ss -Hltn "sport = :$port")" ] || {
    echo "bench-http: port $port is in use ($(ss -Hltnp "sport = :$port" | head -n 1)); set HTTP_PORT to a free pair" >&2; exit 1; }
done
ctr run -d --net-host --runtime io.containerd.wasmbox.v1 \
  --annotation "wasmbox.io/http-address=127.0.0.1:$wasmbox_port" localhost/wasmbox/hello-http:latest bench-http >/dev/null
"$wasmtime" serve -Scli --addr "127.0.0.1:$wasmtime_port" "$http_wasm" >/dev/null 2>&1 &
serve_pid=$!
for port in $wasmbox_port $wasmtime_port; do
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/" >/dev/null && break; sleep 0.1; done
  curl -sf "http://127.0.0.1:$port/" >/dev/null || { echo "bench-http: nothing answers on $port" >&2; exit 1; }
done
[ "$(listener_pids $wasmtime_port)" = "$serve_pid" ] || {
  echo "bench-http: port $wasmtime_port is not served by wasmtime serve (PID $serve_pid)" >&2; exit 1; }
task_pids=$(ctr tasks ps bench-http | awk 'NR>1 {print $1}')
for pid in $(listener_pids $wasmbox_port); do
  grep -qx "$pid" <<<"$task_pids" || { echo "bench-http: port $wasmbox_port is served by PID $pid, not by the container" >&2; exit 1; }
done

# wrk's figures: requests/s and the p99 latency in ms.
measure() {
  wrk -t2 -c"$connections" -d"${seconds}s" --latency "http://127.0.0.1:$1/" | awk '
    /Requests\/sec/ {rps=$2}
    $1=="99%" {v=$2; u=v; sub(/[0-9.]+/, "", u); sub(/[a-z]+$/, "", v);
               ms = (u=="us") ? v/1000 : (u=="s") ? v*1000 : v; p99=ms}
    END {printf "%.0f %.2f\n", rps, p99}'
}
# min, median and max of the numbers on stdin
stats() { sort -g | awk '{a[NR]=$1} END {m = (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2; print a[1], m, a[NR]}'; }
spread() { awk '{printf "%s (%s–%s)", $2, $1, $3}'; }
wb_rps=() wb_p99=() wt_rps=() wt_p99=()
measure $wasmbox_port >/dev/null; measure $wasmtime_port >/dev/null   # warm-up
for _ in $(seq "$rounds"); do
  read -r r p < <(measure $wasmbox_port); wb_rps+=("$r"); wb_p99+=("$p")
  read -r r p < <(measure $wasmtime_port); wt_rps+=("$r"); wt_p99+=("$p")
done
read -r wb_r_min wb_r wb_r_max < <(printf '%s\n' "${wb_rps[@]}" | stats)
read -r wb_p_min wb_p wb_p_max < <(printf '%s\n' "${wb_p99[@]}" | stats)
read -r wt_r_min wt_r wt_r_max < <(printf '%s\n' "${wt_rps[@]}" | stats)
read -r wt_p_min wt_p wt_p_max < <(printf '%s\n' "${wt_p99[@]}" | stats)
rps_ratio=$(awk -v a="$wb_r" -v b="$wt_r" 'BEGIN {printf "%.2f", a/b}')
p99_ratio=$(awk -v a="$wb_p" -v b="$wt_p" 'BEGIN {printf "%.2f", a/b}')
docs=$(dirname "$out")
printf '1 %s %s %s\n2 %s %s %s\n' "$wb_r_min" "$wb_r" "$wb_r_max" "$wt_r_min" "$wt_r" "$wt_r_max" > "$work/http.dat"
gnuplot <<GP
set terminal svg size 640,360 font "sans,12" background "white"
set output "$docs/bench-http.svg"
set title "requests/s, wrk -c$connections: median, min–max over $rounds interleaved rounds"
set yrange [0:*]; set xrange [0.4:2.6]; set style fill solid 0.5; set boxwidth 0.5; unset key
set xtics ("wasmbox (containerd)" 1, "wasmtime serve" 2)
plot "$work/http.dat" using 1:3 with boxes lc rgb "#228833", "" using 1:3:2:4 with yerrorbars lc rgb "black" pt 0
GP
ctr tasks kill -s SIGTERM bench-http >/dev/null || true

"$here/doc-section.sh" "$out" http <<MD
## HTTP: a wasi:http component, wasmbox against \`wasmtime serve\`

Command: \`make bench\` (\`scripts/bench-http.sh\`). Last run: $(date -u +%Y-%m-%d), $(nproc) cores, $(wrk --version 2>&1 | head -n 1 | awk '{print $1, $2}').

\`examples/hello-http\` ($(stat -c %s "$http_wasm") bytes) answers every request with one line. wasmbox serves
it from a container (\`ctr run --net-host\`, image \`hello-http\`); \`$("$wasmtime" --version)\` serves the
same file with \`wasmtime serve -Scli\` (its defaults, plus the \`wasi:cli\` imports Rust's std links). Both give every request a fresh instance.
\`wrk -t2 -c$connections -d${seconds}s\` against each over loopback, $rounds rounds interleaved after a
warm-up, median (min–max); the client shares the $(nproc) cores with the server.

| server | requests/s | p99 latency (ms) |
|---|---|---|
| wasmbox (containerd, \`io.containerd.wasmbox.v1\`) | $(echo "$wb_r_min $wb_r $wb_r_max" | spread) | $(echo "$wb_p_min $wb_p $wb_p_max" | spread) |
| \`wasmtime serve\` | $(echo "$wt_r_min $wt_r $wt_r_max" | spread) | $(echo "$wt_p_min $wt_p $wt_p_max" | spread) |
| **wasmbox / wasmtime serve, medians** | **$rps_ratio** | **$p99_ratio** |

![HTTP throughput](bench-http.svg)
MD
echo "bench-http: wasmbox $wb_r req/s p99 $wb_p ms; wasmtime serve $wt_r req/s p99 $wt_p ms (ratios $rps_ratio, $p99_ratio)"
