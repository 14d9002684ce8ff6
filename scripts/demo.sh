#!/usr/bin/env bash
# The demo: a private containerd runs Wasm images through the wasmbox shim, and busybox beside them;
# then a private Podman runs them through wasmbox-oci (found beside SHIM).
#   scripts/demo.sh SHIM IMAGES_DIR WORK
set -euo pipefail
shim=$1 images=$2 work=$3
here=$(cd "$(dirname "$0")" && pwd)

# Every image here was built on this machine, so this demo node trusts the native code their
# precompiled layers ship (a node's default is to ignore it: see docs/security.md).
WASMBOX_PRECOMPILED=trust "$here/containerd.sh" start "$work" "$shim"
trap '"$here/containerd.sh" stop "$work"' EXIT
echo "demo: private containerd up (socket $work/containerd.sock, log $work/containerd.log)"

export NS=wasmbox-demo
ctr() { "$here/containerd.sh" ctr "$work" "$@"; }
for image in hello hello-component hello-wat python js hello-http busybox; do
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
show "The same Rust module on Wasmer (the runtime io.containerd.wasmbox-wasmer.v1)" --runtime io.containerd.wasmbox-wasmer.v1 localhost/wasmbox/hello:latest demo-hello-wasmer /hello-rust.wasm on Wasmer
show "Python component (componentize-py), precompiled image" "${wasmbox[@]}" localhost/wasmbox/python:latest demo-python /hello.wasm from a container
show "JavaScript component (componentize-js); its first run compiles ~12 MB of Wasm" "${wasmbox[@]}" localhost/wasmbox/js:latest demo-js

echo
echo "=== wasi:http component, served on 127.0.0.1:18080 (host network); its processes, cgroup figures, pause/resume; stopped with SIGTERM"
echo "\$ ctr run -d --net-host --env WASMBOX_HTTP_ADDRESS=127.0.0.1:18080 … localhost/wasmbox/hello-http:latest demo-http"
ctr run -d --net-host "${wasmbox[@]}" --env WASMBOX_HTTP_ADDRESS=127.0.0.1:18080 localhost/wasmbox/hello-http:latest demo-http >/dev/null
for _ in $(seq 50); do curl -sf http://127.0.0.1:18080/ >/dev/null && break; sleep 0.1; done
echo "\$ curl http://127.0.0.1:18080/hello"
curl -s http://127.0.0.1:18080/hello
echo "\$ ctr tasks ps demo-http; ctr tasks metrics demo-http   (some rows)"
ctr tasks ps demo-http
ctr tasks metrics demo-http | grep -E "^(METRIC|memory.usage_in_bytes|cpuacct.usage |pids.current)"
echo "\$ ctr tasks pause demo-http; ctr tasks ls; ctr tasks resume demo-http"
ctr tasks pause demo-http
ctr tasks ls | grep -E "^(TASK|demo-http) "
ctr tasks resume demo-http
ctr tasks kill demo-http
for _ in $(seq 50); do ctr tasks ls | grep -q "^demo-http .*STOPPED" && break; sleep 0.1; done
ctr tasks delete demo-http >/dev/null; ctr containers delete demo-http
show "busybox, a Linux container with runc, side by side" localhost/wasmbox/busybox:latest demo-busybox-runc
show "busybox, a Linux container through the same wasmbox shim" "${wasmbox[@]}" localhost/wasmbox/busybox:latest demo-busybox-wasmbox

# Podman, with wasmbox-oci as its OCI runtime: its own storage and configuration under WORK-podman.
oci=$(dirname "$shim")/wasmbox-oci
pwork="$work-podman"
"$here/podman.sh" init "$pwork" "$oci" WASMBOX_PRECOMPILED=trust
trap '"$here/podman.sh" stop "$pwork"; "$here/containerd.sh" stop "$work"' EXIT
podman() { "$here/podman.sh" podman "$pwork" "$@"; }
for image in hello hello-component busybox; do podman load -q -i "$images/$image.tar" >/dev/null; done
# Podman 4.3's default limits exceed this machine's hard ones.
limits=(--network none --ulimit nofile=1024:1024 --ulimit nproc=1024:1024)
pshow() { # pshow TITLE podman-run-args…
  local title=$1; shift
  echo
  echo "=== $title"
  echo "\$ podman run --rm --runtime $oci $*"
  podman run --rm --runtime "$oci" "${limits[@]}" "$@"
}
pshow "Podman: Rust, wasm32-wasip1 module through wasmbox-oci" localhost/wasmbox/hello:latest from podman
pshow "Podman: Rust component in a workdir" --workdir /dev localhost/wasmbox/hello-component:latest
pshow "Podman: busybox, a Linux container through the same runtime" localhost/wasmbox/busybox:latest
echo
echo "demo: done"
