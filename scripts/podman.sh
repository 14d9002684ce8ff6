#!/usr/bin/env bash
# A private Podman (Debian 12's 4.3, rootful) for the tests and the demo: its own storage, run
# root, temporary directory, events log, network configuration and containers.conf under WORK, so
# that the host's Podman state is untouched. The containers.conf names wasmbox-oci as the runtime
# "wasmbox" and hands conmon (which runs the runtime's `create`) the node settings.
#
#   scripts/podman.sh init WORK WASMBOX_OCI [VAR=VALUE…]   write WORK/containers.conf; VAR=VALUE: node
#                                                         settings for the runtime (WASMBOX_PRECOMPILED=trust)
#   scripts/podman.sh podman WORK ARGS…                   run podman with that configuration
#   scripts/podman.sh stop WORK                           remove WORK's containers and mounts, then WORK
#
# Podman 4.3's default limits exceed this machine's hard ones: pass
# `--ulimit nofile=1024:1024 --ulimit nproc=1024:1024` to `podman run`.
set -euo pipefail

usage() { sed -n '2,13p' "$0" >&2; exit 2; }
[ $# -ge 2 ] || usage
cmd=$1
work=$(realpath -m "$2")

podman_private() {
  CONTAINERS_CONF="$work/containers.conf" exec podman --root "$work/storage" --runroot "$work/run" \
    --storage-driver overlay "$@"
}

case "$cmd" in
init)
  [ $# -ge 3 ] || usage
  runtime=$(realpath -m "$3"); shift 3
  [ "$(id -u)" = 0 ] || { echo "podman.sh: the private Podman runs rootful: need root" >&2; exit 1; }
  command -v podman >/dev/null || { echo "podman.sh: podman is not installed (run: make deps)" >&2; exit 1; }
  [ -x "$runtime" ] || { echo "podman.sh: no runtime at $runtime (run: make build)" >&2; exit 1; }
  mkdir -p "$work"/{tmp,net,cache}
  env_vars="\"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\", \"WASMBOX_CACHE_DIR=$work/cache\""
  for setting in "$@"; do env_vars="$env_vars, \"$setting\""; done
  cat > "$work/containers.conf" <<CONF
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$work/events.log"
tmp_dir = "$work/tmp"
conmon_env_vars = [$env_vars]

[engine.runtimes]
wasmbox = ["$runtime"]

[network]
network_config_dir = "$work/net"
CONF
  ;;
podman)
  shift 2
  [ -f "$work/containers.conf" ] || { echo "podman.sh: no $work/containers.conf (scripts/podman.sh init)" >&2; exit 1; }
  podman_private "$@"
  ;;
stop)
  if [ -f "$work/containers.conf" ]; then
    CONTAINERS_CONF="$work/containers.conf" podman --root "$work/storage" --runroot "$work/run" \
      --storage-driver overlay rm --all --force --time 0 >/dev/null 2>&1 || true
  fi
  { grep -F " $work/" /proc/self/mountinfo || true; } | awk '{print $5}' | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
  [ -n "${WASMBOX_KEEP_WORK:-}" ] || rm -rf "$work"
  ;;
*) usage ;;
esac
