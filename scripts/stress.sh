#!/usr/bin/env bash
# `make stress`: 1000 sequential and 50 concurrent `ctr run --rm` of the Wasm hello image; 1000
# idle Wasm containers at once, then 1000 idle runc busybox containers; each followed by a check
# that nothing is left. The figures go to OUT (docs/benchmarks.md, section "stress").
#   scripts/stress.sh OUT [LOG]   LOG: write the section from the saved output of an earlier run
set -euo pipefail
out=$1 saved=${2:-}
here=$(cd "$(dirname "$0")" && pwd)
load=${WASMBOX_LOAD:-1000x50} idle=${WASMBOX_IDLE:-1000}
if [ -n "$saved" ]; then
  log=$saved
else
  log=$(mktemp)
  trap 'rm -f "$log"' EXIT
  WASMBOX_LOAD=$load WASMBOX_IDLE=$idle cargo test --release -p wasmbox-shim --test load -- --nocapture --test-threads 1 2>&1 | tee "$log"
fi
# The test's lines may follow libtest's "test NAME ... " on the same line.
line=$(grep -o 'load: .*' "$log" | tail -n 1)
idle_lines=$(grep -o 'idle: .*' "$log" | sed 's/^idle: /    /')
[ -n "$line" ] && [ -n "$idle_lines" ] || { echo "stress: the load test printed no figures" >&2; exit 1; }
"$here/doc-section.sh" "$out" stress <<MD
## Stress: no leaks under load, $idle idle containers

Command: \`make stress\` (\`scripts/stress.sh\`, the tests of \`shim/tests/load.rs\` with \`WASMBOX_LOAD=$load\`
and \`WASMBOX_IDLE=$idle\`). Last run: $(date -u +%Y-%m-%d), $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), Linux $(uname -r).

\`ctr run --rm\` of the hello image, one after another, then all at once:

    ${line#load: }

$idle idle containers of each runtime, started with \`ctr run -d\` four at a time (wasmbox: the \`probe\`
guest sleeping, its code mapped from the node's cache; runc: busybox \`sleep\`); each must be RUNNING
in \`ctr tasks ls\` and list its process in \`ctr tasks ps\`. PSS is summed over every process they cost
(their own and their shims). The runc set runs after the wasmbox set is gone: together they would come
close to this machine's \`kernel.pid_max\` ($(cat /proc/sys/kernel/pid_max)): every shim is a dozen threads or more.

$idle_lines

After each part no containerd task or container, shim process, mount, cgroup or runtime state is
left (the tests fail otherwise).
MD
echo "stress: figures written to $out"
