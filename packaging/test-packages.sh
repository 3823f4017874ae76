#!/usr/bin/env bash
# Builds the .deb and .rpm and checks them: lintian, install, the installed router
# forwarding a real client's query to a real mariadbd as the mysqlrouter user, remove,
# purge (nothing left behind), and the .rpm's file list, scripts and relations.
#
# Needs root, cargo-deb, cargo-generate-rpm, lintian, rpm, mariadb-server and
# mariadb-client (.ci/run installs them). Run from the repository root; run by
# tests/packaging.rs as part of `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "FAIL: $*" >&2; exit 1; }
step() { echo "== $*"; }

[ "$(id -u)" = 0 ] || fail "needs root (dpkg -i)"
PKG=mysqlrouter-rs
WORK=$(mktemp -d /tmp/pkgtest.XXXXXX)
chmod 755 "$WORK"
MPID=""
RPID=""
cleanup() {
  [ -n "$RPID" ] && kill "$RPID" 2>/dev/null || true
  [ -n "$MPID" ] && kill -9 "$MPID" 2>/dev/null || true
  dpkg -P "$PKG" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# A leftover from an interrupted run (or a router run by hand as root) must not hide a
# packaging bug.
dpkg -P "$PKG" >/dev/null 2>&1 || true
rm -rf /var/log/mysqlrouter /var/lib/mysqlrouter /run/mysqlrouter /etc/mysqlrouter

step "build .deb"
cargo deb --locked --output "$WORK/" >/dev/null
DEB=$(ls "$WORK"/*.deb)

step "lintian"
# Overrides, each with its reason, live in packaging/lintian-overrides.
lintian --fail-on error,warning --suppress-tags-from-file packaging/lintian-overrides "$DEB"

step "dpkg -i"
dpkg -i "$DEB"
getent passwd mysqlrouter >/dev/null || fail "user mysqlrouter missing"
getent group mysqlrouter >/dev/null || fail "group mysqlrouter missing"
for d in /var/log/mysqlrouter /var/lib/mysqlrouter /run/mysqlrouter; do
  [ "$(stat -c %U:%G "$d")" = mysqlrouter:mysqlrouter ] || fail "$d not owned by mysqlrouter"
done
dpkg-query -W -f='${Conffiles}\n' "$PKG" | grep -q '/etc/mysqlrouter/mysqlrouter.conf' || fail "mysqlrouter.conf is not a conffile"
UNIT=$(dpkg -L "$PKG" | grep 'systemd/system/mysqlrouter.service$') || fail "no unit file"
grep -q '^Type=notify' "$UNIT" || fail "unit is not Type=notify"
grep -q '^ExecStart=/usr/bin/mysqlrouter -c /etc/mysqlrouter/mysqlrouter.conf' "$UNIT" || fail "ExecStart"
grep -q '^User=mysqlrouter' "$UNIT" || fail "User="
dpkg -L "$PKG" | grep -q '^/usr/lib/tmpfiles.d/mysqlrouter.conf$' || fail "tmpfiles.d"
dpkg -L "$PKG" | grep -q '^/etc/logrotate.d/mysqlrouter$' || fail "logrotate"
dpkg -L "$PKG" | grep -q '^/usr/share/man/man1/mysqlrouter.1' || fail "man page"
dpkg -L "$PKG" | grep -q '^/usr/share/doc/mysqlrouter-rs/copyright$' || fail "copyright"
/usr/bin/mysqlrouter -V | grep -q '^MySQL Router  Ver ' || fail "-V"
dpkg-deb -f "$DEB" Provides Conflicts Replaces | grep -c mysql-router | grep -q 3 || fail "relations to mysql-router"
if [ -d /run/systemd/system ]; then
  systemctl is-enabled mysqlrouter.service >/dev/null || fail "service not enabled"
  systemctl is-active mysqlrouter.service >/dev/null && fail "service started on install"
fi

step "installed router as mysqlrouter forwards a real query"
install -d -o mysql -g mysql "$WORK/db"
mariadb-install-db --no-defaults --datadir="$WORK/db/data" --auth-root-authentication-method=socket \
  --skip-test-db --user=mysql >/dev/null
DBPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
RPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
/usr/sbin/mariadbd --no-defaults --datadir="$WORK/db/data" --port="$DBPORT" --bind-address=127.0.0.1 \
  --socket="$WORK/db/sock" --pid-file="$WORK/db/pid" --user=mysql --skip-log-bin \
  --innodb-buffer-pool-size=16M >"$WORK/db/err.log" 2>&1 &
MPID=$!
for _ in $(seq 100); do [ -S "$WORK/db/sock" ] && break; sleep 0.1; done
mariadb -S "$WORK/db/sock" -uroot -e "CREATE USER 't'@'%' IDENTIFIED BY 't'; GRANT ALL ON *.* TO 't'@'%';"
cat > "$WORK/route.conf" <<EOF
[routing:pkgtest]
bind_port = $RPORT
destinations = 127.0.0.1:$DBPORT
routing_strategy = first-available
EOF
chmod 644 "$WORK/route.conf"
/usr/bin/mysqlrouter --user=mysqlrouter -c /etc/mysqlrouter/mysqlrouter.conf -a "$WORK/route.conf" &
RPID=$!
for _ in $(seq 100); do (echo > "/dev/tcp/127.0.0.1/$RPORT") 2>/dev/null && break; sleep 0.1; done
GOT=$(mariadb -h127.0.0.1 -P"$RPORT" --protocol=TCP -ut -pt -N -B -e 'SELECT @@port')
[ "$GOT" = "$DBPORT" ] || fail "query through the installed router returned '$GOT'"
[ "$(ps -o user= -p "$RPID" | tr -d ' ')" = mysqlrouter ] || fail "router not running as mysqlrouter"
grep -q "Starting 'MySQL Router'" /var/log/mysqlrouter/mysqlrouter.log || fail "no log in /var/log/mysqlrouter"
kill "$RPID"; wait "$RPID" || fail "router exit status $?"
RPID=""

step "dpkg -r, then dpkg -P"
dpkg -r "$PKG"
[ ! -e /usr/bin/mysqlrouter ] || fail "binary left after remove"
[ -e /etc/mysqlrouter/mysqlrouter.conf ] || fail "conffile removed by dpkg -r"
dpkg -P "$PKG"
for p in /etc/mysqlrouter /var/log/mysqlrouter /var/lib/mysqlrouter /run/mysqlrouter /usr/share/doc/mysqlrouter-rs; do
  [ ! -e "$p" ] || fail "$p left after purge"
done
getent passwd mysqlrouter >/dev/null && fail "user left after purge"
getent group mysqlrouter >/dev/null && fail "group left after purge"

step "build .rpm"
cargo generate-rpm --output "$WORK/" >/dev/null
RPM=$(ls "$WORK"/*.rpm)
LIST=$(rpm -qp --list "$RPM")
for f in /usr/bin/mysqlrouter /etc/mysqlrouter/mysqlrouter.conf /usr/lib/systemd/system/mysqlrouter.service \
         /usr/lib/tmpfiles.d/mysqlrouter.conf /etc/logrotate.d/mysqlrouter /usr/share/man/man1/mysqlrouter.1; do
  grep -qx "$f" <<<"$LIST" || fail "rpm lacks $f"
done
rpm -qp --configfiles "$RPM" | grep -qx /etc/mysqlrouter/mysqlrouter.conf || fail "rpm conffile"
SCRIPTS=$(rpm -qp --scripts "$RPM")
grep -q 'useradd -r -g mysqlrouter' <<<"$SCRIPTS" || fail "rpm preinstall creates no user"
grep -q 'disable --now mysqlrouter.service' <<<"$SCRIPTS" || fail "rpm preuninstall does not stop the service"
rpm -qp --requires "$RPM" | grep -q '^shadow-utils' || fail "rpm requires shadow-utils"
rpm -qp --provides "$RPM" | grep -q '^mysql-router' || fail "rpm provides mysql-router"
rpm -qp --conflicts "$RPM" | grep -q '^mysql-router' || fail "rpm conflicts mysql-router"
echo "packages OK"
