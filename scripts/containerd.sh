#!/usr/bin/env bash
# A private containerd for the demo, the tests and the benchmarks: its own root, state, socket,
# opt dir (whose bin/ holds the shim, also as containerd-shim-wasmbox-wasmer-v1 for the CRI runtime
# `wasmbox-wasmer`, and comes first on the shims' PATH), compiled-code cache and
# wasmbox runtime state (WASMBOX_CACHE_DIR=WORK/cache, WASMBOX_STATE_DIR=WORK/run).
#
#   scripts/containerd.sh start WORK SHIM   start it (SHIM: the containerd-shim-wasmbox-v1 to use, with
#                                           its wasmbox-oci beside it;
#                                           `none`: no shim and no wasmbox runtime, for the installer test)
#   scripts/containerd.sh stop WORK         stop it by its own PID and remove what it left
#   scripts/containerd.sh restart WORK      stop containerd alone (shims and state stay), start it again
#   scripts/containerd.sh ctr WORK ARGS…    run ctr against it (namespace: $NS, default wasmbox)
#
# At start, WASMBOX_PRECOMPILED (if set) goes into containerd's environment, where the shims read
# it, WASMBOX_CRI_OPTIONS (if set: TOML lines) becomes the wasmbox runtime's CRI options table, and
# CONTAINERD_BIN_DIR (if set) names the directory of the containerd, ctr and
# containerd-shim-runc-v2 to use (another release: scripts/releases.sh), else the host's, and
# CONTAINERD_CONFIG_FILE (if set, with SHIM `none`) is the configuration to run with, copied as
# it is (its root, state, socket and opt dir must be under WORK) instead of the generated one.
set -euo pipefail

usage() { sed -n '2,18p' "$0" >&2; exit 2; }

# Starts containerd on the config in $work, with the environment saved at start, and waits for
# its socket.
launch() {
  local env=(WASMBOX_CACHE_DIR="$work/cache" WASMBOX_STATE_DIR="$work/run")
  if [ -s "$work/shim.env" ]; then mapfile -t -O 2 env < "$work/shim.env"; fi
  # exec: \$! is containerd's own PID, not a wrapper shell's.
  (cd / && exec env "${env[@]}" "$(bin containerd)" --config "$work/config.toml" >>"$work/containerd.log" 2>&1) &
  echo $! > "$work/containerd.pid"
  for _ in $(seq 100); do
    if "$(bin ctr)" -a "$sock" version >/dev/null 2>&1; then return 0; fi
    kill -0 "$(cat "$work/containerd.pid")" 2>/dev/null || break
    sleep 0.1
  done
  echo "containerd.sh: containerd did not come up; its log:" >&2
  tail -n 30 "$work/containerd.log" >&2
  return 1
}

# Stops containerd by its PID (SIGTERM, then SIGKILL after 5 s).
stop_containerd() {
  [ -f "$work/containerd.pid" ] || return 0
  local pid; pid=$(cat "$work/containerd.pid")
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$work/containerd.pid"
}
# The path of containerd's binary NAME for this instance: from the directory saved at start.
bin() {
  if [ -s "$work/bin-dir" ]; then echo "$(cat "$work/bin-dir")/$1"; else command -v "$1"; fi
}
[ $# -ge 2 ] || usage
cmd=$1
work=$(realpath -m "$2")
sock="$work/containerd.sock"

case "$cmd" in
start)
  [ $# -eq 3 ] || usage
  shim=$3
  [ "$(id -u)" = 0 ] || { echo "containerd.sh: containerd needs root" >&2; exit 1; }
  mkdir -p "$work"
  if [ -n "${CONTAINERD_BIN_DIR:-}" ]; then
    [ -x "$CONTAINERD_BIN_DIR/containerd" ] || { echo "containerd.sh: no containerd in $CONTAINERD_BIN_DIR (run: scripts/releases.sh)" >&2; exit 1; }
    realpath "$CONTAINERD_BIN_DIR" > "$work/bin-dir"
  else
    command -v containerd >/dev/null || { echo "containerd.sh: containerd is not installed (run: make deps)" >&2; exit 1; }
    rm -f "$work/bin-dir"
  fi
  [ "$shim" = none ] || [ -x "$shim" ] || { echo "containerd.sh: no shim at $shim (run: make build)" >&2; exit 1; }
  # The shim creates its containers with the wasmbox-oci beside it.
  helper="$(dirname "$shim")/wasmbox-oci"
  [ "$shim" = none ] || [ -x "$helper" ] || { echo "containerd.sh: no wasmbox-oci beside the shim at $helper (run: make build)" >&2; exit 1; }
  if [ -f "$work/containerd.pid" ] && kill -0 "$(cat "$work/containerd.pid")" 2>/dev/null; then
    echo "containerd.sh: a containerd already runs for $work (pid $(cat "$work/containerd.pid"))" >&2; exit 1
  fi
  mkdir -p "$work"/{root,state,opt/bin,cni-conf,cache,run}
  : > "$work/shim.env"
  if [ -n "${WASMBOX_PRECOMPILED:-}" ]; then echo "WASMBOX_PRECOMPILED=$WASMBOX_PRECOMPILED" >> "$work/shim.env"; fi
  runtime=""
  if [ "$shim" != none ]; then
    install -m 0755 "$shim" "$work/opt/bin/containerd-shim-wasmbox-v1"
    install -m 0755 "$helper" "$work/opt/bin/wasmbox-oci"
    # The same shim as runtime io.containerd.wasmbox-wasmer.v1: Wasmer is its default engine.
    ln -sf containerd-shim-wasmbox-v1 "$work/opt/bin/containerd-shim-wasmbox-wasmer-v1"
    runtime='      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.wasmbox-wasmer]
        runtime_type = "io.containerd.wasmbox-wasmer.v1"
        pod_annotations = ["wasmbox.io/*"]
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.wasmbox]
        runtime_type = "io.containerd.wasmbox.v1"
        pod_annotations = ["wasmbox.io/*"]'
    if [ -n "${WASMBOX_CRI_OPTIONS:-}" ]; then
      # Through ConfigPath, which every containerd release hands to the shim (1.6 drops other keys).
      printf '%s\n' "$WASMBOX_CRI_OPTIONS" > "$work/runtime-options.toml"
      runtime+=$'\n        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.wasmbox.options]\n'
      runtime+="          ConfigPath = \"$work/runtime-options.toml\""
    fi
  fi
  if [ -n "${CONTAINERD_CONFIG_FILE:-}" ]; then
    cp "$CONTAINERD_CONFIG_FILE" "$work/config.toml"
    : > "$work/containerd.log"
    launch
    exit 0
  fi
  cat > "$work/config.toml" <<TOML
version = 2
root = "$work/root"
state = "$work/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = "$sock"
[ttrpc]
  address = ""
[plugins]
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "localhost/wasmbox/pause:latest"
    netns_mounts_under_state_dir = true
    restrict_oom_score_adj = true
    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "/usr/lib/cni"
      conf_dir = "$work/cni-conf"
    [plugins."io.containerd.grpc.v1.cri".containerd]
      snapshotter = "overlayfs"
      default_runtime_name = "runc"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
$runtime
  [plugins."io.containerd.internal.v1.opt"]
    path = "$work/opt"
  # containerd 1.7 and 2.x: no NRI socket in the node's /var/run/nri
  [plugins."io.containerd.nri.v1.nri"]
    disable = true
TOML
  : > "$work/containerd.log"
  launch
  ;;
restart)
  stop_containerd
  launch
  ;;
stop)
  # The tasks this containerd still has (namespace/id), and the cgroup of each from its bundle's
  # spec: only those are ended and removed, never a cgroup found by name elsewhere on the node.
  taskdir="$work/state/io.containerd.runtime.v2.task"
  tasks=$(cd "$taskdir" 2>/dev/null && ls -d */* 2>/dev/null || true)
  cgroup_dirs=()
  for task in $tasks; do
    path=$(sed -n 's/.*"cgroupsPath":"\([^"]*\)".*/\1/p' "$taskdir/$task/config.json" 2>/dev/null || true)
    case "$path" in
      /*) ;;
      "") continue ;;
      *) echo "containerd.sh: task $task: cgroupsPath $path is not a path; its cgroup is left alone" >&2; continue ;;
    esac
    if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
      cgroup_dirs+=("/sys/fs/cgroup$path")
    else
      for controller in /sys/fs/cgroup/*/; do cgroup_dirs+=("${controller%/}$path"); done
    fi
  done
  stop_containerd
  # Shims of containers still running outlive containerd: end those of this instance.
  # Their sockets (under /run/containerd/s) would outlive them: remove those they listened on.
  for p in $(pgrep -f "containerd-shim.*-address $sock( |$)" || true); do
    sockets=$(ss -Hxlp 2>/dev/null | grep -F "pid=$p," | awk '{print $5}' | grep '^/run/containerd/s/' || true)
    kill -9 "$p" 2>/dev/null || true
    for s in $sockets; do rm -f "$s"; done
  done
  # Unmount anything left under the work dir (rootfs overlays, network namespaces), deepest first.
  { grep -F " $work/" /proc/self/mountinfo || true; } | awk '{print $5}' | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
  # Containers whose shims were just killed outlive them: end the processes in this
  # containerd's tasks' cgroups, then remove those cgroups (deepest first).
  for dir in "${cgroup_dirs[@]}"; do
    [ -f "$dir/cgroup.procs" ] && xargs -r kill -9 < "$dir/cgroup.procs" 2>/dev/null || true
  done
  sleep 0.2
  for dir in "${cgroup_dirs[@]}"; do
    [ -d "$dir" ] && find "$dir" -depth -type d -exec rmdir {} + 2>/dev/null || true
  done
  [ -n "${WASMBOX_KEEP_WORK:-}" ] || rm -rf "$work/root" "$work/state" "$work/run" "$work/fifo"
  ;;
ctr)
  shift 2
  # ctr's FIFOs go under WORK: its default, /run/containerd/fifo, is the node's, and `ctr run -d`
  # never removes them.
  if [ "${1:-}" = run ]; then shift; set -- run --fifo-dir "$work/fifo" "$@"; fi
  exec "$(bin ctr)" -a "$sock" -n "${NS:-wasmbox}" "$@"
  ;;
*) usage ;;
esac
