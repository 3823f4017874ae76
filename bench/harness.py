"""Process and port helpers shared by the benchmark scripts (run.py, tls.py)."""
import socket, subprocess, time

procs = []


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_port(port, secs=60):
    end = time.time() + secs
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"port {port} did not open")


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw).stdout


def spawn(cmd, **kw):
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)
    procs.append(p)
    return p


def cleanup():
    for p in procs:
        try:
            p.kill()
        except Exception:
            pass


def install_mariadb(base):
    """A fresh MariaDB data directory under `base` (its own tmpdir: a starting mariadbd
    deletes other bootstraps' #sql files in a shared one); returns the directory and
    the `--user` argument mariadbd needs when run as root."""
    import os, shutil, tempfile
    d = tempfile.mkdtemp(dir=base)
    user = ["--user=mysql"] if os.geteuid() == 0 else []
    if user:
        shutil.chown(d, "mysql", "mysql")
    run(["mariadb-install-db", "--no-defaults", f"--datadir={d}/data", "--auth-root-authentication-method=socket",
         "--skip-test-db", f"--tmpdir={d}"] + user, env=dict(os.environ, TMPDIR=d))
    return d, user
