#!/usr/bin/env python3
"""TLS benchmark: this router vs Oracle's MySQL Router 9.7.4 in the same TLS modes.

    python3 bench/tls.py [--rounds N] [--secs S] [--servers N] [--modes M,..] [--measures ps,ro,conn]
                         [--no-build] [--no-doc] [--baseline BINARY]

Three (or --servers N) private mariadbd servers with TLS certificates (made here by openssl),
each router with the same three routes (round-robin over the servers):
  * passthrough:  client_ssl_mode = PASSTHROUGH (TLS end to end, the router relays bytes)
  * term_tls:     client_ssl_mode = PREFERRED, server_ssl_mode = AS_CLIENT (TLS on both hops)
  * term_plain:   client_ssl_mode = PREFERRED, server_ssl_mode = DISABLED (TLS to the router only)
and "direct" (clients to the servers, TLS). Clients always use TLS: sysbench
(--mysql-ssl=on) oltp_point_select and oltp_read_only, 16 threads; benchtool connrate tls
(connect + SELECT 1 + quit, 16 workers). One unrecorded warm-up pass over every target, then
targets interleaved in every round (order reversed every other round). Writes
docs/PERFORMANCE-TLS.md. Needs: mariadb-server, sysbench, openssl, ../shared/lab.
Bounded: about 7 targets x 6 s + rounds x 7 targets x (2 x secs + secs/2) seconds.
"""
import argparse, datetime, os, platform, re, shutil, signal, socket, statistics
import subprocess, sys, tempfile, time

from harness import cleanup, free_port, install_mariadb, run, spawn, wait_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.path.join(ROOT, "target", "release")
ORACLE = os.path.join(ROOT, "..", "shared", "lab", "oracle-mysqlrouter")
PKI = None  # folder of the test certificates (sysbench runs there)


def certs(base):
    d = os.path.join(base, "pki")
    os.makedirs(d)
    run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "key.pem", "-out", "cert.pem",
         "-days", "7", "-subj", "/CN=localhost"], cwd=d)
    # sysbench --mysql-ssl=on loads these three names from its working folder.
    for src, dst in (("cert.pem", "cacert.pem"), ("cert.pem", "client-cert.pem"), ("key.pem", "client-key.pem")):
        shutil.copy(os.path.join(d, src), os.path.join(d, dst))
    for f in os.listdir(d):
        os.chmod(os.path.join(d, f), 0o644)
    global PKI
    PKI = d
    return os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")


def start_mariadb(base, cert, key):
    d, user = install_mariadb(base)
    port = free_port()
    spawn(["/usr/sbin/mariadbd", "--no-defaults", f"--datadir={d}/data", f"--port={port}", "--bind-address=127.0.0.1",
           f"--socket={d}/sock", f"--pid-file={d}/pid", f"--tmpdir={d}", "--skip-name-resolve",
           "--max-connections=3000", "--max-connect-errors=1000000000", "--performance-schema=OFF",
           "--innodb-buffer-pool-size=64M", "--skip-log-bin", "--back-log=2000",
           f"--ssl-cert={cert}", f"--ssl-key={key}", f"--ssl-ca={cert}"] + user)
    wait_port(port)
    run(["mariadb", "--no-defaults", "-S", f"{d}/sock", "-uroot", "-e",
         "CREATE USER 't'@'%' IDENTIFIED BY 't'; GRANT ALL ON *.* TO 't'@'%'; CREATE DATABASE sbtest;"])
    return port


def sysbench(test, ports, secs):
    out = run(["sysbench", test, "--db-driver=mysql", "--mysql-host=127.0.0.1", "--mysql-ssl=on",
               "--mysql-port=" + ",".join(map(str, ports)), "--mysql-user=t", "--mysql-password=t",
               "--mysql-db=sbtest", "--tables=4", "--table-size=10000", "--threads=16", f"--time={secs}",
               "--report-interval=0", "run"], cwd=PKI)
    return float(re.search(r"transactions:\s+\d+\s+\(([\d.]+) per sec", out).group(1))


def connrate(ports, secs):
    out = run([os.path.join(TARGET, "examples", "benchtool"), "connrate", ",".join(map(str, ports)), str(secs),
               "tls"], timeout=secs + 120)
    return float(out.split()[0])


def measure(k, ports, secs, label):
    """One measure (ps, ro or conn) through `ports`; a failure (a mode one router cannot
    do) is printed and gives 0."""
    try:
        if k == "conn":
            return connrate(ports, max(2, secs // 2))
        return sysbench({"ps": "oltp_point_select", "ro": "oltp_read_only"}[k], ports, secs)
    except Exception as e:
        print(f"{label} {k}: failed: {e}", file=sys.stderr)
        return 0.0


MODES = {
    "passthrough": "client_ssl_mode = PASSTHROUGH\n",
    "term_tls": "client_ssl_mode = PREFERRED\nserver_ssl_mode = AS_CLIENT\n",
    "term_plain": "client_ssl_mode = PREFERRED\nserver_ssl_mode = DISABLED\n",
}


def router_conf(base, name, servers, cert, key, ports):
    conf = os.path.join(base, f"{name}.conf")
    dests = ",".join(f"127.0.0.1:{p}" for p in servers)
    with open(conf, "w") as f:
        f.write(f"[DEFAULT]\nlogging_folder = {base}/{name}-log\nmax_total_connections = 20000\n"
                f"[logger]\nlevel = warning\n")
        for mode, opts in MODES.items():
            f.write(f"[routing:{mode}]\nbind_port = {ports[mode]}\ndestinations = {dests}\n"
                    f"routing_strategy = round-robin\nmax_connections = 5000\n"
                    f"client_ssl_cert = {cert}\nclient_ssl_key = {key}\n{opts}\n")
    os.makedirs(f"{base}/{name}-log", exist_ok=True)
    return conf


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--secs", type=int, default=8)
    ap.add_argument("--modes", default=",".join(MODES),
                    help="router modes to measure (passthrough is always kept: the table's last column needs it)")
    ap.add_argument("--measures", default="ps,ro,conn", help="ps (point_select), ro (read_only), conn (connections/s)")
    ap.add_argument("--servers", type=int, default=3, help="private MariaDB servers behind every route (round-robin)")
    ap.add_argument("--no-build", action="store_true", help="use target/release as it is")
    ap.add_argument("--no-doc", action="store_true", help="print the table only (quick checks)")
    ap.add_argument("--baseline", help="another mysqlrouter binary (e.g. a copy of an earlier build) measured in "
                    "the same rounds: adds a column ours/baseline, to tell what a change gained")
    a = ap.parse_args()
    wanted = set(a.modes.split(",")) | {"passthrough"}
    for m in list(MODES):
        if m not in wanted:
            del MODES[m]
    measures = a.measures.split(",")
    t0 = time.time()
    if not a.no_build:
        subprocess.run(["cargo", "build", "--release", "--locked", "--bin", "mysqlrouter", "--example", "benchtool"],
                       cwd=ROOT, check=True)
    base = tempfile.mkdtemp(prefix="bench-tls-")
    os.chmod(base, 0o755)
    try:
        cert, key = certs(base)
        servers = [start_mariadb(base, cert, key) for _ in range(a.servers)]
        for p in servers:
            run(["sysbench", "oltp_read_only", "--db-driver=mysql", "--mysql-host=127.0.0.1", f"--mysql-port={p}",
                 "--mysql-user=t", "--mysql-password=t", "--mysql-db=sbtest", "--tables=4", "--table-size=10000",
                 "prepare"])
        ours = {m: free_port() for m in MODES}
        theirs = {m: free_port() for m in MODES}
        spawn([os.path.join(TARGET, "mysqlrouter"), "-c", router_conf(base, "ours", servers, cert, key, ours)])
        spawn([ORACLE, "-c", router_conf(base, "oracle", servers, cert, key, theirs)])
        base_ports = {m: free_port() for m in MODES} if a.baseline else {}
        if a.baseline:
            spawn([a.baseline, "-c", router_conf(base, "baseline", servers, cert, key, base_ports)])
        for p in list(ours.values()) + list(theirs.values()) + list(base_ports.values()):
            wait_port(p)
        time.sleep(1)
        targets = {"direct": servers}
        for m in MODES:
            targets[f"ours {m}"] = [ours[m]]
            targets[f"oracle {m}"] = [theirs[m]]
            if a.baseline:
                targets[f"baseline {m}"] = [base_ports[m]]
        res = {t: {k: [] for k in measures} for t in targets}
        # One short pass over every target before the measured rounds, not recorded: the
        # first run through a route (either router) was 10-25 % slower than later ones
        # (cause not isolated).
        for t in targets:
            for k in measures:
                measure(k, targets[t], 2, f"warm-up {t}")
        for rnd in range(a.rounds):
            order = list(targets) if rnd % 2 == 0 else list(reversed(targets))
            for t in order:
                for k in measures:
                    res[t][k].append(measure(k, targets[t], a.secs, t))
                print(f"round {rnd + 1} {t}: " + ", ".join(f"{k}={v[-1]:.0f}" for k, v in res[t].items()), flush=True)
        med = {t: {k: statistics.median(v) for k, v in m.items()} for t, m in res.items()}
        report(med, res, a, time.time() - t0, measures)
    finally:
        cleanup()
        shutil.rmtree(base, ignore_errors=True)


def report(med, res, a, elapsed, measures):
    ratio = lambda x, y: f"{x / y:.2f}" if y else "n/a"
    lines = ["| mode | measure | direct (TLS) | ours | Oracle 9.7.4 | ours/Oracle | ours/direct | ours/ours-PASSTHROUGH |"
             + (" baseline | ours/baseline |" if a.baseline else ""),
             "|---|---|---|---|---|---|---|---|" + ("---|---|" if a.baseline else "")]
    names = {"ps": "oltp_point_select tps", "ro": "oltp_read_only tps", "conn": "connections/s (TLS)"}
    for m in MODES:
        for k, n in names.items():
            if k not in measures:
                continue
            o, r, d, pt = med[f"ours {m}"][k], med[f"oracle {m}"][k], med["direct"][k], med["ours passthrough"][k]
            row = f"| {m} | {n} | {d:.0f} | {o:.0f} | {r:.0f} | {ratio(o, r)} | {ratio(o, d)} | {ratio(o, pt)} |"
            if a.baseline:
                b = med[f"baseline {m}"][k]
                row += f" {b:.0f} | {ratio(o, b)} |"
            lines.append(row)
    table = "\n".join(lines)
    # ours and Oracle run one after the other in every round, so each round gives a ratio;
    # their spread says how far the medians above can be trusted.
    spread = ["", "Per round, ours/Oracle (rounds in the order run):", ""]
    for m in MODES:
        for k, n in names.items():
            if k in measures:
                rs = [ratio(o, r) for o, r in zip(res[f"ours {m}"][k], res[f"oracle {m}"][k])]
                spread.append(f"* {m}, {n}: {', '.join(rs)}")
    table += "\n" + "\n".join(spread)
    print(table)
    if a.no_doc:
        return
    cmd = " ".join(["python3", "bench/tls.py"] + sys.argv[1:])
    load = os.getloadavg()[2]
    doc = f"""# Performance with TLS: this router vs Oracle's MySQL Router

Measured by `{cmd}` ({elapsed / 60:.1f} min, 15-minute load average {load:.1f} at the end) on
{datetime.date.today().isoformat()}, {platform.node()}: {os.cpu_count()} CPUs, {platform.platform()}.
Clients (sysbench 16 threads with `--mysql-ssl=on`, `benchtool connrate ... tls` with 16 workers),
both routers and {a.servers} MariaDB 10.11 server(s) with TLS share the CPUs; one unrecorded warm-up
pass over every target, then medians over interleaved rounds; only ratios within one run mean
anything.

Modes (both routers, same options; round-robin over the {a.servers} server(s)):
* `passthrough`: `client_ssl_mode = PASSTHROUGH` — TLS end to end, the router relays bytes.
* `term_tls`: `client_ssl_mode = PREFERRED`, `server_ssl_mode = AS_CLIENT` — the router
  terminates the client's TLS and opens its own to the server.
* `term_plain`: `client_ssl_mode = PREFERRED`, `server_ssl_mode = DISABLED` — TLS to the
  router only.

{table}

A 0 means the mode failed for that router in this set-up (see the run's output).
""" + (f"`baseline` is `{a.baseline}`, measured in the same rounds.\n" if a.baseline else "")
    # Hand-written notes below the marker survive a new run.
    path = os.path.join(ROOT, "docs", "PERFORMANCE-TLS.md")
    marker = "<!-- notes: kept by bench/tls.py -->"
    notes = ""
    if os.path.exists(path):
        old = open(path).read()
        if marker in old:
            notes = "\n" + marker + old.split(marker, 1)[1]
    with open(path, "w") as f:
        f.write(doc + notes)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: (cleanup(), sys.exit(1)))
    try:
        main()
    except BaseException:
        cleanup()
        raise
