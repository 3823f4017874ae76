#!/usr/bin/env bash
# test-systemd.sh DEB NEWER_DEB RPM CONF UNIT
#
# Checks the packages under a real systemd: boots a minimal Debian 12 with
# `systemd-nspawn -b` (the host need not run systemd) and, inside it, with a real mariadbd
# (the container's own mariadb.service) as the backend:
#   .deb: install (enabled, not started; conffile and unit as shipped; user, folders),
#   `systemd-analyze security` exposure <= 3.0, a start with the shipped conffile, then
#   with routes added to it: start (Type=notify READY, as mysqlrouter),
#   routing over TCP and the unix socket, reload (HUP, same pid), logrotate (new file
#   0640 mysqlrouter, same pid, lines go to the new file), upgrade while running to
#   NEWER_DEB (new pid, new binary, the edited conffile kept, routing works), stop (exit
#   0, pid file gone), upgrade while stopped (stays stopped), a bad config (no restart
#   loop, the router's message in `systemctl status`), remove while running (stopped),
#   purge (user, folders, conffile gone);
#   .rpm: install with rpm, start, route, erase (stopped, files gone).
# CONF and UNIT are the repository's packaging/mysqlrouter.conf and .service, to compare
# with what the .deb installs.
#
# The root (mmdebstrap from the host's apt sources) is cached in $MYSQLROUTER_RS_TEST_CACHE
# (default /var/cache/mysqlrouter-rs-test), keyed by the package list; each run boots an
# overlay on it, so the cache stays pristine and nothing is installed on the host.
# Needs root, systemd-container, mmdebstrap (.ci/run installs them).
set -euo pipefail

fail() { echo "FAIL: $*" >&2; exit 1; }
T0=$SECONDS
step() { echo "== [$((SECONDS - T0))s] $*"; }

[ $# -eq 5 ] || fail "usage: $0 DEB NEWER_DEB RPM CONF UNIT"
[ "$(id -u)" = 0 ] || fail "needs root (systemd-nspawn)"
for t in systemd-nspawn mmdebstrap nsenter; do
  command -v "$t" >/dev/null || fail "$t missing (apt-get install systemd-container mmdebstrap)"
done
PKG=mysqlrouter-rs

# --- the cached root -----------------------------------------------------------------
# mariadb-server is the backend, rpm installs the .rpm, logrotate runs the snippet.
PACKAGES="systemd,systemd-sysv,dbus,adduser,logrotate,procps,mariadb-server,mariadb-client,rpm"
CACHE=${MYSQLROUTER_RS_TEST_CACHE:-/var/cache/mysqlrouter-rs-test}
KEY=$( (echo bookworm "$PACKAGES"; cat /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null || true) |
  sha256sum | cut -c1-16)
BASE="$CACHE/rootfs-$KEY"
mkdir -p "$CACHE"
# One builder at a time; a root made for another package list or apt source is dropped.
exec 9>"$CACHE/lock"
flock 9
if [ ! -d "$BASE" ]; then
  step "mmdebstrap a Debian 12 root into $BASE (once; later runs reuse it)"
  find "$CACHE" -mindepth 1 -maxdepth 1 -name 'rootfs-*' -exec rm -rf {} +
  mmdebstrap --quiet --variant=apt --include="$PACKAGES" bookworm "$BASE.tmp" >/dev/null
  mv "$BASE.tmp" "$BASE"
fi
flock -u 9

# --- boot an overlay of it -------------------------------------------------------------
WORK=$(mktemp -d /tmp/systemd-test.XXXXXX)
ROOT="$WORK/root"
MACHINE=""
NSPID=""
LEADER=""
# Stops the container and removes its overlay; the packages in $WORK/pkg stay.
stop_container() {
  if [ -n "$NSPID" ] && kill -0 "$NSPID" 2>/dev/null; then
    kill -TERM "$NSPID" 2>/dev/null || true        # nspawn powers the container off
    for _ in $(seq 100); do kill -0 "$NSPID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$NSPID" 2>/dev/null || true
  fi
  [ -z "$NSPID" ] || wait "$NSPID" 2>/dev/null || true
  NSPID=""
  LEADER=""
  if mountpoint -q "$ROOT"; then umount "$ROOT" || umount -l "$ROOT" || true; fi
  mountpoint -q "$ROOT" || rm -rf "$WORK/upper" "$WORK/ovl"
  [ -z "$MACHINE" ] || rmdir "/run/systemd/nspawn/propagate/$MACHINE" 2>/dev/null || true
}
cleanup() {
  stop_container
  mountpoint -q "$ROOT" || rm -rf "$WORK"
}
trap cleanup EXIT
mkdir -p "$ROOT" "$WORK/pkg"
cp "$1" "$WORK/pkg/old.deb"
cp "$2" "$WORK/pkg/new.deb"
cp "$3" "$WORK/pkg/pkg.rpm"
cp "$4" "$WORK/pkg/mysqlrouter.conf"
cp "$5" "$WORK/pkg/mysqlrouter.service"
NEW_SHA=$(dpkg-deb --fsys-tarfile "$2" | tar -xO ./usr/bin/mysqlrouter | sha256sum | cut -d' ' -f1)
OLD_SHA=$(dpkg-deb --fsys-tarfile "$1" | tar -xO ./usr/bin/mysqlrouter | sha256sum | cut -d' ' -f1)
[ "$NEW_SHA" != "$OLD_SHA" ] || fail "the newer .deb must carry a different binary"
NEW_VERSION=$(dpkg-deb -f "$2" Version)

# Runs a command inside the container (its namespaces and root), with a clean environment.
ct() {
  nsenter -t "$LEADER" -m -u -i -n -p -r -w \
    env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 SYSTEMD_PAGER= "$@"
}
# Boots a fresh overlay of the cached root, up to the container's mariadbd answering.
# Nothing of ours is installed yet, so a failure here is the container's, not the
# package's: it returns 1 with the reason in BOOT_ERR, and what the container said in
# $WORK/boot.diag.
boot_container() {
  BOOT_ERR=""
  : >"$WORK/boot.diag"
  MACHINE="mrtest$$-$1"
  mkdir -p "$WORK/upper" "$WORK/ovl"
  mount -t overlay overlay -o "lowerdir=$BASE,upperdir=$WORK/upper,workdir=$WORK/ovl" "$ROOT" ||
    { BOOT_ERR="mount the overlay"; return 1; }
  systemd-nspawn --quiet -D "$ROOT" -M "$MACHINE" -b --register=no --keep-unit --private-network \
    --console=read-only --bind-ro="$WORK/pkg:/pkg" >"$WORK/console.log" 2>&1 </dev/null &
  NSPID=$!
  for _ in $(seq 300); do
    LEADER=$(pgrep -P "$NSPID" -x systemd || true)
    [ -n "$LEADER" ] && break
    kill -0 "$NSPID" 2>/dev/null || { BOOT_ERR="systemd-nspawn exited"; return 1; }
    sleep 0.1
  done
  [ -n "$LEADER" ] || { BOOT_ERR="no systemd in the container after 30 s"; return 1; }
  # Until systemd has its bus up, systemctl cannot connect (or, earlier still, says
  # "offline"); then --wait waits for the boot to end. Any answer that is not an end
  # state is asked again, for 120 s in all.
  local state="" deadline=$((SECONDS + 120))
  while [ "$SECONDS" -lt "$deadline" ]; do
    kill -0 "$NSPID" 2>/dev/null || { BOOT_ERR="systemd-nspawn exited during the boot"; return 1; }
    state=$(timeout 120 nsenter -t "$LEADER" -m -u -i -n -p -r -w \
      /usr/bin/systemctl is-system-running --wait 2>&1 || true)
    case "$state" in running | degraded | maintenance | stopping) break ;; esac
    sleep 0.1
  done
  case "$state" in
    running) ;;
    # A unit that the test does not use may fail in a container; say which, go on.
    degraded) ct systemctl --failed --no-pager >&2 || true ;;
    *) BOOT_ERR="boot ended '$state'"; ct systemctl --failed --no-pager >"$WORK/boot.diag" 2>&1 || true; return 1 ;;
  esac
  local i
  for i in $(seq 50); do
    ct mariadb -e "CREATE USER 't'@'%' IDENTIFIED BY 't'; GRANT ALL ON *.* TO 't'@'%';" \
      >"$WORK/boot.diag" 2>&1 && return 0
    sleep 0.1
  done
  BOOT_ERR="the container's mariadbd does not answer"
  { ct systemctl status --no-pager mariadb.service; ct journalctl --no-pager -n 30 -u mariadb.service; } \
    >>"$WORK/boot.diag" 2>&1 || true
  return 1
}

# The boot is tried up to three times, each on a fresh overlay: it is this test's
# scaffolding, and one failed boot says nothing about the packages. Each failure is
# reported in full on stdout, where the test's report shows it first, so a boot that
# fails now and then is seen, not hidden.
BOOTED=""
for attempt in 1 2 3; do
  step "boot the container (attempt $attempt)"
  if boot_container "$attempt"; then BOOTED=1; break; fi
  echo "BOOT FAILED (attempt $attempt): $BOOT_ERR"
  echo "-- what the container printed (last 40 lines):"; tail -n 40 "$WORK/console.log" || true
  echo "-- diagnostics:"; cat "$WORK/boot.diag" || true
  stop_container
done
[ -n "$BOOTED" ] || fail "the container did not boot in 3 attempts; last: $BOOT_ERR (details on stdout)"

prop() { ct systemctl show -P "$1" mysqlrouter.service; }
main_pid() { prop MainPID; }
query_tcp() { ct mariadb --no-defaults -h127.0.0.1 -P6446 --protocol=TCP -ut -pt -N -B -e 'SELECT @@port'; }
query_sock() { ct mariadb --no-defaults -S /run/mysqlrouter/mysql.sock -ut -pt -N -B -e 'SELECT @@port'; }
routes() {
  local got
  got=$(query_tcp) || fail "$1: no answer over TCP through the router"
  [ "$got" = 3306 ] || fail "$1: TCP through the router answered '$got'"
  got=$(query_sock) || fail "$1: no answer over the unix socket through the router"
  [ "$got" = 3306 ] || fail "$1: the unix socket through the router answered '$got'"
}
# Waits up to 5 s for a file in the container to contain a fixed string.
wait_grep() {
  for _ in $(seq 50); do ct grep -qF -- "$1" "$2" 2>/dev/null && return 0; sleep 0.1; done
  return 1
}
CONF=/etc/mysqlrouter/mysqlrouter.conf
LOG=/var/log/mysqlrouter/mysqlrouter.log
PIDFILE=/run/mysqlrouter/mysqlrouter.pid

step "dpkg -i: enabled, not started; conffile and unit as shipped"
ct dpkg -i /pkg/old.deb >/dev/null || fail "dpkg -i"
[ "$(ct systemctl is-enabled mysqlrouter.service)" = enabled ] || fail "service not enabled on install"
[ "$(ct systemctl is-active mysqlrouter.service || true)" = inactive ] || fail "service started on install"
ct cmp -s /pkg/mysqlrouter.conf "$CONF" || fail "installed $CONF differs from packaging/mysqlrouter.conf"
ct dpkg-query -W -f='${Conffiles}\n' "$PKG" | grep -q " $CONF " || fail "$CONF is not a conffile"
ct cmp -s /pkg/mysqlrouter.service /usr/lib/systemd/system/mysqlrouter.service || fail "installed unit differs"
ct getent passwd mysqlrouter >/dev/null || fail "user mysqlrouter missing"
for d in /var/log/mysqlrouter /var/lib/mysqlrouter /run/mysqlrouter; do
  [ "$(ct stat -c %U:%G "$d")" = mysqlrouter:mysqlrouter ] || fail "$d not owned by mysqlrouter"
done

step "systemd-analyze security"
EXPOSURE=$(ct systemd-analyze security --no-pager mysqlrouter.service |
  sed -n 's/.*Overall exposure level for mysqlrouter.service: \([0-9.]*\).*/\1/p')
[ -n "$EXPOSURE" ] || fail "no exposure level from systemd-analyze security"
echo "exposure $EXPOSURE"
awk -v e="$EXPOSURE" 'BEGIN { exit !(e <= 3.0) }' || fail "exposure $EXPOSURE > 3.0"

step "the conffile as shipped starts the service (no routes yet)"
timeout 60 nsenter -t "$LEADER" -m -u -i -n -p -r -w /usr/bin/systemctl start mysqlrouter.service ||
  { ct systemctl status --no-pager mysqlrouter.service >&2 || true; fail "systemctl start with the shipped config"; }
[ "$(prop ActiveState)" = active ] || fail "state $(prop ActiveState) with the shipped config"
wait_grep "Starting 'MySQL Router'" "$LOG" || fail "no start line in $LOG with the shipped config"
ct systemctl stop mysqlrouter.service || fail "systemctl stop"
[ "$(prop ExecMainStatus)" = 0 ] || fail "exit status $(prop ExecMainStatus) with the shipped config"

step "start: Type=notify READY, running as mysqlrouter, log file 0640"
# An administrator's edit of the conffile: a route over TCP and a unix socket, debug log,
# a pid file.
ct sed -i -e 's/^level = INFO/level = DEBUG/' \
  -e "s|^\\[DEFAULT\\]|[DEFAULT]\\npid_file = $PIDFILE|" "$CONF"
ct sh -c "cat >> $CONF" <<'EOF'

[routing:pkgtest]
bind_address = 127.0.0.1
bind_port = 6446
socket = /run/mysqlrouter/mysql.sock
destinations = 127.0.0.1:3306
routing_strategy = first-available
EOF
# `start` of a Type=notify unit returns once the router has sent READY=1.
timeout 60 nsenter -t "$LEADER" -m -u -i -n -p -r -w /usr/bin/systemctl start mysqlrouter.service ||
  { ct systemctl status --no-pager mysqlrouter.service >&2 || true; fail "systemctl start"; }
[ "$(prop Type)" = notify ] || fail "unit type $(prop Type)"
[ "$(prop ActiveState)/$(prop SubState)" = active/running ] || fail "state $(prop ActiveState)/$(prop SubState)"
[ "$(prop StatusText)" = running ] || fail "status text '$(prop StatusText)' (the router's STATUS=running)"
PID1=$(main_pid)
[ "$(ct ps -o user= -p "$PID1" | tr -d ' ')" = mysqlrouter ] || fail "router not running as mysqlrouter"
[ "$(ct cat "$PIDFILE")" = "$PID1" ] || fail "pid file does not hold the main pid"
[ "$(ct stat -c %a:%U:%G "$LOG")" = 640:mysqlrouter:mysqlrouter ] ||
  fail "log file $(ct stat -c %a:%U:%G "$LOG"), want 640:mysqlrouter:mysqlrouter"

step "route over TCP and the unix socket"
routes "after start"

step "reload: HUP, same pid"
ct systemctl reload mysqlrouter.service || fail "systemctl reload"
wait_grep "log file reopened (SIGHUP)" "$LOG" || fail "reload did not reach the router as SIGHUP"
[ "$(main_pid)" = "$PID1" ] || fail "reload changed the pid"
[ "$(prop ActiveState)" = active ] || fail "not active after reload"
routes "after reload"

step "logrotate: new log file 0640 mysqlrouter, same pid, new lines in the new file"
ct logrotate -f /etc/logrotate.d/mysqlrouter || fail "logrotate"
ct test -s "$LOG.1" || fail "no rotated $LOG.1"
[ "$(ct stat -c %a:%U:%G "$LOG")" = 640:mysqlrouter:mysqlrouter ] ||
  fail "log file after logrotate $(ct stat -c %a:%U:%G "$LOG"), want 640:mysqlrouter:mysqlrouter"
# postrotate's HUP: the router reopens and says so in the new file.
wait_grep "log file reopened (SIGHUP)" "$LOG" || fail "no reopen line in the new log after logrotate"
[ "$(main_pid)" = "$PID1" ] || fail "logrotate changed the pid"
ROTATED=$(ct stat -c %s "$LOG.1")
routes "after logrotate"
# The clients' DEBUG lines (`connected`, `connection closed`) reach the new file only.
wait_grep "[routing:pkgtest]" "$LOG" || fail "no route line in the new log after logrotate"
[ "$(ct stat -c %s "$LOG.1")" = "$ROTATED" ] || fail "the router still writes to the rotated file"

step "upgrade while running: new pid, new binary, routing works"
ct dpkg -i /pkg/new.deb >/dev/null || fail "dpkg -i of the newer .deb"
[ "$(ct dpkg-query -W -f='${Version}' "$PKG")" = "$NEW_VERSION" ] || fail "version after upgrade"
[ "$(prop ActiveState)" = active ] || fail "not active after upgrade"
PID2=$(main_pid)
[ "$PID2" != "$PID1" ] || fail "upgrade left the old process ($PID1) running"
EXE=$(ct readlink "/proc/$PID2/exe")
[ "$EXE" = /usr/bin/mysqlrouter ] || fail "router runs '$EXE' after upgrade"
[ "$(ct sha256sum "/proc/$PID2/exe" | cut -d' ' -f1)" = "$NEW_SHA" ] || fail "router does not run the new binary"
ct grep -q '^\[routing:pkgtest\]' "$CONF" || fail "upgrade lost the edited conffile"
routes "after upgrade"

step "stop: exit 0, pid file gone"
ct systemctl stop mysqlrouter.service || fail "systemctl stop"
[ "$(prop ActiveState)" = inactive ] || fail "state after stop $(prop ActiveState)"
[ "$(prop ExecMainStatus)" = 0 ] || fail "exit status $(prop ExecMainStatus) after stop"
[ "$(prop Result)" = success ] || fail "result $(prop Result) after stop"
ct test ! -e "$PIDFILE" || fail "pid file left after stop"
ct pgrep -x mysqlrouter >/dev/null && fail "a mysqlrouter process is left after stop"

step "a stopped router stays stopped across an upgrade"
ct dpkg -i /pkg/old.deb >/dev/null 2>&1 || fail "dpkg -i over the newer version"
[ "$(ct systemctl is-active mysqlrouter.service || true)" = inactive ] || fail "upgrade started a stopped router"

step "bad config: no restart loop, the router's message in systemctl status"
ct sed -i 's/^bind_port = 6446$/bind_port = 99999/' "$CONF"
ct systemctl start mysqlrouter.service 2>/dev/null && fail "started with bind_port = 99999"
# A scheduled restart would show as activating/auto-restart here.
[ "$(prop ActiveState)/$(prop SubState)" = failed/failed ] ||
  fail "state $(prop ActiveState)/$(prop SubState) after a configuration error, want failed/failed"
STATUS=$(ct systemctl status --no-pager -n 20 mysqlrouter.service || true)
grep -q 'Error: Configuration error: option bind_port in \[routing:pkgtest\] needs value between 1 and 65535 inclusive, was .99999.' <<<"$STATUS" ||
  { echo "$STATUS" >&2; fail "the router's error is not in systemctl status"; }
[ "$(prop NRestarts)" = 0 ] || fail "restarted $(prop NRestarts) times on a configuration error"
[ "$(prop ExecMainStatus)" = 1 ] || fail "exit status $(prop ExecMainStatus) on a configuration error"

step "remove while running stops the router; purge leaves nothing"
ct sed -i 's/^bind_port = 99999$/bind_port = 6446/' "$CONF"
ct systemctl reset-failed mysqlrouter.service
ct systemctl start mysqlrouter.service || fail "systemctl start with the config fixed"
routes "before remove"
ct dpkg -r "$PKG" >/dev/null || fail "dpkg -r"
ct pgrep -x mysqlrouter >/dev/null && fail "dpkg -r left the router running"
ct test -e "$CONF" || fail "dpkg -r removed the conffile"
ct dpkg -P "$PKG" >/dev/null || fail "dpkg -P"
for p in /etc/mysqlrouter /var/log/mysqlrouter /var/lib/mysqlrouter /run/mysqlrouter /usr/bin/mysqlrouter \
         /usr/lib/systemd/system/mysqlrouter.service /usr/share/doc/mysqlrouter-rs; do
  ct test ! -e "$p" || fail "$p left after purge"
done
ct getent passwd mysqlrouter >/dev/null && fail "user left after purge"
ct getent group mysqlrouter >/dev/null && fail "group left after purge"
ct systemctl daemon-reload
[ "$(ct systemctl is-enabled mysqlrouter.service 2>/dev/null || true)" != enabled ] || fail "still enabled after purge"

step "rpm: install, start, route, erase"
ct rpm -i --nodeps /pkg/pkg.rpm || fail "rpm -i"
ct getent passwd mysqlrouter >/dev/null || fail "rpm: user mysqlrouter missing"
[ "$(ct stat -c %U:%G /var/log/mysqlrouter)" = mysqlrouter:mysqlrouter ] || fail "rpm: log folder owner"
ct systemctl daemon-reload    # what Fedora's rpm file triggers do
ct cmp -s /pkg/mysqlrouter.conf "$CONF" || fail "rpm: installed $CONF differs"
ct sh -c "cat >> $CONF" <<'EOF'

[routing:pkgtest]
bind_address = 127.0.0.1
bind_port = 6446
socket = /run/mysqlrouter/mysql.sock
destinations = 127.0.0.1:3306
routing_strategy = round-robin
EOF
timeout 60 nsenter -t "$LEADER" -m -u -i -n -p -r -w /usr/bin/systemctl start mysqlrouter.service ||
  { ct systemctl status --no-pager mysqlrouter.service >&2 || true; fail "rpm: systemctl start"; }
[ "$(ct ps -o user= -p "$(main_pid)" | tr -d ' ')" = mysqlrouter ] || fail "rpm: router not running as mysqlrouter"
routes "rpm"
ct rpm -e "$PKG" || fail "rpm -e"
ct pgrep -x mysqlrouter >/dev/null && fail "rpm -e left the router running"
ct test ! -e /usr/bin/mysqlrouter || fail "rpm -e left the binary"
ct test ! -e /usr/lib/systemd/system/mysqlrouter.service || fail "rpm -e left the unit"
ct test -e "$CONF.rpmsave" || fail "rpm -e did not keep the edited config as .rpmsave"

step "systemd checks OK"
