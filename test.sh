#!/usr/bin/env bash
# The project's test command: installs what the tests need on a Debian machine that has
# only the Rust toolchain (as root; each step is skipped when already done), then runs
# `cargo test --locked --no-fail-fast` with any arguments given (e.g. `./test.sh --test
# routing`): every test binary runs even after one fails, so a run reports all failures.
# .ci/run calls exactly this.
set -euo pipefail
cd "$(dirname "$0")"
export DEBIAN_FRONTEND=noninteractive
# dpkg, useradd and mariadbd live in the sbin folders, which a minimal PATH may lack.
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

# Debian packages: MariaDB server and client for the integration tests and the
# quickstart, openssl for test certificates, groff for the man page check, lintian/rpm
# for the package checks, systemd-nspawn and mmdebstrap to check the packages under a
# real systemd in a booted Debian (packaging/test-systemd.sh), PyMySQL and pip (for the
# MySQL connectors below) for the MySQL 9.7 tests; gcc and libc6-dev for the crates that
# compile C (aws-lc-rs, zstd) and for linking (rustup's toolchain expects a system cc).
need=()
for p in mariadb-server mariadb-client groff-base lintian rpm adduser python3 openssl \
         systemd-container mmdebstrap python3-pymysql python3-pip curl gcc libc6-dev; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || { echo "test.sh: run as root to install: ${need[*]}" >&2; exit 1; }
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${need[@]}"
fi

# Oracle's Python connectors (not packaged by Debian 12) for Debian's python3: classic
# (mysql-connector-python) and X DevAPI (mysqlx-connector-python), versions tested.
/usr/bin/python3 -c 'import mysql.connector, mysqlx; mysqlx.get_session' 2>/dev/null ||
  /usr/bin/python3 -m pip install -q --break-system-packages --root-user-action=ignore \
    mysql-connector-python==26.10.0 mysqlx-connector-python==26.10.0

# Cargo tools for building the packages.
command -v cargo-deb >/dev/null || cargo install --locked cargo-deb
command -v cargo-generate-rpm >/dev/null || cargo install --locked cargo-generate-rpm

cargo test --locked --no-fail-fast "$@"
