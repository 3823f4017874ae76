#!/usr/bin/env bash
# Builds the .deb and .rpm and checks them: lintian and the .deb's relations, the .rpm's
# file list, scripts and relations, then everything that needs them installed and running
# under a real systemd, in a booted container (packaging/test-systemd.sh): install,
# start, route, reload, logrotate, upgrade while running, stop, a bad config, remove,
# purge, and the .rpm's install, run and erase. Nothing is installed on the host.
#
# Needs root, cargo-deb, cargo-generate-rpm, lintian, rpm, systemd-container and
# mmdebstrap (.ci/run installs them). Run from the repository root; run by
# tests/packaging.rs as part of `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "FAIL: $*" >&2; exit 1; }
step() { echo "== $*"; }

[ "$(id -u)" = 0 ] || fail "needs root (systemd-nspawn)"
WORK=$(mktemp -d /tmp/pkgtest.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

# Cargo's build chatter goes to a file, shown only when the build fails, so that a
# failure further on is not buried under it in the test's report.
build() { "$@" >"$WORK/build.log" 2>&1 || { tail -n 40 "$WORK/build.log" >&2; fail "$*"; }; }

step "build .deb"
build cargo deb --locked --output "$WORK/"
DEB=$(ls "$WORK"/*.deb)

step "lintian"
# Overrides, each with its reason, live in packaging/lintian-overrides.
lintian --fail-on error,warning --suppress-tags-from-file packaging/lintian-overrides "$DEB"

step ".deb contents and relations"
LIST=$(dpkg-deb -c "$DEB" | awk '{print $6}' | sed 's|^\.||')
for f in /usr/bin/mysqlrouter /etc/mysqlrouter/mysqlrouter.conf /usr/lib/systemd/system/mysqlrouter.service \
         /usr/lib/tmpfiles.d/mysqlrouter.conf /etc/logrotate.d/mysqlrouter /usr/share/man/man1/mysqlrouter.1.gz \
         /usr/share/doc/mysqlrouter-rs/copyright; do
  grep -qx "$f" <<<"$LIST" || fail ".deb lacks $f"
done
dpkg-deb -I "$DEB" conffiles | grep -qx /etc/mysqlrouter/mysqlrouter.conf || fail "mysqlrouter.conf is not a conffile"
dpkg-deb -f "$DEB" Provides Conflicts Replaces | grep -c mysql-router | grep -q 3 || fail "relations to mysql-router"

step "build a newer .deb for the upgrade check"
# The same package with a higher version and a binary that differs (a marker appended
# after the ELF image), so the check can tell which binary the running router is.
dpkg-deb -R "$DEB" "$WORK/newer"
VERSION=$(dpkg-deb -f "$DEB" Version)
sed -i "s/^Version: .*/Version: $VERSION+upgradetest/" "$WORK/newer/DEBIAN/control"
printf 'mysqlrouter-rs upgrade test\n' >> "$WORK/newer/usr/bin/mysqlrouter"
(cd "$WORK/newer" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z | xargs -0 md5sum > DEBIAN/md5sums)
dpkg-deb --root-owner-group -b "$WORK/newer" "$WORK/newer.deb" >/dev/null

step "build .rpm"
build cargo generate-rpm --output "$WORK/"
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

bash packaging/test-systemd.sh "$DEB" "$WORK/newer.deb" "$RPM" packaging/mysqlrouter.conf packaging/mysqlrouter.service
echo "packages OK"
