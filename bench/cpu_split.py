#!/usr/bin/python3
"""Where the CPU goes: every process's CPU time per transaction or per connection.

    /usr/bin/python3 bench/cpu_split.py tls [--test oltp_read_only] [--mode term_tls] [--rounds R] [--secs S]
    /usr/bin/python3 bench/cpu_split.py churn [--workers 8,32] [--rounds R] [--secs S]
    /usr/bin/python3 bench/cpu_split.py serverops [--count N]

On this 2-CPU machine the client, the router and the servers share the CPUs, so a
throughput ratio between two routers is a ratio of the *sum* of everybody's CPU per
operation. These runs split that sum, to say how far a figure can move by changing the
router alone.

* `tls`: one private MariaDB 10.11 with TLS; this router (target/release) and Oracle's
  MySQL Router 9.7.4 (../shared/lab/oracle-mysqlrouter) with the routes of bench/tls.py;
  sysbench (16 threads, `--mysql-ssl=on`) through each router in MODE and directly,
  rounds interleaved. Per transaction: CPU µs of the router, of mariadbd and of sysbench,
  and system calls / context switches of each (perf stat).
* `churn`: one MySQL 9.7.4 (../shared/lab/mysql-9.7); this router with the pool on
  (`max_idle_server_connections = 64`) and off, the routes of bench/pool_churn.py (TLS
  terminated, plain server hop); `poolbench churn` with plain clients (connect,
  `SELECT 1`, quit). Per connection: CPU µs of the router, of mysqld and of the client,
  and the share of the machine's CPU that was busy (1.00: CPU-bound).
* `serverops`: one MySQL 9.7.4 and one client connection straight to it
  (mysql-connector-python, pure Python, plain TCP, caching_sha2 fast path): mysqld's CPU
  µs per operation for what a pooled reuse asks of the server (COM_CHANGE_USER,
  COM_RESET_CONNECTION) against `SELECT 1` and a whole new login (connect, `SELECT 1`,
  quit).

CPU times come from /proc/PID/stat (utime + stime) and getrusage of the children.
Bounded: rounds x targets x S seconds, plus start-up. Needs what bench/tls.py and
bench/pool_churn.py need, and perf (linux-perf) for `tls`.
"""
import argparse, contextlib, os, re, resource, shutil, signal, statistics, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import cleanup, free_port, run, spawn, wait_port  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROUTER = os.path.join(ROOT, "target", "release", "mysqlrouter")


def cpu_us(pid):
    """utime + stime of a process (all threads), in µs."""
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) * 1e6 / os.sysconf("SC_CLK_TCK")


def children_us():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (r.ru_utime + r.ru_stime) * 1e6


def machine_busy():
    f = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    return sum(f) - f[3] - f[4], sum(f)


def pid_of(pattern):
    out = subprocess.run(["pgrep", "-n", "-f", pattern], capture_output=True, text=True).stdout.split()
    if not out:
        raise SystemExit(f"no process matches {pattern!r}")
    return int(out[0])


PERF_EVENTS = "raw_syscalls:sys_enter,context-switches"


def perf_counts(path):
    """The two counters of a `perf stat -x,` output file."""
    return [float(line.split(",")[0]) for line in open(path) if line[:1].isdigit()]


def tls(a):
    import tls as T
    base = tempfile.mkdtemp(prefix="cpu-split-tls-")
    os.chmod(base, 0o755)
    try:
        cert, key = T.certs(base)
        srv = T.start_mariadb(base, cert, key)
        server_pid = int(open(pid_file_of_mariadb(base)).read().split()[0])
        run(["sysbench", "oltp_read_only", "--db-driver=mysql", "--mysql-host=127.0.0.1", f"--mysql-port={srv}",
             "--mysql-user=t", "--mysql-password=t", "--mysql-db=sbtest", "--tables=4", "--table-size=10000",
             "prepare"])
        targets = []
        for name, binary in (("ours", ROUTER), ("oracle", T.ORACLE)):
            ports = {m: free_port() for m in T.MODES}
            spawn([binary, "-c", T.router_conf(base, name, [srv], cert, key, ports)])
            for p in ports.values():
                wait_port(p)
            targets.append((name, pid_of(f"{base}/{name}.conf"), ports[a.mode]))
        targets.append(("direct", None, srv))
        time.sleep(1)
        res = {n: [] for n, _, _ in targets}
        for rnd in range(a.rounds):
            for name, pid, port in (targets if rnd % 2 == 0 else targets[::-1]):
                stats = {}
                for who, p in (("server", server_pid), ("router", pid)):
                    if p:
                        stats[who] = subprocess.Popen(["perf", "stat", "-e", PERF_EVENTS, "-x,", "-o",
                                                       f"{base}/perf-{who}.txt", "-p", str(p)])
                time.sleep(0.3)
                r0, s0, c0 = (cpu_us(pid) if pid else 0), cpu_us(server_pid), children_us()
                out = run(["perf", "stat", "-e", PERF_EVENTS, "-x,", "-o", f"{base}/perf-client.txt",
                           "sysbench", a.test, "--db-driver=mysql", "--mysql-host=127.0.0.1", "--mysql-ssl=on",
                           f"--mysql-port={port}", "--mysql-user=t", "--mysql-password=t", "--mysql-db=sbtest",
                           "--tables=4", "--table-size=10000", "--threads=16", f"--time={a.secs}",
                           "--report-interval=0", "run"], cwd=T.PKI, timeout=a.secs + 120)
                r1, s1, c1 = (cpu_us(pid) if pid else 0), cpu_us(server_pid), children_us()
                for p in stats.values():
                    p.send_signal(signal.SIGINT)
                    p.wait()
                n = int(re.search(r"transactions:\s+(\d+)", out).group(1))
                tps = float(re.search(r"transactions:\s+\d+\s+\(([\d.]+) per sec", out).group(1))
                counts = {w: perf_counts(f"{base}/perf-{w}.txt") if w == "client" or w in stats else [0, 0]
                          for w in ("router", "server", "client")}
                row = {"tps": tps, "router": (r1 - r0) / n, "server": (s1 - s0) / n, "client": (c1 - c0) / n}
                for w, (sc, cs) in counts.items():
                    row[f"{w} sys"], row[f"{w} cs"] = sc / n, cs / n
                res[name].append(row)
                print(f"round {rnd + 1} {name:7} " + " ".join(f"{k}={v:.1f}" for k, v in row.items()), flush=True)
        print(f"\nsysbench {a.test}, {a.mode}, medians of {a.rounds} rounds of {a.secs} s; per transaction:\n")
        print("| target | tps | router CPU µs | mariadbd CPU µs | sysbench CPU µs | sum µs | "
              "syscalls router / mariadbd / sysbench | context switches router / mariadbd / sysbench |")
        print("|---|---:|---:|---:|---:|---:|---|---|")
        for name in res:
            m = {k: statistics.median(r[k] for r in res[name]) for k in res[name][0]}
            print(f"| {name} | {m['tps']:.0f} | {m['router']:.0f} | {m['server']:.0f} | {m['client']:.0f} | "
                  f"{m['router'] + m['server'] + m['client']:.0f} | "
                  f"{m['router sys']:.1f} / {m['server sys']:.1f} / {m['client sys']:.1f} | "
                  f"{m['router cs']:.1f} / {m['server cs']:.1f} / {m['client cs']:.1f} |")
    finally:
        cleanup()
        shutil.rmtree(base, ignore_errors=True)


def pid_file_of_mariadb(base):
    for root, _dirs, files in os.walk(base):
        if "pid" in files:
            return os.path.join(root, "pid")
    raise SystemExit("mariadbd wrote no pid file")


@contextlib.contextmanager
def mysql97(prefix):
    """A private MySQL 9.7 (bench/pool_churn.py's) in a fresh folder: (folder, port,
    mysqld's pid); everything started is stopped and removed afterwards."""
    import pool_churn as P
    base = tempfile.mkdtemp(prefix=prefix)
    os.chmod(base, 0o755)  # the server runs as mysql
    stop = None
    try:
        port, _sql, stop = P.start_mysql97(base)
        yield base, port, int(open(os.path.join(base, "m97", f"mysqld-{port}.pid")).read().split()[0])
    finally:
        cleanup()
        if stop:
            try:
                stop()
            except Exception:
                pass
        shutil.rmtree(base, ignore_errors=True)


def churn(a):
    import pool_churn as P
    with mysql97("cpu-split-churn-") as (base, m97, server_pid):
        run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", f"{base}/key.pem", "-out", f"{base}/cert.pem", "-days", "2", "-subj", "/CN=localhost"])
        routers = {}
        for name, pool in (("on", True), ("off", False)):
            ports = P.router_conf(base, f"pool-{name}", {"mysql97": m97}, f"{base}/cert.pem", f"{base}/key.pem",
                                  False, pool)
            routers[name] = (ports["mysql97"], pid_of(f"{base}/pool-{name}/r.conf"))
        workers = [int(w) for w in a.workers.split(",")]
        res = {(w, n): [] for w in workers for n in routers}
        for rnd in range(a.rounds):
            for w in workers:
                for name in (("on", "off") if rnd % 2 == 0 else ("off", "on")):
                    port, pid = routers[name]
                    r0, s0, c0, b0 = cpu_us(pid), cpu_us(server_pid), children_us(), machine_busy()
                    out = run([P.POOLBENCH, "churn", str(port), str(a.secs), str(w), "sha2", "sha2pw", "plain"],
                              timeout=a.secs + 120)
                    r1, s1, c1, b1 = cpu_us(pid), cpu_us(server_pid), children_us(), machine_busy()
                    m = re.search(r"conns=(\d+) errors=(\d+) secs=([\d.]+) rate=([\d.]+)", out)
                    n = int(m.group(1))
                    row = {"rate": float(m.group(4)), "busy": (b1[0] - b0[0]) / (b1[1] - b0[1]),
                           "router": (r1 - r0) / n, "server": (s1 - s0) / n, "client": (c1 - c0) / n}
                    res[(w, name)].append(row)
                    print(f"round {rnd + 1} workers {w} pool {name}: " +
                          " ".join(f"{k}={v:.2f}" if k == "busy" else f"{k}={v:.0f}" for k, v in row.items()),
                          flush=True)
        print(f"\npoolbench churn, plain clients, MySQL 9.7, medians of {a.rounds} rounds of {a.secs} s; "
              "per connection:\n")
        print("| workers | pool | conn/s | CPU busy | router CPU µs | mysqld CPU µs | client CPU µs | sum µs |")
        print("|---:|---|---:|---:|---:|---:|---:|---:|")
        for (w, name), rows in res.items():
            m = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
            print(f"| {w} | {name} | {m['rate']:.0f} | {m['busy']:.2f} | {m['router']:.0f} | {m['server']:.0f} | "
                  f"{m['client']:.0f} | {m['router'] + m['server'] + m['client']:.0f} |")


def serverops(a):
    import mysql.connector
    with mysql97("cpu-split-ops-") as (_base, port, server_pid):
        args = dict(host="127.0.0.1", port=port, user="sha2", password="sha2pw", use_pure=True, ssl_disabled=True)
        cnx = mysql.connector.connect(**args)
        cur = cnx.cursor()

        def select1():
            cur.execute("SELECT 1")
            cur.fetchall()

        def login():
            c = mysql.connector.connect(**args)
            k = c.cursor()
            k.execute("SELECT 1")
            k.fetchall()
            c.close()

        ops = {"SELECT 1": select1,
               "COM_RESET_CONNECTION": cnx.cmd_reset_connection,
               "COM_CHANGE_USER (same account)": lambda: cnx.cmd_change_user(username="sha2", password="sha2pw"),
               "new login: connect, SELECT 1, quit": login}
        print(f"mysqld CPU per operation, MySQL 9.7, {a.count} of each, one client (median of 3 runs):\n")
        print("| operation | mysqld CPU µs |\n|---|---:|")
        for name, op in ops.items():
            runs = []
            for _ in range(3):
                s0 = cpu_us(server_pid)
                for _ in range(a.count):
                    op()
                runs.append((cpu_us(server_pid) - s0) / a.count)
            print(f"| {name} | {statistics.median(runs):.0f} |", flush=True)
        cnx.close()


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="what", required=True)
    t = sub.add_parser("tls")
    t.add_argument("--test", default="oltp_read_only")
    t.add_argument("--mode", default="term_tls", help="passthrough, term_tls or term_plain (bench/tls.py's routes)")
    t.add_argument("--rounds", type=int, default=4)
    t.add_argument("--secs", type=int, default=6)
    c = sub.add_parser("churn")
    c.add_argument("--workers", default="8,32")
    c.add_argument("--rounds", type=int, default=2)
    c.add_argument("--secs", type=float, default=4)
    o = sub.add_parser("serverops")
    o.add_argument("--count", type=int, default=2000)
    a = ap.parse_args()
    {"tls": tls, "churn": churn, "serverops": serverops}[a.what](a)


if __name__ == "__main__":
    main()
