#!/usr/bin/env bash
# A private containerd for the demo, the tests and the benchmarks: its own root, state, socket,
# opt dir (whose bin/ holds the shim and comes first on the shims' PATH) and compiled-code cache.
#
#   scripts/containerd.sh start WORK SHIM   start it (SHIM: the containerd-shim-wasmbox-v1 to use;
#                                           `none`: no shim and no wasmbox runtime, for the installer test)
#   scripts/containerd.sh stop WORK         stop it by its own PID and remove what it left
#   scripts/containerd.sh restart WORK      stop containerd alone (shims and state stay), start it again
#   scripts/containerd.sh ctr WORK ARGS…    run ctr against it (namespace: $NS, default wasmbox)
set -euo pipefail

usage() { sed -n '2,9p' "$0" >&2; exit 2; }

# Starts containerd on the config in $work and waits for its socket.
launch() {
  # exec: \$! is containerd's own PID, not a wrapper shell's.
  (cd / && WASMBOX_CACHE_DIR="$work/cache" exec containerd --config "$work/config.toml" >>"$work/containerd.log" 2>&1) &
  echo $! > "$work/containerd.pid"
  for _ in $(seq 100); do
    if ctr -a "$sock" version >/dev/null 2>&1; then return 0; fi
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
[ $# -ge 2 ] || usage
cmd=$1
work=$(realpath -m "$2")
sock="$work/containerd.sock"

case "$cmd" in
start)
  [ $# -eq 3 ] || usage
  shim=$3
  [ "$(id -u)" = 0 ] || { echo "containerd.sh: containerd needs root" >&2; exit 1; }
  command -v containerd >/dev/null || { echo "containerd.sh: containerd is not installed (run: make deps)" >&2; exit 1; }
  [ "$shim" = none ] || [ -x "$shim" ] || { echo "containerd.sh: no shim at $shim (run: make build)" >&2; exit 1; }
  if [ -f "$work/containerd.pid" ] && kill -0 "$(cat "$work/containerd.pid")" 2>/dev/null; then
    echo "containerd.sh: a containerd already runs for $work (pid $(cat "$work/containerd.pid"))" >&2; exit 1
  fi
  mkdir -p "$work"/{root,state,opt/bin,cni-conf,cache}
  runtime=""
  if [ "$shim" != none ]; then
    install -m 0755 "$shim" "$work/opt/bin/containerd-shim-wasmbox-v1"
    runtime='      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.wasmbox]
        runtime_type = "io.containerd.wasmbox.v1"
        pod_annotations = ["wasmbox.io/*"]'
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
TOML
  : > "$work/containerd.log"
  launch
  ;;
restart)
  stop_containerd
  launch
  ;;
stop)
  # The tasks this containerd still has (namespace/id): their shims' runtime state goes too.
  tasks=$(cd "$work/state/io.containerd.runtime.v2.task" 2>/dev/null && ls -d */* 2>/dev/null || true)
  stop_containerd
  # Shims of containers still running outlive containerd: end those of this instance.
  for p in $(pgrep -f "containerd-shim.*-address $sock" || true); do kill -9 "$p" 2>/dev/null || true; done
  # Unmount anything left under the work dir (rootfs overlays, network namespaces), deepest first.
  { grep -F " $work/" /proc/self/mountinfo || true; } | awk '{print $5}' | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
  # Containers whose shims were just killed outlive them: end the processes in the cgroups of
  # this containerd's tasks (`/<namespace>/<id>` for ctr, `/<cgroup parent>/<id>` for CRI), then
  # remove those cgroups. Only its own: other containerds (tests run several) keep theirs.
  task_cgroups() {
    for task in $tasks; do
      find /sys/fs/cgroup/ -mindepth 2 -maxdepth 3 -type d -name "${task#*/}" 2>/dev/null || true
    done
  }
  for dir in $(task_cgroups); do
    [ -f "$dir/cgroup.procs" ] && xargs -r kill -9 < "$dir/cgroup.procs" 2>/dev/null || true
  done
  sleep 0.2
  for dir in $(task_cgroups); do
    find "$dir" -depth -type d -exec rmdir {} + 2>/dev/null || true
  done
  for task in $tasks; do rm -rf "/run/containerd/wasmbox/$task"; done
  # The namespace-level cgroups and runtime dirs go when nothing else uses them.
  for ns in wasmbox wasmbox-demo wasmbox-test wasmbox-bench wasmbox-cri k8s.io; do
    rmdir /sys/fs/cgroup/*/"$ns" "/run/containerd/wasmbox/$ns" 2>/dev/null || true
  done
  [ -n "${WASMBOX_KEEP_WORK:-}" ] || rm -rf "$work/root" "$work/state"
  ;;
ctr)
  shift 2
  exec ctr -a "$sock" -n "${NS:-wasmbox}" "$@"
  ;;
*) usage ;;
esac
