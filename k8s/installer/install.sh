#!/bin/sh
# The wasmbox node installer: puts the shim on a node and the `wasmbox` runtime into its
# containerd config, idempotently; `uninstall` undoes both. Runs in the installer image
# (busybox sh) from the DaemonSet in k8s/installer/, or on a node directly.
#
#   install.sh install|uninstall
#
# Environment (defaults are for the DaemonSet, which mounts the node's / at /host):
#   HOST_ROOT           the node's root file system                     [/host]
#   CONTAINERD_CONFIG   containerd's config, on the node                [/etc/containerd/config.toml]
#   SHIM_DIR            where the shim goes, on the node (on containerd's PATH) [/usr/local/bin]
#   SHIM_SOURCE         the shim to install                             [/opt/wasmbox/containerd-shim-wasmbox-v1]
#   RESTART_CONTAINERD  command that restarts containerd                [systemctl restart containerd, in the node's namespaces]
#   NODE_NAME           the node to label (from the downward API); unset: no labelling
#   NODE_LABEL          the label set on install, removed on uninstall  [wasmbox.io/runtime=installed]
set -eu
here=$(cd "$(dirname "$0")" && pwd)
action=${1:-}
host=${HOST_ROOT:-/host}
config="$host${CONTAINERD_CONFIG:-/etc/containerd/config.toml}"
shim_dir="$host${SHIM_DIR:-/usr/local/bin}"
shim_source=${SHIM_SOURCE:-/opt/wasmbox/containerd-shim-wasmbox-v1}
restart=${RESTART_CONTAINERD:-nsenter --target 1 --mount --uts --ipc --net --pid -- systemctl restart containerd}
label=${NODE_LABEL:-wasmbox.io/runtime=installed}
shim="$shim_dir/containerd-shim-wasmbox-v1"
say() { echo "wasmbox-installer: $*"; }

# Labels (or unlabels, with KEY-) this node through the API server, with the pod's service account.
# containerd-config.sh: next to this script in the image, in scripts/ in the repository.
config_script="$here/containerd-config.sh"
[ -f "$config_script" ] || config_script="$here/../../scripts/containerd-config.sh"

label_node() {
  if [ -z "${NODE_NAME:-}" ]; then say "NODE_NAME not set: node not labelled"; return 0; fi
  "$here/wasmbox" node label "$NODE_NAME" "$1"
}

changed=0
case "$action" in
install)
  [ -f "$shim_source" ] || { say "no shim at $shim_source" >&2; exit 1; }
  mkdir -p "$shim_dir"
  if [ -f "$shim" ] && cmp -s "$shim_source" "$shim"; then
    say "$shim is up to date"
  else
    # Copy next to it, then rename: a running containerd never sees half a binary.
    cp "$shim_source" "$shim.new" && chmod 0755 "$shim.new" && mv -f "$shim.new" "$shim"
    say "installed $shim"; changed=1
  fi
  before=$(cat "$config" 2>/dev/null || true)
  sh "$config_script" add "$config"
  [ "$before" = "$(cat "$config")" ] || changed=1
  if [ "$changed" = 1 ]; then
    say "restarting containerd: $restart"; sh -c "$restart"
  else
    say "already installed: nothing changed, containerd not restarted"
  fi
  label_node "$label"
  ;;
uninstall)
  before=$(cat "$config" 2>/dev/null || true)
  sh "$config_script" remove "$config"
  [ "$before" = "$(cat "$config" 2>/dev/null || true)" ] || changed=1
  if [ -f "$shim" ]; then rm -f "$shim"; say "removed $shim"; changed=1; fi
  if [ "$changed" = 1 ]; then say "restarting containerd: $restart"; sh -c "$restart"; fi
  label_node "${label%%=*}-"
  ;;
*) sed -n '2,16p' "$0" >&2; exit 2 ;;
esac
