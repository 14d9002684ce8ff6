#!/usr/bin/env bash
# A private Docker Engine on a private containerd (scripts/containerd.sh), for the tests: its own
# data root, exec root, pidfile and socket; the containerd image store; no bridge, no iptables.
#
#   scripts/dockerd.sh start WORK CONTAINERD_WORK DOCKER_DIR   start dockerd (DOCKER_DIR: the unpacked
#                                                            docker.io package, see scripts/releases.sh)
#                                                            on the containerd of CONTAINERD_WORK
#   scripts/dockerd.sh stop WORK                             stop it by its own PID, remove what it left
#   scripts/dockerd.sh docker WORK ARGS…                     run the docker CLI against it
#
# With WASMBOX_OCI=PATH in the environment of `start`, dockerd also has the runtime "wasmbox-oci"
# (its `runtimes` setting): `docker run --runtime wasmbox-oci` runs PATH through containerd's runc shim.
set -euo pipefail

usage() { sed -n '2,12p' "$0" >&2; exit 2; }
[ $# -ge 2 ] || usage
cmd=$1
work=$(realpath -m "$2")
sock="$work/docker.sock"

docker_cli() {
  local dir; dir=$(cat "$work/docker-dir" 2>/dev/null || true)
  if [ -n "$dir" ] && [ -x "$dir/bin/docker" ]; then echo "$dir/bin/docker"; else command -v docker; fi
}

case "$cmd" in
start)
  [ $# -eq 4 ] || usage
  containerd_work=$(realpath -m "$3")
  docker_dir=$(realpath -m "$4")
  [ "$(id -u)" = 0 ] || { echo "dockerd.sh: dockerd needs root" >&2; exit 1; }
  [ -x "$docker_dir/sbin/dockerd" ] || { echo "dockerd.sh: no dockerd in $docker_dir/sbin (run: scripts/releases.sh)" >&2; exit 1; }
  [ -S "$containerd_work/containerd.sock" ] || { echo "dockerd.sh: no containerd at $containerd_work (scripts/containerd.sh start)" >&2; exit 1; }
  if [ -f "$work/dockerd.pid" ] && kill -0 "$(cat "$work/dockerd.pid")" 2>/dev/null; then
    echo "dockerd.sh: a dockerd already runs for $work (pid $(cat "$work/dockerd.pid"))" >&2; exit 1
  fi
  mkdir -p "$work"/{data,exec}
  echo "$docker_dir" > "$work/docker-dir"
  runtimes=""
  if [ -n "${WASMBOX_OCI:-}" ]; then
    runtimes="\"runtimes\": { \"wasmbox-oci\": { \"path\": \"$(realpath -m "$WASMBOX_OCI")\" } },"
  fi
  cat > "$work/daemon.json" <<JSON
{
  $runtimes
  "features": { "containerd-snapshotter": true },
  "bridge": "none",
  "iptables": false,
  "ip6tables": false,
  "ip-forward": false,
  "ip-masq": false
}
JSON
  : > "$work/dockerd.log"
  # dockerd finds docker-proxy and docker-init beside it; runc and the shims come from PATH and
  # containerd's own directory.
  (cd / && PATH="$docker_dir/sbin:$docker_dir/bin:$PATH" exec "$docker_dir/sbin/dockerd" \
      --config-file "$work/daemon.json" --data-root "$work/data" --exec-root "$work/exec" \
      --pidfile "$work/dockerd.pid.daemon" -H "unix://$sock" --containerd "$containerd_work/containerd.sock" \
      >>"$work/dockerd.log" 2>&1) &
  echo $! > "$work/dockerd.pid"
  for _ in $(seq 150); do
    if "$(docker_cli)" -H "unix://$sock" version >/dev/null 2>&1; then exit 0; fi
    kill -0 "$(cat "$work/dockerd.pid")" 2>/dev/null || break
    sleep 0.2
  done
  echo "dockerd.sh: dockerd did not come up; its log:" >&2
  tail -n 30 "$work/dockerd.log" >&2
  exit 1
  ;;
stop)
  if [ -f "$work/dockerd.pid" ]; then
    pid=$(cat "$work/dockerd.pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$work/dockerd.pid"
  fi
  { grep -F " $work/" /proc/self/mountinfo || true; } | awk '{print $5}' | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
  [ -n "${WASMBOX_KEEP_WORK:-}" ] || rm -rf "$work/data" "$work/exec"
  ;;
docker)
  shift 2
  exec "$(docker_cli)" -H "unix://$sock" "$@"
  ;;
*) usage ;;
esac
