#!/usr/bin/env python3
"""Connection sharing: many mostly idle clients over few server connections.

    /usr/bin/python3 bench/sharing.py [--clients 5000] [--ramp 25] [--secs 30] [--max-idle 40]

One private mariadbd; the router (release build) with a TLS-terminating route
(client_ssl_mode = REQUIRED, server_ssl_mode = DISABLED), connection_sharing = 1,
connection_sharing_delay = 0, [connection_pool] max_idle_server_connections = MAX_IDLE.
examples/sharebench.rs opens CLIENTS sessions (mysql_async, TLS) over RAMP seconds, then
each sends SELECT 1 every 1-5 s for SECS seconds. The server's Threads_connected is
sampled every 0.5 s. Then the same clients go directly to the server (plain TCP) for the
latency baseline. Prints a table; "added" is the router's p50/p99 minus the direct ones.
Needs: mariadb-server, openssl, cargo. Bounded: about 2 x (RAMP + SECS + 10) s.
"""
import argparse, os, resource, shutil, subprocess, sys, tempfile, threading, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import cleanup, free_port, install_mariadb, run, spawn, wait_port  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.path.join(ROOT, "target", "release")


def raise_nofile():
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def start_mariadb(base):
    d, user = install_mariadb(base)
    port = free_port()
    spawn(["/usr/sbin/mariadbd", "--no-defaults", f"--datadir={d}/data", f"--port={port}", "--bind-address=127.0.0.1",
           f"--socket={d}/sock", f"--pid-file={d}/pid", f"--tmpdir={d}", "--skip-name-resolve",
           "--max-connections=6000", "--open-files-limit=20000", "--max-connect-errors=1000000000",
           "--performance-schema=OFF", "--innodb-buffer-pool-size=64M", "--skip-log-bin", "--back-log=4000",
           "--thread-stack=256K"] + user, preexec_fn=raise_nofile)
    wait_port(port)
    run(["mariadb", "--no-defaults", "-S", f"{d}/sock", "-uroot", "-e",
         "CREATE USER 'b'@'%' IDENTIFIED BY 'b'; GRANT ALL ON *.* TO 'b'@'%';"])
    return port, f"{d}/sock"


def threads_connected(sock):
    out = run(["mariadb", "--no-defaults", "-S", sock, "-uroot", "-N", "-B", "-e",
               "SHOW GLOBAL STATUS LIKE 'Threads_connected'"])
    return int(out.split()[1])


def measure(port, sock, args, tls):
    samples, stop = [], threading.Event()

    def sampler():
        t0 = time.time()
        while not stop.is_set():
            try:
                samples.append((time.time() - t0, threads_connected(sock)))
            except Exception:
                pass
            time.sleep(0.5)

    th = threading.Thread(target=sampler)
    th.start()
    out = subprocess.run([os.path.join(TARGET, "examples", "sharebench"), str(port), str(args.clients),
                          str(args.ramp), str(args.secs), "b", "b", "tls" if tls else "plain"],
                         capture_output=True, text=True, timeout=args.ramp + args.secs + 120,
                         preexec_fn=raise_nofile)
    stop.set()
    th.join()
    fields = dict(kv.split("=") for kv in out.stdout.split())
    ramp = [v for t, v in samples if t <= args.ramp]
    steady = [v for t, v in samples if args.ramp + 2 < t <= args.ramp + args.secs]
    fields["threads_max_ramp"] = max(ramp, default=0)
    fields["threads_max_steady"] = max(steady, default=0)
    return fields


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=5000)
    ap.add_argument("--ramp", type=int, default=25)
    ap.add_argument("--secs", type=int, default=30)
    ap.add_argument("--max-idle", type=int, default=40)
    args = ap.parse_args()
    raise_nofile()
    subprocess.run(["cargo", "build", "--release", "--quiet", "--bin", "mysqlrouter", "--example", "sharebench"],
                   cwd=ROOT, check=True)
    base = tempfile.mkdtemp(prefix="sharing-bench-")
    os.chmod(base, 0o755)
    try:
        port, sock = start_mariadb(base)
        run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", f"{base}/key.pem", "-out", f"{base}/cert.pem", "-days", "2", "-subj", "/CN=localhost"])
        rport = free_port()
        conf = os.path.join(base, "router.conf")
        with open(conf, "w") as f:
            f.write(f"[DEFAULT]\nlogging_folder =\nmax_total_connections = {args.clients + 1000}\n\n"
                    f"[logger]\nlevel = WARNING\n\n[io]\nthreads = 2\n\n"
                    f"[connection_pool]\nmax_idle_server_connections = {args.max_idle}\n\n"
                    f"[routing:share]\nbind_port = {rport}\ndestinations = 127.0.0.1:{port}\n"
                    f"routing_strategy = first-available\nmax_connections = {args.clients + 500}\n"
                    f"client_ssl_mode = REQUIRED\nclient_ssl_cert = {base}/cert.pem\n"
                    f"client_ssl_key = {base}/key.pem\nserver_ssl_mode = DISABLED\n"
                    f"connection_sharing = 1\nconnection_sharing_delay = 0\nconnect_timeout = 10\n")
        spawn([os.path.join(TARGET, "mysqlrouter"), "-c", conf], preexec_fn=raise_nofile)
        wait_port(rport)
        shared = measure(rport, sock, args, tls=True)
        time.sleep(3)
        direct = measure(port, sock, args, tls=False)
        print(f"\n{args.clients} clients, each SELECT 1 every 1-5 s for {args.secs} s after a {args.ramp} s ramp; "
              f"max_idle_server_connections = {args.max_idle}, connection_sharing_delay = 0\n")
        print(f"| {'target':<28} | {'connected':>9} | {'queries':>8} | {'errors':>6} | {'p50 µs':>7} | "
              f"{'p99 µs':>7} | {'Threads_connected max (ramp / steady)':>38} |")
        print(f"|{'-' * 30}|{'-' * 11}|{'-' * 10}|{'-' * 8}|{'-' * 9}|{'-' * 9}|{'-' * 40}|")
        for name, r in (("router, sharing (TLS)", shared), ("direct to the server (plain)", direct)):
            print(f"| {name:<28} | {r['connected']:>9} | {r['queries']:>8} | {r['errors']:>6} | {r['p50_us']:>7} | "
                  f"{r['p99_us']:>7} | {str(r['threads_max_ramp']) + ' / ' + str(r['threads_max_steady']):>38} |")
        add50 = int(shared["p50_us"]) - int(direct["p50_us"])
        add99 = int(shared["p99_us"]) - int(direct["p99_us"])
        print(f"\nadded by the router with sharing: p50 {add50} µs, p99 {add99} µs "
              f"(includes the client's TLS hop); server connections in steady state: "
              f"{shared['threads_max_steady']} (router) vs {direct['threads_max_steady']} (direct)")
    finally:
        cleanup()
        time.sleep(1)
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
