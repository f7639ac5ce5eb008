#!/usr/bin/env bash
# `make run`: lay the shipped example config under a root folder, validate it and show
# effective limits for users of every group.
set -euo pipefail
root=${1:?usage: scripts/run.sh ROOT}
here=$(cd "$(dirname "$0")/.." && pwd)
ds01="$here/.venv/bin/ds01"
mkdir -p "$root/etc"
rm -rf "$root/etc/ds01"
cp -r "$here/config" "$root/etc/ds01"
export DS01_ROOT="$root"
echo "== ds01 check-config  (root: $root)"
"$ds01" check-config
for user in alice carol dave erin; do
  echo; echo "== ds01 limits $user"
  "$ds01" limits "$user"
done
