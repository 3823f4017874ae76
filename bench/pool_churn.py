#!/usr/bin/python3
"""Connection churn with and without the connection pool (TLS clients).

    /usr/bin/python3 bench/pool_churn.py [--seconds S] [--clients N] [--rounds R]

Starts one private mariadbd, and this router (target/release) twice on a TLS-terminating
route (client_ssl_mode = PREFERRED, server_ssl_mode = DISABLED): once with
`[connection_pool] max_idle_server_connections = 64`, once without a pool. Each client
process loops: connect over TLS (PyMySQL), SELECT 1, quit; targets are interleaved in
every round. Prints connections/s per target and the server's `Connections` counter
growth (server-side logins) for each. Oracle's router is NOT measured here.
Needs: mariadb-server, python3-pymysql, openssl (Debian). Bounded: rounds x targets x S.
"""
import argparse, multiprocessing, os, shutil, socket, ssl, subprocess, tempfile, time

import pymysql

from harness import cleanup, free_port, run, spawn, wait_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROUTER = os.path.join(ROOT, "target", "release", "mysqlrouter")
def start_mariadb(base):
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
           "--skip-name-resolve", "--max-connections=3000", "--max-connect-errors=1000000000",
           "--performance-schema=OFF", "--skip-log-bin", "--back-log=2000"] + user)
    wait_port(port)
    run(["mariadb", "-S", f"{d}/sock", "-uroot", "-e",
         "CREATE USER 't'@'%' IDENTIFIED BY 't'; GRANT ALL ON *.* TO 't'@'%';"])
    return port, f"{d}/sock"


def start_router(base, dest, pool):
    d = tempfile.mkdtemp(dir=base)
    # ECDSA P-256: the TLS handshake costs the router far less than with RSA-2048, so
    # the measurement is less about TLS and more about the server-side login.
    run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", f"{d}/key.pem",
         "-out", f"{d}/cert.pem", "-days", "2", "-subj", "/CN=localhost"])
    port = free_port()
    pool_section = "[connection_pool]\nmax_idle_server_connections = 64\nidle_timeout = 60\n" if pool else ""
    with open(f"{d}/r.conf", "w") as f:
        f.write(f"[DEFAULT]\nlogging_folder = {d}\nruntime_folder = {d}\nmax_total_connections = 4000\n"
                f"[logger]\nlevel = warning\n{pool_section}\n"
                f"[routing:b]\nbind_port = {port}\ndestinations = 127.0.0.1:{dest}\n"
                f"routing_strategy = first-available\nclient_ssl_mode = PREFERRED\n"
                f"client_ssl_cert = {d}/cert.pem\nclient_ssl_key = {d}/key.pem\nserver_ssl_mode = DISABLED\n")
    spawn([ROUTER, "-c", f"{d}/r.conf"])
    wait_port(port)
    return port


def server_connections(sock):
    out = run(["mariadb", "-S", sock, "-uroot", "-N", "-B", "-e", "SHOW GLOBAL STATUS LIKE 'Connections'"])
    return int(out.split()[1])


def churn_one(port, end, q):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    done = errors = 0
    while time.time() < end:
        try:
            c = pymysql.connect(host="127.0.0.1", port=port, user="t", password="t", ssl=ctx,
                                connect_timeout=5)
            with c.cursor() as cur:
                cur.execute("SELECT 1")
                cur.fetchall()
            c.close()
            done += 1
        except Exception:
            errors += 1
    q.put((done, errors))


def churn(port, secs, clients):
    """`clients` processes (not threads: one Python process is the bottleneck)."""
    q = multiprocessing.Queue()
    t0 = time.time()
    end = t0 + secs
    ps = [multiprocessing.Process(target=churn_one, args=(port, end, q)) for _ in range(clients)]
    for p in ps:
        p.start()
    got = [q.get(timeout=secs + 60) for _ in ps]
    for p in ps:
        p.join()
    return sum(d for d, _ in got) / (time.time() - t0), sum(e for _, e in got)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--clients", type=int, default=4, help="client processes")
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    if not os.path.exists(ROUTER):
        raise SystemExit("build first: cargo build --release")
    base = tempfile.mkdtemp(prefix="pool-churn-")
    os.chmod(base, 0o755)  # mysqld runs as mysql
    try:
        db, sock = start_mariadb(base)
        targets = {"pool off": start_router(base, db, False), "pool on": start_router(base, db, True)}
        res = {k: [] for k in targets}
        logins = {k: 0 for k in targets}
        for r in range(a.rounds):
            for name, port in targets.items():
                before = server_connections(sock)
                cps, err = churn(port, a.seconds, a.clients)
                logins[name] += server_connections(sock) - before
                res[name].append(cps)
                print(f"round {r + 1} {name}: {cps:.0f} connections/s, {err} errors", flush=True)
        med = {k: sorted(v)[len(v) // 2] for k, v in res.items()}
        for k in targets:
            print(f"{k}: median {med[k]:.0f} connections/s; server logins {logins[k]}")
        print(f"pool on / pool off: {med['pool on'] / med['pool off']:.2f}")
    finally:
        cleanup()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
