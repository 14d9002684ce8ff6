#!/usr/bin/env bash
# Builds the example guests and their OCI image tarballs.
#   scripts/images.sh WASMBOX IMAGES_DIR CARGO_TARGET_DIR
set -euo pipefail
wasmbox=$1 images=$2 target=$3
root=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$images"

echo "images: building guests (wasm32-wasip1, wasm32-wasip2)"
(cd "$root/examples" &&
  cargo build --quiet --release --target wasm32-wasip1 -p hello-rust -p probe &&
  cargo build --quiet --release --target wasm32-wasip2 -p hello-component)
p1="$target/wasm32-wasip1/release"
p2="$target/wasm32-wasip2/release"

image() { # image NAME FILE [wasmbox image build options…]
  local name=$1 file=$2; shift 2
  "$wasmbox" image build "$file" -t "localhost/wasmbox/$name:latest" -o "$images/$name.tar" "$@" >/dev/null
  echo "images: $images/$name.tar  localhost/wasmbox/$name:latest"
}

image hello           "$p1/hello-rust.wasm"
image hello-component "$p2/hello-component.wasm"
image hello-wat       "$root/examples/wat/hello.wat"
# The test guest, with files the end-to-end tests point the entry point at.
image probe           "$p1/probe.wasm" \
  --add "$root/examples/fixtures:/fixtures" --add "$root/examples/wat/hello.wat:/fixtures/hello.wat"
# A Linux image for side-by-side runs: Debian's static busybox.
image busybox         /bin/busybox --path /bin/busybox --cmd echo --cmd "Hello from busybox"
