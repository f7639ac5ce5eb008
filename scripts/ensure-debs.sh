#!/bin/sh
# Install the Debian packages ds01's set-up needs, only those missing.
# Usage: scripts/ensure-debs.sh PKG...   (runs apt-get as root; needs nothing when all present)
set -eu
missing=""
for pkg in "$@"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing="$missing $pkg"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "ds01 set-up needs these Debian packages:$missing (run as root, or apt-get install them)" >&2
  exit 1
fi
echo "installing Debian packages:$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null
