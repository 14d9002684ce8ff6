#!/usr/bin/env bash
# `make stress`: 1000 sequential and 50 concurrent `ctr run --rm` of the Wasm hello image, then a
# check that nothing is left; the figures go to OUT (docs/benchmarks.md, section "stress").
#   scripts/stress.sh OUT
set -euo pipefail
out=$1
here=$(cd "$(dirname "$0")" && pwd)
load=${WASMBOX_LOAD:-1000x50}
log=$(mktemp)
WASMBOX_LOAD=$load cargo test --release -p wasmbox-shim --test load -- --nocapture 2>&1 | tee "$log"
line=$(grep '^load: ' "$log" | tail -n 1)
rm -f "$log"
[ -n "$line" ] || { echo "stress: the load test printed no figures" >&2; exit 1; }
"$here/doc-section.sh" "$out" stress <<MD
## Stress: no leaks under load

Command: \`make stress\` (\`scripts/stress.sh\`, the test \`shim/tests/load.rs\` with \`WASMBOX_LOAD=$load\`).
Last run: $(date -u +%Y-%m-%d), $(nproc) cores. \`ctr run --rm\` of the hello image, one after another, then
all at once; afterwards no containerd task or container, shim process, mount, cgroup or runtime
state of any of them is left (the test fails otherwise).

    ${line#load: }
MD
echo "stress: figures written to $out"
