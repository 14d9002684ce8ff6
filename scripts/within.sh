#!/usr/bin/env bash
# Runs a command and fails with one line if it has not finished within a time limit, so that a hung
# test fails `make test` with its name instead of running into CI's limit.
#   usage: scripts/within.sh SECONDS COMMAND [ARG...]
# `timeout` runs the command in a process group of its own and stops the group (TERM, then KILL
# 30 s later), so a test binary that cargo started goes with it.
set -uo pipefail
if [ $# -lt 2 ]; then
  echo "usage: scripts/within.sh SECONDS COMMAND [ARG...]" >&2
  exit 2
fi
limit=$1
shift
timeout --kill-after=30 "$limit" "$@"
status=$?
if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
  echo "within.sh: '$*' did not finish within $limit s and was stopped (a test hangs: its name is the last one cargo printed as running)" >&2
fi
exit "$status"
