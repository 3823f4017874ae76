#!/usr/bin/env python3
"""A/B benchmark of two router binaries on the same servers, rounds interleaved.

    python3 bench/ab.py ROUTER_A ROUTER_B [--rounds N] [--secs S] [--no-monitoring]

For checking that a change costs nothing on the relay: B runs with the monitoring
server on ([http_server], [rest_routing], [metrics]) and is scraped once a second
while it is measured (--no-monitoring: B runs the same config as A). Measures sysbench oltp_point_select tps (16 threads) through a
round-robin route to three mariadbd, and connections/s (connect + SELECT 1 + quit,
examples/benchtool.rs). Prints the medians and B/A. Needs mariadb-server sysbench and
a release build of the benchtool example. Bounded: rounds x (2 x (secs + secs/2)).
"""
import argparse, os, statistics, subprocess, sys, tempfile, threading, time, urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as bench  # noqa: E402  (the harness of bench/run.py)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--secs", type=int, default=10)
    ap.add_argument("--no-monitoring", action="store_true")
    args = ap.parse_args()
    base = tempfile.mkdtemp(prefix="ab-")
    os.chmod(base, 0o755)
    try:
        servers = [bench.start_mariadb(base) for _ in range(3)]
        for p in servers:
            bench.run(["sysbench", "oltp_read_only", "--db-driver=mysql", "--mysql-host=127.0.0.1",
                       f"--mysql-port={p}", "--mysql-user=t", "--mysql-password=t", "--mysql-db=sbtest",
                       "--tables=4", "--table-size=10000", "prepare"])
        dests = ",".join(f"127.0.0.1:{p}" for p in servers)
        ports = {}
        for name, binary in (("A", args.a), ("B", args.b)):
            port, http = bench.free_port(), bench.free_port()
            extra = ""
            if name == "B" and not args.no_monitoring:
                with open(os.path.join(base, "users"), "w") as f:
                    f.write("u:$5$CMYVtzTN/fBGshh9$VIQP11/xbpvjmJ0PY4HDkbv22rHp2VWcr47to/4Nqx8\n")
                extra = f"""[http_server]
port = {http}
bind_address = 127.0.0.1
[http_auth_realm:r]
backend = b
method = basic
name = r
[http_auth_backend:b]
backend = file
filename = {base}/users
[rest_routing]
require_realm = r
[metrics]
"""
            conf = os.path.join(base, f"{name}.conf")
            with open(conf, "w") as f:
                f.write(f"""[DEFAULT]
logging_folder = {base}/{name}
max_total_connections = 20000
[logger]
level = warning
[routing:db]
bind_port = {port}
destinations = {dests}
routing_strategy = round-robin
{extra}""")
            os.makedirs(f"{base}/{name}", exist_ok=True)
            bench.spawn([binary, "-c", conf])
            bench.wait_port(port)
            ports[name] = (port, http)

        stop = threading.Event()
        scrapes = [0]

        def scraper():
            while not stop.is_set():
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{ports['B'][1]}/metrics", timeout=5).read()
                    scrapes[0] += 1
                except OSError:
                    pass
                stop.wait(1.0)

        t = threading.Thread(target=scraper, daemon=True)
        if not args.no_monitoring:
            t.start()
        res = {n: {"tps": [], "conn": []} for n in ports}
        for rnd in range(args.rounds):
            for n in (["A", "B"] if rnd % 2 == 0 else ["B", "A"]):
                tps, _ = bench.sysbench("oltp_point_select", [ports[n][0]], args.secs)
                conn = float(bench.tool("connrate", ports[n][0], max(2, args.secs // 2))[0])
                res[n]["tps"].append(tps)
                res[n]["conn"].append(conn)
                print(f"round {rnd + 1} {n}: tps={tps:.0f} conn/s={conn:.0f}", flush=True)
        stop.set()
        for k in ("tps", "conn"):
            a, b = statistics.median(res["A"][k]), statistics.median(res["B"][k])
            spread = max(res["A"][k]) / min(res["A"][k]) - 1
            print(f"{k}: A {a:.0f}  B {b:.0f}  B/A {b / a:.3f}  (A's own spread {spread:.1%})")
        print(f"/metrics scrapes of B during the run: {scrapes[0]}")
    finally:
        bench.cleanup()
        subprocess.run(["rm", "-rf", base])


if __name__ == "__main__":
    main()
