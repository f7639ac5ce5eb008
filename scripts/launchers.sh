#!/bin/sh
# Replace the `ds01` and `ds01d` launchers pip made in a venv with lean ones.
# Usage: scripts/launchers.sh VENV/bin
#
# pip's launchers `import re` (to tidy sys.argv[0] on Windows) before ds01 runs: a fifth of
# the start-up budget of the commands users type. These import only ds01, and run Python
# isolated (-I: no PYTHONPATH or user site-packages), as a tool root also runs should.
set -eu
bin=$(cd "${1:?usage: scripts/launchers.sh VENV/bin}" && pwd)
for pair in ds01:ds01d.cli ds01d:ds01d.daemon; do
  name=${pair%%:*}
  module=${pair#*:}
  tmp="$bin/.$name.tmp"
  cat > "$tmp" <<LAUNCHER
#!$bin/python -I
import sys
from $module import main
sys.exit(main())
LAUNCHER
  chmod 755 "$tmp"
  mv "$tmp" "$bin/$name"
done
