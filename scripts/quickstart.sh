#!/usr/bin/env bash
# Quickstart: the router's main job with no database at hand. Starts three private
# MariaDB servers (Debian's mariadb-server) on loopback ports, the router in front of
# them with a read-write route (first-available) and a read-only route (round-robin),
# then shows with the `mariadb` client:
#   1. round-robin: reads rotate over the three servers;
#   2. the sticky read-write route: writes stay on the first server;
#   3. a failover: the first server is killed, writes move to the second (router log);
#      the first comes back and leaves quarantine, writes stay where they are.
# Everything lives in a temporary folder, removed on exit with the servers and router.
# As root on Debian, installs mariadb-server and mariadb-client first if they are missing.
#
#   scripts/quickstart.sh [--stay]      --stay: keep everything up until Ctrl-C
#
# Environment: MYSQLROUTER (router binary; default target/release/mysqlrouter, built
# with `cargo build --release` if missing), QUICKSTART_PORTS (three server ports,
# default "13301 13302 13303"), QUICKSTART_ROUTER_PORTS (read-write and read-only
# ports, default "6446 6447").
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

STAY=0
case ${1:-} in
  --stay) STAY=1;;
  "") ;;
  *) echo "usage: $0 [--stay]" >&2; exit 2;;
esac

die() { echo "quickstart: $*" >&2; exit 1; }
have_mariadb() { command -v mariadbd && command -v mariadb-install-db && command -v mariadb; } >/dev/null
if ! have_mariadb && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "== installing Debian's mariadb-server and mariadb-client (the servers are started privately below)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends mariadb-server mariadb-client >/dev/null
fi
have_mariadb ||
  die "mariadbd, mariadb-install-db or mariadb not found: install Debian's mariadb-server and mariadb-client (apt-get install mariadb-server mariadb-client)"


read -r -a PORTS <<<"${QUICKSTART_PORTS:-13301 13302 13303}"
read -r RW RO <<<"${QUICKSTART_ROUTER_PORTS:-6446 6447}"
[ ${#PORTS[@]} = 3 ] || die "QUICKSTART_PORTS needs three ports"
port_busy() {  # a TCP listener on port $1? Read from /proc: connecting would be a client
  awk -v p="$(printf ':%04X' "$1")" '$4 == "0A" && substr($2, length($2) - 4) == p { f = 1 }
    END { exit !f }' /proc/net/tcp /proc/net/tcp6 2>/dev/null
}
for p in "${PORTS[@]}" "$RW" "$RO"; do
  ! port_busy "$p" || die "port $p is in use (set QUICKSTART_PORTS / QUICKSTART_ROUTER_PORTS)"
done

ROUTER=${MYSQLROUTER:-target/release/mysqlrouter}
if [ ! -x "$ROUTER" ]; then
  [ -z "${MYSQLROUTER:-}" ] || die "MYSQLROUTER=$ROUTER is not an executable"
  echo "== building the router (cargo build --release)"
  cargo build --release --quiet
fi

WORK=$(mktemp -d /tmp/mysqlrouter-quickstart.XXXXXX)
chmod 755 "$WORK"
ROUTER_PID=""
gone() {  # gone PID: waits (5 s at most) until that process has ended
  for _ in $(seq 50); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
  return 1
}
declare -A SERVER_PID=()
cleanup() {
  [ -z "$ROUTER_PID" ] || kill "$ROUTER_PID" 2>/dev/null || true
  for p in "${!SERVER_PID[@]}"; do kill -9 "${SERVER_PID[$p]}" 2>/dev/null || true; done
  wait 2>/dev/null || true
  # Servers started in parallel are not our children: wait (bounded) until they are gone.
  for p in "${!SERVER_PID[@]}"; do gone "${SERVER_PID[$p]}" || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# mariadbd refuses to run as root unless told which user to be.
AS=()
[ "$(id -u)" != 0 ] || AS=(--user=mysql)

start_server() {  # start_server PORT: starts it (datadir made once) and waits until it answers
  local p=$1 d=$WORK/db-$1
  if [ ! -d "$d/data" ]; then
    mkdir -p "$d/tmp"; [ "$(id -u)" != 0 ] || chown -R mysql: "$d"
    # Its own temporary folder: bootstraps running side by side collided in /tmp.
    TMPDIR=$d/tmp mariadb-install-db --no-defaults --datadir="$d/data" "${AS[@]}" \
      --auth-root-authentication-method=socket --skip-test-db >"$d/install.log" 2>&1 ||
      die "mariadb-install-db failed: $(grep -iE "error|denied|cannot|can.t" "$d/install.log" | head -n 5)"
  fi
  mariadbd --no-defaults --datadir="$d/data" --tmpdir="$d/tmp" --port="$p" --bind-address=127.0.0.1 \
    --socket="$d/sock" --pid-file="$d/pid" --skip-name-resolve --skip-log-bin \
    --innodb-buffer-pool-size=16M --performance-schema=OFF "${AS[@]}" \
    </dev/null >"$d/err.log" 2>&1 &
  SERVER_PID[$p]=$!
  disown "$!"   # no "Killed" job report when cleanup kills it
  for _ in $(seq 150); do
    mariadb --no-defaults -S "$d/sock" -uroot -e 'SELECT 1' >/dev/null 2>&1 && return 0
    kill -0 "${SERVER_PID[$p]}" 2>/dev/null || die "mariadbd on $p exited: $(tail -n 3 "$d/err.log")"
    sleep 0.2
  done
  die "mariadbd on $p did not answer within 30 s"
}

echo "== starting MariaDB on 127.0.0.1:${PORTS[0]}, :${PORTS[1]}, :${PORTS[2]} (in $WORK)"
STARTERS=()
for p in "${PORTS[@]}"; do start_server "$p" & STARTERS+=($!); done
for s in "${STARTERS[@]}"; do wait "$s" || exit 1; done
# (started in subshells, in parallel: each server's pid is in its pid file)
for p in "${PORTS[@]}"; do
  SERVER_PID[$p]=$(cat "$WORK/db-$p/pid")
  mariadb --no-defaults -S "$WORK/db-$p/sock" -uroot \
    -e "CREATE USER 'demo'@'%' IDENTIFIED BY 'demo'; GRANT ALL ON *.* TO 'demo'@'%';"
done

D="127.0.0.1:${PORTS[0]}, 127.0.0.1:${PORTS[1]}, 127.0.0.1:${PORTS[2]}"
cat >"$WORK/mysqlrouter.conf" <<EOF
[DEFAULT]
logging_folder = $WORK
runtime_folder = $WORK

[logger]
level = INFO

# Writes: the first server that answers, remembered until it fails.
[routing:rw]
bind_address = 127.0.0.1
bind_port = $RW
destinations = $D
routing_strategy = first-available

# Reads: rotate over all servers.
[routing:ro]
bind_address = 127.0.0.1
bind_port = $RO
destinations = $D
routing_strategy = round-robin
EOF
echo "== starting the router: $ROUTER -c $WORK/mysqlrouter.conf"
"$ROUTER" -c "$WORK/mysqlrouter.conf" </dev/null >"$WORK/router.out" 2>&1 &
ROUTER_PID=$!
LOG=$WORK/mysqlrouter.log
wait_log() {  # wait_log TEXT: until the router's log has it (10 s at most)
  for _ in $(seq 100); do grep -qF -- "$1" "$LOG" 2>/dev/null && return 0; sleep 0.1; done
  die "the router did not log '$1' within 10 s: $(cat "$WORK/router.out" "$LOG" 2>/dev/null | tail -n 5)"
}
wait_log "listening on '127.0.0.1:$RW'"
wait_log "listening on '127.0.0.1:$RO'"

ask() {  # ask PORT: which server answered a client of the router on PORT
  mariadb --no-defaults -h127.0.0.1 -P"$1" --protocol=TCP -udemo -pdemo -N -B \
    --connect-timeout=5 -e 'SELECT @@port'
}

echo
echo "== 1. round-robin: six clients of the read-only route (port $RO); the server that answered each:"
for i in 1 2 3 4 5 6; do echo "   read  $i -> $(ask "$RO")"; done

echo "== 2. first-available: three clients of the read-write route (port $RW):"
for i in 1 2 3; do echo "   write $i -> $(ask "$RW")"; done

echo "== 3. failover: killing the server on ${PORTS[0]}"
kill -9 "${SERVER_PID[${PORTS[0]}]}"
gone "${SERVER_PID[${PORTS[0]}]}" || die "the server on ${PORTS[0]} survived kill -9"
unset "SERVER_PID[${PORTS[0]}]"
for i in 1 2; do echo "   write $i -> $(ask "$RW")"; done
wait_log "switched destination"
echo "   the router's log:"
grep -E "WARNING" "$LOG" | sed 's/^/   | /'

echo "== 4. the server on ${PORTS[0]} comes back; the read-write route stays where it is"
start_server "${PORTS[0]}"
wait_log "'127.0.0.1:${PORTS[0]}' is reachable again"
for i in 1 2; do echo "   write $i -> $(ask "$RW")"; done
echo "   read  -> $(ask "$RO"), $(ask "$RO"), $(ask "$RO")"
grep -F "is reachable again" "$LOG" | sed 's/^/   | /'

if [ "$STAY" = 1 ]; then
  echo
  echo "== up until Ctrl-C: mariadb -h127.0.0.1 -P$RW --protocol=TCP -udemo -pdemo  (read-write)"
  echo "                    mariadb -h127.0.0.1 -P$RO --protocol=TCP -udemo -pdemo  (read-only)"
  echo "   config $WORK/mysqlrouter.conf, log $LOG"
  wait "$ROUTER_PID"
fi
echo "== done; stopping the router and the servers"
