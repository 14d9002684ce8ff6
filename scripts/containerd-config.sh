#!/usr/bin/env bash
# Adds (or removes) the wasmbox runtime in a containerd config file, idempotently.
#   scripts/containerd-config.sh add|remove CONFIG
# containerd 1.6/1.7 (`version = 2`) and 2.x (`version = 3`) configs are both handled. A 2.x
# config whose `imports` names a drop-in directory (`"/etc/containerd/conf.d/*.toml"`) gets a
# drop-in file `wasmbox.toml` there (2.x merges imported plugin tables into the main config);
# otherwise the block goes into the file itself, between marker comments, so that `remove`
# restores the file as it was before `add`. HOST_ROOT (default empty) prefixes the drop-in
# directory when the config is edited from outside the node's root (the installer's /host).
set -euo pipefail
[ $# -eq 2 ] || { sed -n '2,5p' "$0" >&2; exit 2; }
action=$1 config=$2
begin="# wasmbox: begin (added by wasmbox; remove with: scripts/containerd-config.sh remove)"
end="# wasmbox: end"

# The drop-in directory named by a version 3 config's `imports`, if any.
dropin_dir() {
  sed -n 's/^imports *= *\[\(.*\)\]/\1/p' "$1" | tr ',' '\n' | sed -n 's/^ *"\(\/.*\)\/\*\.toml" *$/\1/p' | head -n 1
}
runtime_block() { # runtime_block TABLE
  printf '%s\n[%s]\n  runtime_type = "io.containerd.wasmbox.v1"\n  pod_annotations = ["wasmbox.io/*"]\n%s\n' "$begin" "$1" "$end"
}

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
  dir=$( [ "$version" = 3 ] && dropin_dir "$config" || true)
  if [ -n "$dir" ]; then
    dropin="${HOST_ROOT:-}$dir/wasmbox.toml"
    if [ -f "$dropin" ] && grep -qF "$begin" "$dropin"; then
      echo "containerd-config: $dropin already has the wasmbox runtime"; exit 0
    fi
    mkdir -p "$(dirname "$dropin")"
    { echo "version = 3"; runtime_block "$table"; } > "$dropin"
    echo "containerd-config: added the wasmbox runtime in the drop-in $dropin (restart containerd to use it from CRI)"
    exit 0
  fi
  if grep -qF "[$table]" "$config"; then
    echo "containerd-config: $config already defines [$table]; leaving it as it is"; exit 0
  fi
  { echo; runtime_block "$table"; } >> "$config"
  echo "containerd-config: added the wasmbox runtime to $config (restart containerd to use it from CRI)"
  ;;
remove)
  [ -f "$config" ] || exit 0
  dir=$(dropin_dir "$config")
  if [ -n "$dir" ] && [ -f "${HOST_ROOT:-}$dir/wasmbox.toml" ] && grep -qF "$begin" "${HOST_ROOT:-}$dir/wasmbox.toml"; then
    rm -f "${HOST_ROOT:-}$dir/wasmbox.toml"
    echo "containerd-config: removed the drop-in ${HOST_ROOT:-}$dir/wasmbox.toml"
  fi
  if grep -qF "$begin" "$config"; then
    tmp=$(mktemp); strip_block "$config" > "$tmp"
    # drop the blank line `add` put before the block
    sed -i '${/^$/d}' "$tmp"; cat "$tmp" > "$config"; rm -f "$tmp"
    echo "containerd-config: removed the wasmbox runtime from $config"
  fi
  ;;
*) echo "containerd-config: unknown action $action" >&2; exit 2 ;;
esac
