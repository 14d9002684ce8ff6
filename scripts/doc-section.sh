#!/usr/bin/env bash
# Replaces the section NAME of a Markdown file with standard input, or appends it.
# A section is everything between `<!-- NAME:begin -->` and `<!-- NAME:end -->`.
#   scripts/doc-section.sh FILE NAME < content
set -euo pipefail
file=$1 name=$2
begin="<!-- $name:begin -->" end="<!-- $name:end -->"
content=$(cat)
[ -f "$file" ] || printf '# Benchmarks\n\nWritten by `make bench` and `make stress`; each replaces its own section.\n' > "$file"
if grep -qF "$begin" "$file"; then
  awk -v b="$begin" -v e="$end" -v c="$content" '
    $0 == b { print; print c; skip = 1; next }
    $0 == e { skip = 0 }
    !skip { print }' "$file" > "$file.tmp"
  mv "$file.tmp" "$file"
else
  printf '\n%s\n%s\n%s\n' "$begin" "$content" "$end" >> "$file"
fi
