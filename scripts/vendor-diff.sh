#!/usr/bin/env bash
# Shows what wasmbox changed in the crates under vendor/: a unified diff of each against the
# same version as published on crates.io (from cargo's download cache, else fetched).
#
#   scripts/vendor-diff.sh [CRATE…]   default: every crate under vendor/
set -euo pipefail
cd "$(dirname "$0")/.."
cache="${CARGO_HOME:-$HOME/.cargo}/registry/cache"
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
crates=("$@"); [ ${#crates[@]} -gt 0 ] || crates=($(ls vendor | grep -v README))
for name in "${crates[@]}"; do
  version=$(sed -n 's/^version = "\(.*\)"/\1/p' "vendor/$name/Cargo.toml" | head -1)
  crate=$(ls "$cache"/*/"$name-$version.crate" 2>/dev/null | head -1 || true)
  if [ -z "$crate" ]; then
    crate="$work/$name-$version.crate"
    curl -fsSL -o "$crate" "https://static.crates.io/crates/$name/$name-$version.crate"
  fi
  tar -xzf "$crate" -C "$work"
  rm -f "$work/$name-$version/Cargo.toml.orig" "$work/$name-$version/Cargo.lock"
  diff -ruN "$work/$name-$version" "vendor/$name" | sed "s|$work/|crates.io/|" || true
done
exit 0
