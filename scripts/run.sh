#!/usr/bin/env bash
# `make run`: ds01d on a simulated host (4x A100, no GPU, root or Docker needed), in the
# foreground until Ctrl-C. The simulated root (config, wants, status, events) is ROOT.
set -euo pipefail
root=${1:?usage: scripts/run.sh ROOT}
here=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$root"
cat <<MSG
ds01d runs on a simulated host under $root (Ctrl-C stops it).
Drive it from another terminal:

  export DS01_ROOT=$root PATH=$here/.venv/bin:\$PATH
  ds01 --as alice want container train --mig 3g.20gb    # a MIG instance for alice
  ds01 --as carol want container big --gpus 1           # a whole GPU for carol
  ds01 status --all                                     # phases, devices, queue positions
  ds01 sim activity carol/big --gpu-util 90             # carol works; alice stays idle
  ds01 sim advance 2h                                   # simulated time moves only like this
  ds01 events                                           # warnings, stops, flags
  ds01 sim host-process add --gpu 1 --user dave         # a GPU job outside any container
  ds01 limits alice                                     # her limits, and where they come from

The admin's files are in $root/etc/ds01 (edit them, then: ds01 check-config).
MSG
exec "$here/.venv/bin/ds01d" --root "$root" --simulate --interval 5
