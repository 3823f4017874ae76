#!/usr/bin/python3
"""The issue's scenario: thousands of mostly idle clients over a pooling (and, once it
exists, sharing) route, measured on the server side.

    /usr/bin/python3 bench/pool_scenario.py [--clients N] [--seconds S] [--ramp R] [--skip-direct]

Starts one private MariaDB 10.11 (max_connections high enough for the direct run) and
this router (target/release) with `[connection_pool] max_idle_server_connections = 50`
and a route with `connection_sharing = 1`, `connection_sharing_delay = 0`
(client_ssl_mode = PREFERRED, server_ssl_mode = DISABLED). Then `poolbench scenario` (examples/poolbench.rs,
mysql_async, plain TCP) opens N client connections over R seconds; each sends
`SELECT 1` every 1-5 s (uniform) for S seconds after the ramp, while the server's
Threads_connected is sampled every second. The same run goes directly to the server
(unless --skip-direct) as the latency reference. Prints a table: connections made,
failures, queries, p50/p99/max latency, the server's Threads_connected (max and at the
end), and whether the router shared server connections at all (its log says when
`connection_sharing = 1` is not implemented). The issue's target: Threads_connected
<= 50 per server while every query succeeds.

Bounded: 2 runs x (R + S + 30 s hard stop); the soft descriptor limit is raised to the
hard one for the router and the client. Needs: mariadb-server, openssl, a release build
(cargo build --release --bin mysqlrouter --example poolbench).
"""
import argparse, os, re, resource, shutil, subprocess, tempfile

from harness import cleanup, free_port, run, spawn, wait_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.path.join(ROOT, "target", "release")
ROUTER = os.path.join(TARGET, "mysqlrouter")
POOLBENCH = os.path.join(TARGET, "examples", "poolbench")


def start_mariadb(base, max_conn):
    d = tempfile.mkdtemp(dir=base)
    user = []
    if os.geteuid() == 0:
        shutil.chown(d, "mysql", "mysql")
        user = ["--user=mysql"]
    run(["mariadb-install-db", "--no-defaults", f"--datadir={d}/data",
         "--auth-root-authentication-method=socket", "--skip-test-db"] + user)
    port = free_port()
    spawn(["/usr/sbin/mariadbd", "--no-defaults", f"--datadir={d}/data", f"--port={port}",
           "--bind-address=127.0.0.1", f"--socket={d}/sock", f"--pid-file={d}/pid",
           "--skip-name-resolve", f"--max-connections={max_conn}", "--max-connect-errors=1000000000",
           "--open-files-limit=20000", "--performance-schema=OFF", "--skip-log-bin",
           "--back-log=2000", "--thread-stack=256K"] + user)
    wait_port(port)
    run(["mariadb", "-S", f"{d}/sock", "-uroot", "-e",
         "CREATE USER 't'@'%' IDENTIFIED BY 't'; GRANT ALL ON *.* TO 't'@'%';"])
    return port


def start_router(base, dest):
    d = os.path.join(base, "router")
    os.makedirs(d)
    run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", f"{d}/key.pem", "-out", f"{d}/cert.pem", "-days", "2",
         "-subj", "/CN=localhost"])
    port = free_port()
    with open(f"{d}/r.conf", "w") as f:
        f.write(f"[DEFAULT]\nlogging_folder = {d}\nruntime_folder = {d}\nmax_total_connections = 12000\n"
                f"[logger]\nlevel = warning\n"
                f"[connection_pool]\nmax_idle_server_connections = 50\nidle_timeout = 5\n"
                f"[routing:scenario]\nbind_address = 127.0.0.1\nbind_port = {port}\n"
                f"destinations = 127.0.0.1:{dest}\nrouting_strategy = first-available\n"
                f"client_ssl_mode = PREFERRED\nclient_ssl_cert = {d}/cert.pem\n"
                f"client_ssl_key = {d}/key.pem\nserver_ssl_mode = DISABLED\n"
                # delay 0: a session's server connection goes back right after each
                # response. With Oracle's default (1 s) every client that queried in the
                # last second keeps one: ~N/3 server connections here, not <= 50.
                f"connection_sharing = 1\nconnection_sharing_delay = 0\nmax_connections = 10000\n")
    spawn([ROUTER, "-c", f"{d}/r.conf"])
    wait_port(port)
    return port, os.path.join(d, "mysqlrouter.log")


def scenario(port, server, a):
    p = subprocess.run([POOLBENCH, "scenario", str(port), str(a.clients), str(a.seconds), "t", "t",
                        str(a.ramp), str(server), "t", "t"],
                       capture_output=True, text=True, timeout=a.ramp + a.seconds + 120)
    m = dict(re.findall(r"(\w+)=([\d.,]+)", p.stdout))
    if "connected" not in m:
        raise SystemExit(f"poolbench failed: {p.stderr[-2000:]}")
    m["stderr"] = p.stderr
    return m


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=5000)
    ap.add_argument("--seconds", type=float, default=60, help="steady phase after the ramp")
    ap.add_argument("--ramp", type=float, default=20, help="seconds to open all connections")
    ap.add_argument("--skip-direct", action="store_true")
    a = ap.parse_args()
    for f in (ROUTER, POOLBENCH):
        if not os.path.exists(f):
            raise SystemExit("build first: cargo build --release --bin mysqlrouter --example poolbench")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < 2 * a.clients + 200:
        print(f"warning: descriptor limit {hard} is low for {a.clients} clients through a router")
    base = tempfile.mkdtemp(prefix="pool-scenario-")
    os.chmod(base, 0o755)  # mysqld runs as mysql
    try:
        db = start_mariadb(base, a.clients + 200)
        rport, rlog = start_router(base, db)
        rows = {}
        rows["router (pool 50, sharing=1)"] = scenario(rport, db, a)
        with open(rlog, errors="replace") as f:
            log = f.read()
        sharing_absent = re.search(r"connection_sharing=1 has been ignored[^\n]*", log)
        if not a.skip_direct:
            rows["direct to the server"] = scenario(db, db, a)
        print(f"\n{a.clients} clients, SELECT 1 every 1-5 s each, {a.seconds:g} s after a {a.ramp:g} s ramp; "
              f"MariaDB 10.11; Threads_connected sampled every second (target: <= 50, no failures)\n")
        print(f"{'target':30} {'connected':>9} {'conn err':>8} {'queries':>8} {'q err':>6} "
              f"{'p50 ms':>7} {'p99 ms':>7} {'max ms':>8} {'threads max':>11} {'at end':>7}")
        for name, m in rows.items():
            print(f"{name:30} {m['connected']:>9} {m['connect_errors']:>8} {m['queries']:>8} "
                  f"{m['query_errors']:>6} {float(m['p50_ms']):>7.2f} {float(m['p99_ms']):>7.2f} "
                  f"{float(m['max_ms']):>8.1f} {m['threads_max']:>11} {m['threads_last']:>7}")
        r = rows["router (pool 50, sharing=1)"]
        d = rows.get("direct to the server")
        if d:
            print(f"\nadded latency through the router: p50 {float(r['p50_ms']) - float(d['p50_ms']):+.2f} ms, "
                  f"p99 {float(r['p99_ms']) - float(d['p99_ms']):+.2f} ms")
        ok = (int(r["threads_max"].split(",")[0]) <= 50 + 1 and r["connect_errors"] == "0"
              and r["query_errors"] == "0")
        print(f"target (<= 50 server threads + the sampler's own, no failures): {'MET' if ok else 'NOT MET'}")
        if sharing_absent:
            print(f"sharing: ABSENT in this build; the router logged: {sharing_absent.group(0)}")
        for line in r["stderr"].splitlines():
            if line.startswith("first error"):
                print(f"router run, {line}")
    finally:
        cleanup()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
