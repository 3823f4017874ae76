#!/usr/bin/python3
"""Connection churn (connect, SELECT 1, quit) with and without the connection pool,
against Oracle's router with sharing and pooling on, and directly to the server.

    /usr/bin/python3 bench/pool_churn.py [--seconds S] [--rounds R] [--workers W]

Starts one private MariaDB 10.11 and one MySQL 9.7.4 (../shared/lab/mysql-9.7), this
router (target/release) twice — `[connection_pool] max_idle_server_connections = 64`
and no pool — and Oracle's MySQL Router 9.7.4 (../shared/lab/oracle-mysqlrouter) with
`[connection_pool] max_idle_server_connections = 64` and `connection_sharing = 1`, each
with TLS-terminating routes (client_ssl_mode = PREFERRED, ECDSA P-256 certificate):
per server one with a plain server hop (ours: server_ssl_mode = DISABLED) and, for
MySQL 9.7, one with TLS to the server too (`mysql97+tls hop`: ours REQUIRED). Oracle's
routes use server_ssl_mode = PREFERRED (TLS to MySQL 9.7; MariaDB has no certificate)
as its sharing needs. Client: `poolbench churn` (examples/poolbench.rs, mysql_async, W
concurrent workers), plain TCP and TLS. Every (server, client, target) is measured in
each round, rounds interleaved; prints the median connections/s, the server-side
logins (growth of the server's `Connections` status) and the ratios.

Bounded: rounds x 2 servers x 2 client kinds x 4 targets x S seconds (+ start-up).
Needs: mariadb-server, openssl, a release build (cargo build --release --bin mysqlrouter
--example poolbench).
"""
import argparse, os, re, shutil, subprocess, tempfile

from harness import cleanup, free_port, install_mariadb, run, spawn, wait_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.path.join(ROOT, "target", "release")
ROUTER = os.path.join(TARGET, "mysqlrouter")
POOLBENCH = os.path.join(TARGET, "examples", "poolbench")
LAB = os.path.join(ROOT, "..", "shared", "lab")
MYSQL97 = os.path.join(LAB, "mysql-9.7")
ORACLE = os.path.join(LAB, "oracle-mysqlrouter")
USERS = {"mariadb": ("t", "t"), "mysql97": ("sha2", "sha2pw")}
TLS_HOP = "+tls hop"


def server_of(route):
    return route.split("+")[0]


def start_mariadb(base):
    d, user = install_mariadb(base)
    port = free_port()
    spawn(["/usr/sbin/mariadbd", "--no-defaults", f"--datadir={d}/data", f"--port={port}",
           "--bind-address=127.0.0.1", f"--socket={d}/sock", f"--pid-file={d}/pid",
           "--skip-name-resolve", "--max-connections=3000", "--max-connect-errors=1000000000",
           "--performance-schema=OFF", "--skip-log-bin", "--back-log=2000"] + user)
    wait_port(port)
    sql = lambda q: run(["mariadb", "-S", f"{d}/sock", "-uroot", "-N", "-B", "-e", q])
    sql("CREATE USER 't'@'%' IDENTIFIED BY 't'; GRANT ALL ON *.* TO 't'@'%';")
    return port, sql


def start_mysql97(base):
    port, xport = free_port(), free_port()
    datadir = os.path.join(base, "m97", "data")
    run([MYSQL97, "start", "--port", str(port), "--xport", str(xport), "--datadir", datadir])
    sock = os.path.join(base, "m97", f"mysqld-{port}.sock")
    sql = lambda q: run([MYSQL97, "client", "-uroot", "-S", sock, "-N", "-B", "-e", q])
    sql("SET GLOBAL max_connections = 3000; SET GLOBAL max_connect_errors = 1000000000")
    # caching_sha2's fast path for the plain-TCP clients: one TLS login fills the cache.
    run([MYSQL97, "client", "-h127.0.0.1", f"-P{port}", "--protocol=TCP", "-usha2", "-psha2pw",
         "--ssl-mode=REQUIRED", "-e", "SELECT 1"])
    return port, sql, (lambda: run([MYSQL97, "stop", "--port", str(port), "--datadir", datadir]))


def router_conf(base, name, servers, cert, key, oracle, pool):
    d = os.path.join(base, name)
    os.makedirs(d)
    ports = {s: free_port() for s in servers}
    pool_section = "[connection_pool]\nmax_idle_server_connections = 64\nidle_timeout = 60\n" if pool else ""
    routes = ""
    for s, dest in servers.items():
        routes += (f"[routing:{s.replace('+', '_').replace(' ', '_')}]\nbind_address = 127.0.0.1\nbind_port = {ports[s]}\n"
                   f"destinations = 127.0.0.1:{dest}\nrouting_strategy = first-available\n"
                   f"client_ssl_mode = PREFERRED\nclient_ssl_cert = {cert}\nclient_ssl_key = {key}\n"
                   f"max_connections = 10000\n")
        # Oracle's sharing needs the router to see the password: TLS to the server as
        # well where it can (its documented set-up).
        if oracle:
            routes += "server_ssl_mode = PREFERRED\nconnection_sharing = 1\n\n"
        else:
            hop = "REQUIRED" if s.endswith(TLS_HOP) else "DISABLED"
            routes += f"server_ssl_mode = {hop}\n\n"
    with open(f"{d}/r.conf", "w") as f:
        f.write(f"[DEFAULT]\nlogging_folder = {d}\nruntime_folder = {d}\nmax_total_connections = 12000\n"
                f"[logger]\nlevel = warning\n{pool_section}\n{routes}")
    spawn([ORACLE if oracle else ROUTER, "-c", f"{d}/r.conf"])
    for p in ports.values():
        wait_port(p)
    return ports


def churn(port, route, tls, secs, workers):
    user, pw = USERS[server_of(route)]
    p = subprocess.run([POOLBENCH, "churn", str(port), str(secs), str(workers), user, pw,
                        "tls" if tls else "plain"], capture_output=True, text=True,
                       timeout=secs + 120)
    m = re.search(r"conns=(\d+) errors=(\d+) secs=([\d.]+) rate=([\d.]+)", p.stdout)
    if not m or m.group(1) == "0":
        # e.g. the client library cannot follow the router's authentication.
        panic = re.search(r"panicked at .*?(\w+\.rs):.*?failed: ([^\n]*)", p.stderr, re.S)
        err = re.search(r"first error: ([^\n]*)", p.stderr)
        if panic:
            why = f"mysql_async panicked in {panic.group(1)}: {panic.group(2)}"
        elif err:
            why = err.group(1)
        else:
            why = f"no connection ({m.group(2) if m else '?'} errors or timeouts)"
        return None, why[:110]
    return float(m.group(4)), f"{m.group(2)} errors" if m.group(2) != "0" else ""


def logins(sql):
    return int(sql("SHOW GLOBAL STATUS LIKE 'Connections'").split()[1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workers", type=int, default=8, help="concurrent client tasks")
    a = ap.parse_args()
    for f in (ROUTER, POOLBENCH):
        if not os.path.exists(f):
            raise SystemExit("build first: cargo build --release --bin mysqlrouter --example poolbench")
    base = tempfile.mkdtemp(prefix="pool-churn-")
    os.chmod(base, 0o755)  # the servers run as mysql
    stop97 = None
    try:
        mdb, mdb_sql = start_mariadb(base)
        m97, m97_sql, stop97 = start_mysql97(base)
        servers = {"mariadb": mdb, "mysql97": m97, "mysql97" + TLS_HOP: m97}
        sqls = {"mariadb": mdb_sql, "mysql97": m97_sql}
        run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", f"{base}/key.pem", "-out", f"{base}/cert.pem", "-days", "2",
             "-subj", "/CN=localhost"])
        cert, key = f"{base}/cert.pem", f"{base}/key.pem"
        on = router_conf(base, "pool-on", servers, cert, key, False, True)
        off = router_conf(base, "pool-off", servers, cert, key, False, False)
        ora = router_conf(base, "oracle", servers, cert, key, True, True)
        targets = {"direct": servers, "ours pool off": off, "ours pool on": on, "oracle sharing+pool": ora}
        cases = [(s, tls) for s in servers for tls in (False, True)]
        res = {(s, t, n): [] for s, t in cases for n in targets}
        notes = {k: set() for k in res}
        server_logins = {k: 0 for k in res}
        for r in range(a.rounds):
            for s, tls in cases:
                for name, ports in targets.items():
                    if tls and name == "direct" and s == "mariadb":
                        # The packaged MariaDB has no certificate: no TLS directly.
                        notes[(s, tls, name)].add("server has no TLS")
                        continue
                    if s.endswith(TLS_HOP) and name in ("direct", "oracle sharing+pool"):
                        # Same as the mysql97 row (direct: TLS iff the client's; Oracle's
                        # mysql97 route already has a TLS server hop).
                        notes[(s, tls, name)].add("see the mysql97 row")
                        continue
                    before = logins(sqls[server_of(s)])
                    rate, note = churn(ports[s], s, tls, a.seconds, a.workers)
                    server_logins[(s, tls, name)] += logins(sqls[server_of(s)]) - before
                    if note:
                        notes[(s, tls, name)].add(note)
                    if rate is not None:
                        res[(s, tls, name)].append(rate)
                    print(f"round {r + 1} {s:16} {'tls' if tls else 'plain':5} {name:20} "
                          f"{'n/a' if rate is None else f'{rate:7.0f}'} conn/s {note}", flush=True)
        med = {k: (sorted(v)[len(v) // 2] if v else None) for k, v in res.items()}
        print(f"\nMedian connections/s over {a.rounds} rounds of {a.seconds:g} s, {a.workers} workers "
              f"(server logins = growth of the server's Connections counter, all rounds)\n")
        print(f"{'server':16} {'client':6} {'target':20} {'conn/s':>8} {'logins':>8}  notes")
        for s, tls in cases:
            for n in targets:
                k = (s, tls, n)
                v = "n/a" if med[k] is None else f"{med[k]:.0f}"
                print(f"{s:16} {'tls' if tls else 'plain':6} {n:20} {v:>8} {server_logins[k]:>8}  "
                      f"{'; '.join(sorted(notes[k]))}")
        print(f"\n{'server':16} {'client':6} {'on/off':>7} {'on/oracle':>10} {'on/direct':>10}")
        ratio = lambda x, y: "n/a" if x is None or y is None or y == 0 else f"{x / y:.2f}"
        for s, tls in cases:
            o = med[(s, tls, "ours pool on")]
            ref = server_of(s)
            print(f"{s:16} {'tls' if tls else 'plain':6} {ratio(o, med[(s, tls, 'ours pool off')]):>7} "
                  f"{ratio(o, med[(ref, tls, 'oracle sharing+pool')]):>10} {ratio(o, med[(ref, tls, 'direct')]):>10}")
    finally:
        cleanup()
        if stop97:
            try:
                stop97()
            except Exception:
                pass
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
