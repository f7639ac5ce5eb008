#!/bin/sh
# Install the Debian packages ds01's set-up needs, only those missing.
# Usage: scripts/ensure-debs.sh PKG...   (runs apt-get as root; needs nothing when all present)
# On a busy machine (unattended upgrades, another set-up) it waits for apt's locks instead of
# failing: up to 10 minutes for each step.
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
apt() {  # apt-get, waiting for the dpkg and lists locks; retried while another apt holds them
  tries=0
  until apt-get -o DPkg::Lock::Timeout=600 -o Acquire::Retries=3 "$@"; do
    tries=$((tries + 1))
    [ "$tries" -ge 20 ] && return 1
    echo "apt-get $1: busy or failed; trying again in 15 s ($tries/20)" >&2
    sleep 15
  done
}
apt update -qq
# shellcheck disable=SC2086
apt install -y -qq --no-install-recommends $missing >/dev/null
