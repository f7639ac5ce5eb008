#!/bin/bash
# ds01's testbed: a real systemd (as PID 1 of a private PID/mount/UTS namespace) and a real
# dockerd with the systemd cgroup driver inside it, on a machine whose PID 1 is not systemd
# (a CI VM). Used by `make e2e`; tears down what it starts.
#
#   scripts/testbed.sh start      systemd up; its D-Bus socket under $TB_DIR/run
#   scripts/testbed.sh dockerd    dockerd as a transient service of that systemd
#   scripts/testbed.sh image      a tiny local image ds01-test:1 (busybox), no registry needed
#   scripts/testbed.sh env        exports: DBUS_SYSTEM_BUS_ADDRESS, DOCKER_HOST, TB_PID
#   scripts/testbed.sh exec CMD   run CMD inside the namespace (systemctl, journalctl, ...)
#   scripts/testbed.sh stop       stop everything, remove the cgroups systemd left behind
#
# SAFETY: the host's root file system is shared with the namespace. systemd boots a minimal
# target (itself, D-Bus, journald) and every unit the standard targets would pull in is masked;
# above all systemd-tmpfiles-setup.service, which would run `tmpfiles --remove --boot` and
# empty the host's /tmp. As a second guard the namespace gets its own tmpfs on /tmp, /var/tmp
# and /var/log/journal. A GPU device-request hook stub is put on dockerd's PATH only (never on
# the host's): it lets `--gpus device=UUID` containers start without a GPU.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
TB_DIR="${TB_DIR:-$here/build/tb}"
RUNDIR="$TB_DIR/run"
PIDFILE="$TB_DIR/systemd.pid"
LOG="$TB_DIR/systemd.log"
DEBS="systemd dbus docker.io busybox-static"

inner() {  # PID 1 of the new namespaces: prepare mounts and masks, then become systemd
  local rundir="$1" repo="$2" u d
  mount --make-rprivate /
  mount --bind "$rundir" /run
  # a private /tmp; a checkout that lives under the host's /tmp stays visible at its path
  mkdir -p /run/.hosttmp && mount --bind /tmp /run/.hosttmp
  mount -t tmpfs -o mode=1777 tmpfs /tmp
  case "$repo" in
    /tmp/*) mkdir -p "$repo" && mount --bind "/run/.hosttmp/${repo#/tmp/}" "$repo" ;;
  esac
  umount -l /run/.hosttmp && rmdir /run/.hosttmp
  mount -t tmpfs -o mode=1777 tmpfs /var/tmp
  if [ -d /var/log/journal ]; then mount -t tmpfs tmpfs /var/log/journal; fi
  mkdir -p /run/systemd/system /run/dbus /run/lock
  cat > /run/systemd/system/ds01-testbed.target <<'UNIT'
[Unit]
Description=ds01 testbed: systemd, D-Bus and journald only
Wants=dbus.socket dbus.service systemd-journald.socket systemd-journald.service
After=dbus.service
AllowIsolate=yes
UNIT
  local keep=" dbus.socket dbus.service systemd-journald.service systemd-journald.socket "
  for d in /lib/systemd/system /etc/systemd/system; do
    for u in "$d"/{sysinit,basic,sockets,timers,paths,local-fs,remote-fs,multi-user,graphical,getty,default}.target.wants/*; do
      [ -e "$u" ] || [ -L "$u" ] || continue
      u=$(basename "$u")
      case "$keep" in *" $u "*) continue;; esac
      ln -sf /dev/null "/run/systemd/system/$u"
    done
  done
  for u in systemd-tmpfiles-setup.service systemd-tmpfiles-setup-dev.service \
           systemd-tmpfiles-clean.service systemd-tmpfiles-clean.timer \
           systemd-journal-flush.service systemd-udevd.service systemd-udevd-control.socket \
           systemd-udevd-kernel.socket systemd-udev-trigger.service systemd-udev-settle.service \
           systemd-logind.service systemd-networkd.service systemd-resolved.service \
           systemd-timesyncd.service getty.target console-getty.service docker.service \
           docker.socket containerd.service systemd-journald-audit.socket \
           systemd-journald-dev-log.socket systemd-remount-fs.service syslog.socket; do
    ln -sf /dev/null "/run/systemd/system/$u"
  done
  exec env -i container=ds01-testbed PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    /lib/systemd/systemd --system --unit=ds01-testbed.target --log-target=journal-or-kmsg \
      --log-level=notice --show-status=no
}

pid1() { cat "$PIDFILE" 2>/dev/null || true; }
bus() { echo "unix:path=$RUNDIR/dbus/system_bus_socket"; }

up() {
  local p; p=$(pid1)
  [ -n "$p" ] && kill -0 "$p" 2>/dev/null && [ -S "$RUNDIR/dbus/system_bus_socket" ] &&
    DBUS_SYSTEM_BUS_ADDRESS=$(bus) timeout 2 busctl get-property org.freedesktop.systemd1 \
      /org/freedesktop/systemd1 org.freedesktop.systemd1.Manager SystemState >/dev/null 2>&1
}

start() {
  if up; then echo "testbed already up (pid $(pid1))"; return 0; fi
  "$here/scripts/ensure-debs.sh" $DEBS
  mkdir -p "$TB_DIR"; rm -rf "$RUNDIR"; mkdir -p "$RUNDIR"; : > "$LOG"
  setsid unshare --pid --fork --mount --uts --mount-proc --propagation private \
    "$0" __inner "$RUNDIR" "$here" >>"$LOG" 2>&1 </dev/null 9>&- &
  local upid=$! p=""
  for _ in $(seq 1 100); do
    p=$(pgrep -P "$upid" 2>/dev/null | head -1 || true); [ -n "$p" ] && break; sleep 0.05
  done
  [ -n "$p" ] || { echo "testbed: systemd did not spawn"; cat "$LOG"; return 1; }
  echo "$p" > "$PIDFILE"
  for _ in $(seq 1 600); do up && break; kill -0 "$p" 2>/dev/null || break; sleep 0.05; done
  up || { echo "testbed: systemd did not come up"; tail -30 "$LOG"; return 1; }
  echo "testbed: systemd up (pid $p)"
}

dockerd_start() {
  local p; p=$(pid1)
  mkdir -p "$TB_DIR/hook"
  # Docker registers its NVIDIA device driver when this hook is on dockerd's PATH; the stub
  # accepts the request, so containers with GPU device requests start without a GPU.
  printf '#!/bin/sh\ncat >/dev/null\nexit 0\n' > "$TB_DIR/hook/nvidia-container-runtime-hook"
  chmod +x "$TB_DIR/hook/nvidia-container-runtime-hook"
  nsenter -t "$p" -m -p -- systemd-run --quiet --unit=ds01-testbed-dockerd -p Delegate=yes \
    -p KillMode=mixed --setenv=PATH="$TB_DIR/hook:/usr/sbin:/usr/bin:/sbin:/bin" \
    /usr/sbin/dockerd -H unix:///run/ds01-docker.sock --data-root "$TB_DIR/docker-data" \
    --exec-root /run/ds01-docker-exec --pidfile /run/ds01-dockerd.pid \
    --exec-opt native.cgroupdriver=systemd --iptables=false --ip-masq=false --bridge=none
  for _ in $(seq 1 300); do
    docker -H "unix://$RUNDIR/ds01-docker.sock" version >/dev/null 2>&1 && break; sleep 0.1
  done
  docker -H "unix://$RUNDIR/ds01-docker.sock" version >/dev/null ||
    { nsenter -t "$p" -m -p -- journalctl -u ds01-testbed-dockerd --no-pager | tail -20; return 1; }
  echo "testbed: dockerd up"
}

image() {
  local root="$TB_DIR/image-root" b
  # made again when an older testbed left an image without the current contents
  [ "$(docker -H "unix://$RUNDIR/ds01-docker.sock" image inspect -f \
      '{{index .Config.Labels "testbed.version"}}' ds01-test:1 2>/dev/null)" = 2 ] && return 0
  rm -rf "$root"; mkdir -p "$root/bin" "$root/tmp" "$root/workspace" "$root/etc"
  cp /bin/busybox "$root/bin/busybox"
  for b in sh sleep cat env ls ps grep true id echo tty stat test; do
    ln -sf busybox "$root/bin/$b"
  done
  # VS Code's devcontainer CLI reads the image's users and groups
  printf 'root:x:0:0:root:/root:/bin/sh\n' > "$root/etc/passwd"
  printf 'root:x:0:\n' > "$root/etc/group"
  tar -C "$root" -c . | docker -H "unix://$RUNDIR/ds01-docker.sock" import \
    --change 'LABEL testbed.version=2' - ds01-test:1 >/dev/null
  echo "testbed: image ds01-test:1"
}

stop() {
  local p c s; p=$(pid1)
  if [ -n "$p" ] && kill -0 "$p" 2>/dev/null; then
    nsenter -t "$p" -m -p -- systemctl stop ds01-testbed-dockerd.service >/dev/null 2>&1 || true
    nsenter -t "$p" -m -p -- systemctl exit >/dev/null 2>&1 || true
    for _ in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$p" 2>/dev/null; then kill -KILL "$p" || true; sleep 0.2; fi
  fi
  # the empty cgroups systemd left in the host's hierarchies (there is no cgroup namespace)
  for c in /sys/fs/cgroup/*/; do
    for s in "$c"*.slice "$c"*.scope; do
      [ -d "$s" ] && { find "$s" -depth -type d -exec rmdir {} \; 2>/dev/null || true; }
    done
  done
  rm -f "$PIDFILE"
  echo "testbed: stopped"
}

case "${1:-}" in
  __inner) shift; inner "$@" ;;
  start) start ;;
  dockerd) dockerd_start ;;
  image) image ;;
  stop) stop ;;
  status) if up; then echo "up (pid $(pid1))"; else echo "down"; exit 1; fi ;;
  env) echo "export DBUS_SYSTEM_BUS_ADDRESS=$(bus) DOCKER_HOST=unix://$RUNDIR/ds01-docker.sock TB_PID=$(pid1)" ;;
  exec) shift; exec nsenter -t "$(pid1)" -m -p -- "$@" ;;
  *) echo "usage: $0 start|dockerd|image|env|exec CMD...|stop|status" >&2; exit 2 ;;
esac
