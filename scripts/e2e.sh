#!/usr/bin/env bash
# `make e2e`: the end-to-end tests against a real systemd and a real dockerd (scripts/testbed.sh),
# always torn down afterwards. Needs root (namespaces, cgroups, useradd for test users).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
if [ "$(id -u)" != 0 ]; then
  echo "make e2e needs root: it starts systemd in a private PID namespace and dockerd in it" >&2
  exit 1
fi
# one testbed at a time on a machine: systemd in the namespace shares the host's cgroup
# hierarchy (there is no cgroup namespace), so a second one would step on the first
mkdir -p /run/lock
exec 9>/run/lock/ds01-testbed.lock
flock -w 3600 9 || { echo "another ds01 testbed is running (waited an hour)" >&2; exit 1; }
tb="$here/scripts/testbed.sh"
trap '"$tb" stop >/dev/null 2>&1 || true' EXIT
"$tb" start
"$tb" dockerd
"$tb" image
eval "$("$tb" env)"
export DS01_TESTBED_DIR="${TB_DIR:-$here/build/tb}"
LD_LIBRARY_PATH="$here/build/fakenvml" "$here/.venv/bin/pytest" -q -p no:cacheprovider \
  "$here/tests/e2e" "$@"
