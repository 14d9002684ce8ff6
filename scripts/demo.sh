#!/usr/bin/env bash
# The demo: a private containerd runs Wasm images through the wasmbox shim, and busybox beside them.
#   scripts/demo.sh SHIM IMAGES_DIR WORK
set -euo pipefail
shim=$1 images=$2 work=$3
here=$(cd "$(dirname "$0")" && pwd)

"$here/containerd.sh" start "$work" "$shim"
trap '"$here/containerd.sh" stop "$work"' EXIT
echo "demo: private containerd up (socket $work/containerd.sock, log $work/containerd.log)"

export NS=wasmbox-demo
ctr() { "$here/containerd.sh" ctr "$work" "$@"; }
for image in hello hello-component hello-wat busybox; do
  ctr images import "$images/$image.tar" >/dev/null
done

show() { # show TITLE ctr-run-args…
  local title=$1; shift
  echo
  echo "=== $title"
  echo "\$ ctr run --rm $*"
  ctr run --rm "$@"
}
wasmbox=(--runtime io.containerd.wasmbox.v1)
show "Rust, wasm32-wasip1 module" "${wasmbox[@]}" localhost/wasmbox/hello:latest demo-hello /hello-rust.wasm from a container
show "Rust, wasm32-wasip2 component" "${wasmbox[@]}" --cwd / localhost/wasmbox/hello-component:latest demo-component
show "WebAssembly text (.wat) module" "${wasmbox[@]}" localhost/wasmbox/hello-wat:latest demo-wat
show "busybox, a Linux container with runc, side by side" localhost/wasmbox/busybox:latest demo-busybox-runc
show "busybox, a Linux container through the same wasmbox shim" "${wasmbox[@]}" localhost/wasmbox/busybox:latest demo-busybox-wasmbox
echo
echo "demo: done"
