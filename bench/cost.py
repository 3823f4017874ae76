#!/usr/bin/python3
"""What one connection and one query cost the router, build against build.

    /usr/bin/python3 bench/cost.py [--conns N] [--queries N] [--rounds R] [--callgrind] BUILD...

A BUILD is a router binary or a git revision (built here with `cargo build --release`
from `git archive`, in target/cost/, with line tables for profiles). Each build routes
to one private mariadbd (round-robin route, logger at warning, as bench/run.py) and is
measured in interleaved rounds, medians reported:

* conn: N sequential clients (PyMySQL: connect, SELECT 1, quit);
* conn x16: the same N clients from 16 threads at once (accept and connect paths
  under concurrency: wakeups, locks);
* query: one client, N x SELECT 1.

For each: the router's CPU time (perf's task-clock, all threads, nanosecond clock) and
system calls (raw_syscalls:sys_enter) per connection or query, while only that workload
runs. CPU time moves with the machine's load; system calls do not. --callgrind adds the
router's user-space instructions per connection and per query, counted by valgrind
(exact; 1/5 of N, valgrind is slow). The first BUILD is the reference of the ratios.
Needs: mariadb-server, perf (linux-perf), python3-pymysql, valgrind for --callgrind.
"""
import argparse, os, re, shutil, signal, statistics, subprocess, sys, tempfile, time

import pymysql

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import cleanup, free_port, install_mariadb, run, spawn, wait_port  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def build(rev):
    """A router binary: the path given, or the release build of a git revision."""
    if os.path.isfile(rev):
        return os.path.abspath(rev), os.path.basename(rev)
    sha = run(["git", "-C", ROOT, "rev-parse", "--short", rev]).strip()
    out = os.path.join(ROOT, "target", "cost", f"mysqlrouter-{sha}")
    if not os.path.exists(out):
        src = tempfile.mkdtemp(prefix=f"cost-src-{sha}-")
        try:
            subprocess.run(f"git -C {ROOT} archive {sha} | tar -x -m -C {src}", shell=True, check=True)
            env = dict(os.environ, CARGO_TARGET_DIR=os.path.join(ROOT, "target", "cost", "build"),
                       CARGO_PROFILE_RELEASE_DEBUG="line-tables-only", CARGO_PROFILE_RELEASE_STRIP="false")
            subprocess.run(["cargo", "build", "--release", "--locked", "--bin", "mysqlrouter"], cwd=src, env=env,
                           check=True)
            shutil.copy(os.path.join(ROOT, "target", "cost", "build", "release", "mysqlrouter"), out)
        finally:
            shutil.rmtree(src, ignore_errors=True)
    return out, f"{rev} ({sha})" if rev != sha else sha


def start_mariadb(base):
    d, user = install_mariadb(base)
    port = free_port()
    spawn(["/usr/sbin/mariadbd", "--no-defaults", f"--datadir={d}/data", f"--port={port}", "--bind-address=127.0.0.1",
           f"--socket={d}/sock", f"--pid-file={d}/pid", "--skip-name-resolve", "--max-connections=3000",
           "--max-connect-errors=1000000000", "--performance-schema=OFF", "--innodb-buffer-pool-size=64M",
           "--skip-log-bin"] + user)
    wait_port(port)
    run(["mariadb", "-S", f"{d}/sock", "-uroot", "-e", "CREATE USER 't'@'%' IDENTIFIED BY 't'; GRANT ALL ON *.* TO 't'@'%';"])
    return port


def conns(port, n):
    for _ in range(n):
        c = pymysql.connect(host="127.0.0.1", port=port, user="t", password="t", connect_timeout=30)
        with c.cursor() as cur:
            cur.execute("SELECT 1")
        c.close()


def conns_parallel(port, n, threads=16):
    import threading
    ts = [threading.Thread(target=conns, args=(port, n // threads)) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()


def queries(port, n):
    c = pymysql.connect(host="127.0.0.1", port=port, user="t", password="t", connect_timeout=30)
    with c.cursor() as cur:
        for _ in range(n):
            cur.execute("SELECT 1")
    c.close()


def start_router(binary, base, db, valgrind=None):
    port = free_port()
    conf = os.path.join(base, f"router-{port}.conf")
    with open(conf, "w") as f:
        f.write(f"[DEFAULT]\nlogging_folder = {base}\n[logger]\nlevel = warning\n"
                f"[routing:db]\nbind_address = 127.0.0.1\nbind_port = {port}\ndestinations = 127.0.0.1:{db}\n"
                f"routing_strategy = round-robin\nclient_connect_timeout = 60\n")
    cmd = [binary, "-c", conf]
    if valgrind:
        cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={valgrind}", "--dump-instr=no"] + cmd
    p = spawn(cmd)
    wait_port(port, secs=120)
    # One warm-up client (first-use allocations, lazy statics).
    conns(port, 3)
    return p, port


def stop(p):
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(timeout=60)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def perf_measure(pid, work):
    """(task-clock ns, syscalls) of process `pid` while `work()` runs."""
    out = tempfile.NamedTemporaryFile(suffix=".perf", delete=False).name
    perf = subprocess.Popen(["perf", "stat", "-x,", "-o", out, "-e", "task-clock,raw_syscalls:sys_enter", "-p",
                             str(pid)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.3)
    work()
    perf.send_signal(signal.SIGINT)
    perf.wait(timeout=30)
    vals = {}
    for line in open(out):
        parts = line.strip().split(",")
        if len(parts) > 2 and parts[0] and not line.startswith("#"):
            try:
                vals[parts[2]] = float(parts[0])
            except ValueError:
                pass
    os.unlink(out)
    # perf writes task-clock in milliseconds.
    return vals.get("task-clock", float("nan")) * 1e6, vals.get("raw_syscalls:sys_enter", float("nan"))


def callgrind_ir(pid, out_prefix, work):
    """User-space instructions the process ran while `work()` ran."""
    run(["callgrind_control", "--zero", str(pid)])
    work()
    run(["callgrind_control", "--dump", str(pid)])
    time.sleep(0.5)
    dumps = sorted((f for f in os.listdir(os.path.dirname(out_prefix)) if
                    f.startswith(os.path.basename(out_prefix) + ".")),
                   key=lambda f: os.path.getmtime(os.path.join(os.path.dirname(out_prefix), f)))
    text = open(os.path.join(os.path.dirname(out_prefix), dumps[-1])).read()
    m = re.search(r"^(?:summary|totals):\s*(\d+)", text, re.M)
    return int(m.group(1))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("builds", nargs="+")
    ap.add_argument("--conns", type=int, default=2000)
    ap.add_argument("--queries", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--callgrind", action="store_true")
    a = ap.parse_args()
    builds = [build(b) for b in a.builds]
    base = tempfile.mkdtemp(prefix="cost-")
    os.chmod(base, 0o755)
    res = {name: {k: [] for k in ("conn_us", "conn_sys", "par_us", "par_sys", "q_us", "q_sys", "conn_ir", "q_ir")}
           for _, name in builds}
    try:
        db = start_mariadb(base)
        for rnd in range(a.rounds):
            order = builds if rnd % 2 == 0 else list(reversed(builds))
            for binary, name in order:
                p, port = start_router(binary, base, db)
                ns, sc = perf_measure(p.pid, lambda: conns(port, a.conns))
                res[name]["conn_us"].append(ns / 1e3 / a.conns)
                res[name]["conn_sys"].append(sc / a.conns)
                n = a.conns // 16 * 16
                ns, sc = perf_measure(p.pid, lambda: conns_parallel(port, n))
                res[name]["par_us"].append(ns / 1e3 / n)
                res[name]["par_sys"].append(sc / n)
                ns, sc = perf_measure(p.pid, lambda: queries(port, a.queries))
                res[name]["q_us"].append(ns / 1e3 / a.queries)
                res[name]["q_sys"].append(sc / a.queries)
                stop(p)
                print(f"round {rnd + 1} {name}: " + ", ".join(f"{k}={v[-1]:.2f}" for k, v in res[name].items() if v),
                      flush=True)
        if a.callgrind:
            nc, nq = max(1, a.conns // 5), max(1, a.queries // 5)
            for binary, name in builds:
                prefix = os.path.join(base, f"cg-{len(res[name]['conn_ir'])}-{abs(hash(name))}")
                p, port = start_router(binary, base, db, valgrind=prefix)
                res[name]["conn_ir"].append(callgrind_ir(p.pid, prefix, lambda: conns(port, nc)) / nc)
                res[name]["q_ir"].append(callgrind_ir(p.pid, prefix, lambda: queries(port, nq)) / nq)
                stop(p)
                print(f"callgrind {name}: conn_ir={res[name]['conn_ir'][-1]:.0f} q_ir={res[name]['q_ir'][-1]:.0f}",
                      flush=True)
    finally:
        cleanup()
        shutil.rmtree(base, ignore_errors=True)

    rows = [("router CPU µs per connection", "conn_us"), ("system calls per connection", "conn_sys"),
            ("user instructions per connection (callgrind)", "conn_ir"),
            ("router CPU µs per connection, 16 at once", "par_us"),
            ("system calls per connection, 16 at once", "par_sys"),
            ("router CPU µs per query", "q_us"), ("system calls per query", "q_sys"),
            ("user instructions per query (callgrind)", "q_ir")]
    ref = builds[0][1]
    med = {n: {k: (statistics.median(v) if v else None) for k, v in m.items()} for n, m in res.items()}
    head = "| measure | " + " | ".join(n for _, n in builds) + " | " + " | ".join(
        f"{n} / {ref}" for _, n in builds[1:]) + " |"
    print(f"\nconn: {a.conns} clients (connect, SELECT 1, quit); query: {a.queries} x SELECT 1 on one connection; "
          f"medians of {a.rounds} interleaved rounds\n")
    print(head)
    print("|---" * (len(builds) * 2) + "|")
    for label, k in rows:
        if med[ref][k] is None:
            continue
        vals = [med[n][k] for _, n in builds]
        ratios = [f"{v / vals[0]:.3f}" if vals[0] else "-" for v in vals[1:]]
        print(f"| {label} | " + " | ".join(f"{v:.2f}" if v < 1000 else f"{v:.0f}" for v in vals) + " | " +
              " | ".join(ratios) + " |")


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: (cleanup(), sys.exit(1)))
    try:
        main()
    except BaseException:
        cleanup()
        raise
