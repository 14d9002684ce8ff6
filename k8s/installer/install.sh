#!/bin/sh
# The wasmbox node installer: puts the shim (and wasmbox-oci, with which the shim creates its
# containers; and the shim's Wasmer name, containerd-shim-wasmbox-wasmer-v1, a link to it) on a
# node and the `wasmbox` and `wasmbox-wasmer` runtimes into its
# containerd configuration (`wasmbox node configure`, which finds the node's layout: containerd,
# k3s, RKE2, MicroK8s or k0s), idempotently; `uninstall` undoes both, the configuration back
# byte for byte. Runs in the installer image (busybox sh) from the DaemonSet in k8s/installer/,
# or on a node directly.
#
#   install.sh install|uninstall
#
# Environment (defaults are for the DaemonSet, which mounts the node's / at /host):
#   HOST_ROOT           the node's root file system                     [/host]
#   CONTAINERD_CONFIG   containerd's configuration, on the node         [the node layout's]
#   CONTAINERD_OPTIONS  runtime options to set, KEY=VALUE separated by spaces (e.g. WASMBOX_PRECOMPILED=trust)
#   SHIM_DIR            where the shim goes, on the node (on containerd's PATH) [/usr/local/bin]
#   SHIM_SOURCE         the shim to install, with the wasmbox-oci beside it [/opt/wasmbox/containerd-shim-wasmbox-v1]
#   WASMBOX             the wasmbox command                             [next to this script]
#   RESTART_CONTAINERD  command that restarts containerd                [the layout's service, restarted with
#                       systemctl (snap for MicroK8s) in the node's namespaces]
#   NODE_NAME           the node to label (from the downward API); unset: no labelling
#   NODE_LABEL          the label set on install, removed on uninstall  [wasmbox.io/runtime=installed]
set -eu
here=$(cd "$(dirname "$0")" && pwd)
action=${1:-}
case "$action" in install|uninstall) ;; *) sed -n '2,22p' "$0" >&2; exit 2 ;; esac
host=${HOST_ROOT:-/host}
shim_dir="$host${SHIM_DIR:-/usr/local/bin}"
shim_source=${SHIM_SOURCE:-/opt/wasmbox/containerd-shim-wasmbox-v1}
wasmbox=${WASMBOX:-$here/wasmbox}
label=${NODE_LABEL:-wasmbox.io/runtime=installed}
shim="$shim_dir/containerd-shim-wasmbox-v1"
helper_source="$(dirname "$shim_source")/wasmbox-oci"
helper="$shim_dir/wasmbox-oci"
# The same shim as runtime io.containerd.wasmbox-wasmer.v1 (Wasmer as its default engine).
wasmer_shim="$shim_dir/containerd-shim-wasmbox-wasmer-v1"
say() { echo "wasmbox-installer: $*"; }

# What configure and unconfigure edit: the given file, or the node layout's.
target="--root $host"
[ -z "${CONTAINERD_CONFIG:-}" ] || target="$target --layout containerd --config $host$CONTAINERD_CONFIG"
layout=$("$wasmbox" node layout --root "$host")
in_host="nsenter --target 1 --mount --uts --ipc --net --pid --"
case "$layout" in
  k3s) default_restart="$in_host sh -c 'systemctl restart k3s || systemctl restart k3s-agent'" ;;
  rke2) default_restart="$in_host sh -c 'systemctl restart rke2-server || systemctl restart rke2-agent'" ;;
  microk8s) default_restart="$in_host snap restart microk8s.daemon-containerd" ;;
  k0s) default_restart="$in_host sh -c 'systemctl restart k0sworker || systemctl restart k0scontroller'" ;;
  *) default_restart="$in_host systemctl restart containerd" ;;
esac
restart=${RESTART_CONTAINERD:-$default_restart}

label_node() {
  if [ -z "${NODE_NAME:-}" ]; then say "NODE_NAME not set: node not labelled"; return 0; fi
  "$wasmbox" node label "$NODE_NAME" "$1"
}

changed=0
case "$action" in
install)
  [ -f "$shim_source" ] || { say "no shim at $shim_source" >&2; exit 1; }
  [ -f "$helper_source" ] || { say "no wasmbox-oci at $helper_source (the shim creates containers with it)" >&2; exit 1; }
  mkdir -p "$shim_dir"
  # The helper first: a shim never runs without the helper it was built with.
  for pair in "$helper_source $helper" "$shim_source $shim"; do
    set -- $pair
    if [ -f "$2" ] && cmp -s "$1" "$2"; then
      say "$2 is up to date"
    else
      # Copy next to it, then rename: a running containerd never sees half a binary.
      cp "$1" "$2.new" && chmod 0755 "$2.new" && mv -f "$2.new" "$2"
      say "installed $2"; changed=1
    fi
  done
  if [ "$(readlink "$wasmer_shim" 2>/dev/null)" = containerd-shim-wasmbox-v1 ]; then
    say "$wasmer_shim is up to date"
  else
    ln -sfn containerd-shim-wasmbox-v1 "$wasmer_shim"; say "installed $wasmer_shim"; changed=1
  fi
  options=""
  for option in ${CONTAINERD_OPTIONS:-}; do options="$options --option $option"; done
  # shellcheck disable=SC2086
  result=$("$wasmbox" node configure $target $options)
  say "$layout node: $result"
  case "$result" in configured:*) changed=1 ;; esac
  if [ "$changed" = 1 ]; then
    say "restarting containerd: $restart"; sh -c "$restart"
  else
    say "already installed: nothing changed, containerd not restarted"
  fi
  label_node "$label"
  ;;
uninstall)
  # shellcheck disable=SC2086
  result=$("$wasmbox" node unconfigure $target)
  say "$layout node: $result"
  case "$result" in unconfigured:*) changed=1 ;; esac
  for file in "$wasmer_shim" "$shim" "$helper"; do
    if [ -f "$file" ] || [ -L "$file" ]; then rm -f "$file"; say "removed $file"; changed=1; fi
  done
  if [ "$changed" = 1 ]; then say "restarting containerd: $restart"; sh -c "$restart"; fi
  label_node "${label%%=*}-"
  ;;
esac
