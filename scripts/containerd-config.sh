#!/usr/bin/env bash
# Adds (or removes) the wasmbox runtime in a containerd config file, idempotently.
#   scripts/containerd-config.sh add|remove CONFIG
# containerd 1.6/1.7 (`version = 2`) and 2.x (`version = 3`) configs are both handled. The block
# sits between marker comments, so `remove` restores the file as it was before `add`.
set -euo pipefail
[ $# -eq 2 ] || { sed -n '2,5p' "$0" >&2; exit 2; }
action=$1 config=$2
begin="# wasmbox: begin (added by wasmbox; remove with: scripts/containerd-config.sh remove)"
end="# wasmbox: end"

strip_block() { awk -v b="$begin" -v e="$end" '$0==b{skip=1} !skip{print} $0==e{skip=0}' "$1"; }

case "$action" in
add)
  if [ -f "$config" ] && grep -qF "$begin" "$config"; then
    echo "containerd-config: $config already has the wasmbox runtime"; exit 0
  fi
  mkdir -p "$(dirname "$config")"
  [ -f "$config" ] || echo "version = 2" > "$config"
  version=$(sed -n 's/^version *= *\([0-9]\).*/\1/p' "$config" | head -n 1)
  if [ "$version" = 3 ]; then
    table='plugins."io.containerd.cri.v1.runtime".containerd.runtimes.wasmbox'
  else
    table='plugins."io.containerd.grpc.v1.cri".containerd.runtimes.wasmbox'
  fi
  if grep -qF "[$table]" "$config"; then
    echo "containerd-config: $config already defines [$table]; leaving it as it is"; exit 0
  fi
  printf '\n%s\n[%s]\n  runtime_type = "io.containerd.wasmbox.v1"\n  pod_annotations = ["wasmbox.io/*"]\n%s\n' "$begin" "$table" "$end" >> "$config"
  echo "containerd-config: added the wasmbox runtime to $config (restart containerd to use it from CRI)"
  ;;
remove)
  [ -f "$config" ] || exit 0
  if grep -qF "$begin" "$config"; then
    tmp=$(mktemp); strip_block "$config" > "$tmp"
    # drop the blank line `add` put before the block
    sed -i '${/^$/d}' "$tmp"; cat "$tmp" > "$config"; rm -f "$tmp"
    echo "containerd-config: removed the wasmbox runtime from $config"
  fi
  ;;
*) echo "containerd-config: unknown action $action" >&2; exit 2 ;;
esac
