#!/usr/bin/env bash
# `make demo`: one scripted scenario on the simulated host, printed as it goes.
# Three users get a GPU or MIG instance, a fourth is queued with its position, an idle
# container is warned then stopped and the queued user gets its device, and a GPU process on
# the host is flagged with its user; then the admin splits GPU 3 for a class, and ds01d drains
# it (only what goes), applies the new layout at the deadline and serves the waiting students.
# Every step goes through the ds01 CLI and one ds01d pass.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
root=${1:-$here/run/demo}
export DS01_ROOT=$root
bin=$here/.venv/bin
rm -rf "$root"

say()  { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run()  { printf '$ %s\n' "$*"; "$@"; }
pass() { printf '$ ds01d --simulate --once\n'; "$bin/ds01d" --simulate --once 2>&1 | sed 's/^/  /'; }
ds01() { "$bin/ds01" "$@"; }

say "A simulated lab server: 4x A100 (GPUs 0-1 whole, GPU 2 as 3g.20gb x2, GPU 3 as 2g.10gb x3)"
run ds01 sim init
run ds01 sim show

say "Three users ask for containers"
run ds01 --as alice want container train --mig 3g.20gb
run ds01 --as bob want container thesis --mig 3g.20gb
run ds01 --as carol want container big --gpus 1
pass
run ds01 status --all

say "A fourth asks for a 3g.20gb while both are taken: queued, with its position"
run ds01 --as frank want container nlp --mig 3g.20gb
pass
run ds01 status --all

say "bob and carol work; alice's container sits idle (students: idle_timeout_h 2)"
run ds01 sim activity bob/thesis --gpu-util 70 --cpu 150
run ds01 sim activity carol/big --gpu-util 95
run ds01 sim advance 1h40m
pass
run ds01 sim advance 15m
pass
run ds01 events --since 20m

say "Two hours idle: alice's container is stopped and frank, first in the queue, gets the 3g.20gb"
run ds01 sim advance 10m
pass
run ds01 status --all

say "Someone runs a job on GPU 1 outside any container"
gpu1=$(ds01 sim show --json | "$bin/python" -c 'import json,sys; print(json.load(sys.stdin)["gpus"][1]["uuid"])')
run ds01 sim host-process add --gpu "$gpu1" --user dave --mem 8000
pass
run ds01 events --since 1m

say "The admin splits GPU 3 into seven 1g.5gb for a class, with an hour's notice"
run ds01 --as erin want container eval --mig 2g.10gb
pass
run ds01 sim activity erin/eval --cpu 90
cat > "$root/etc/ds01/mig-layout.yaml" <<'LAYOUT'
version: 1
gpus:
  all: {mig-enabled: false}
  "2": {mig-enabled: true, mig-devices: {3g.20gb: 2}}
  "3": {mig-enabled: true, mig-devices: {1g.5gb: 7}, drain_deadline_h: 1}
LAYOUT
run cat "$root/etc/ds01/mig-layout.yaml"
run ds01 --as alice want container lab1 --mig 1g.5gb
pass
run ds01 mig plan
run ds01 status --all
set +e; run ds01 mig assert; echo "(exit $?: the layout differs)"; set -e

say "An hour on: erin's container is stopped and removed, GPU 3 laid out, alice served"
run ds01 sim advance 1h
pass
pass
pass
run ds01 mig assert
run ds01 status --all
say "Done. The simulated root is $root; try: DS01_ROOT=$root $bin/ds01 status --all"
