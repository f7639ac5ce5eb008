#!/usr/bin/env bash
# The testbed benchmarks (bench/testbed.py), with the testbed started and always torn down.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
if [ "$(id -u)" != 0 ]; then
  echo "skipping the testbed benchmarks: they need root (systemd and dockerd in a namespace)"
  exit 0
fi
# one testbed at a time on a machine: systemd in the namespace shares the host's cgroup
# hierarchy (there is no cgroup namespace), so a second one would step on the first
mkdir -p /run/lock
exec 9>/run/lock/ds01-testbed.lock
flock -w 3600 9 || { echo "another ds01 testbed is running (waited an hour)" >&2; exit 1; }
tb="$here/scripts/testbed.sh"
trap '"$tb" stop >/dev/null 2>&1 || true' EXIT
"$tb" start >/dev/null && "$tb" dockerd >/dev/null && "$tb" image >/dev/null
eval "$("$tb" env)"
export DS01_TESTBED_DIR="$here/build/tb"
# the want benchmarks' user (the first of DS01_E2E_USERS, see docs/testing.md) and its home
# are made and removed by bench/testbed.py, as the e2e tests do
made=""
if ! id dssann >/dev/null 2>&1; then  # the Docker socket's benchmark: a user with a home
  mkdir -p "$here/build/e2e-sock-home" && chmod 755 "$here/build/e2e-sock-home"
  useradd --create-home --home-dir "$here/build/e2e-sock-home/dssann" --shell /bin/sh dssann \
    && made="$made dssann"
fi
trap '"$tb" stop >/dev/null 2>&1 || true; for u in $made; do userdel "$u"; done; rm -rf "$here/build/e2e-sock-home"' EXIT
LD_LIBRARY_PATH="$here/build/fakenvml" "$here/.venv/bin/python" "$here/bench/testbed.py"
