#!/usr/bin/env bash
# Newer containerd and Docker releases for the tests, without installing them on the host: Debian's
# own package registry also serves trixie and sid; their packages are downloaded with a private
# sources list and private lists and cache (nothing of the host's apt state is touched), and
# unpacked into a folder of their own. They run on Debian 12 as they are (glibc 2.34 is enough).
#
#   scripts/releases.sh [DIR]    fetch what DIR lacks (default: ~/.cache/wasmbox/releases) and
#                                print one line per release: NAME VERSION PATH
#
# DIR/containerd-1.7/usr/bin/{containerd,ctr,containerd-shim-runc-v2}   containerd 1.7.24 (trixie)
# DIR/containerd-2.1/usr/bin/{containerd,ctr,containerd-shim-runc-v2}   containerd 2.1.9 (sid)
# DIR/docker/usr/{sbin/dockerd,bin/docker}                              Docker Engine and CLI 28.5.2 (sid)
set -euo pipefail
dir=$(realpath -m "${1:-$HOME/.cache/wasmbox/releases}")
mkdir -p "$dir"

# name  package=version  [more packages…]: unpacked together into $dir/name
releases=(
  "containerd-1.7 containerd=1.7.24~ds1-6+deb13u1"
  "containerd-2.1 containerd=2.1.9+ds1-5"
  "docker docker.io=28.5.2+dfsg4-5 docker-cli=28.5.2+dfsg4-5"
)

apt_state="$dir/.apt"
apt=(-o "Dir::Etc::SourceList=/dev/null" -o "Dir::Etc::SourceParts=$apt_state/sources"
     -o "Dir::State::Lists=$apt_state/lists" -o "Dir::Cache=$apt_state/cache"
     -o "Dir::State::status=$apt_state/status" -o "Debug::NoLocking=1" -o "APT::Sandbox::User=root")
updated=false
update() {
  $updated && return
  mkdir -p "$apt_state"/{sources,lists/partial,cache/archives/partial}
  : > "$apt_state/status"
  for suite in trixie sid; do
    cat > "$apt_state/sources/$suite.sources" <<EOF
Types: deb
URIs: http://deb.debian.org/debian
Suites: $suite
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  done
  echo "releases: reading the trixie and sid package lists" >&2
  apt-get -qq "${apt[@]}" update >&2
  updated=true
}

for release in "${releases[@]}"; do
  read -r name packages <<<"$release"
  target="$dir/$name"
  if [ ! -f "$target/.complete" ] || [ "$(cat "$target/.complete")" != "$packages" ]; then
    update
    rm -rf "$target" "$apt_state/download"
    mkdir -p "$target" "$apt_state/download"
    echo "releases: downloading $packages" >&2
    # shellcheck disable=SC2086
    (cd "$apt_state/download" && apt-get -qq "${apt[@]}" download $packages >&2)
    for deb in "$apt_state/download"/*.deb; do dpkg-deb -x "$deb" "$target"; done
    echo "$packages" > "$target/.complete"
  fi
done

version() { "$@" 2>/dev/null | head -1 | grep -oE '[0-9]+\.[0-9]+\.[0-9]+' | head -1; }
echo "containerd-1.7 $(version "$dir/containerd-1.7/usr/bin/containerd" --version) $dir/containerd-1.7/usr/bin"
echo "containerd-2.1 $(version "$dir/containerd-2.1/usr/bin/containerd" --version) $dir/containerd-2.1/usr/bin"
echo "docker $(version "$dir/docker/usr/sbin/dockerd" --version) $dir/docker/usr"
