"""Real clients (PyMySQL over TLS) for tests/sharing.rs. Each scenario prints one JSON
line with what it saw; the Rust test asserts on it. Bounded in time and count."""
import json, random, ssl, sys, threading, time
import pymysql

CTX = ssl.create_default_context()
CTX.check_hostname = False
CTX.verify_mode = ssl.CERT_NONE


def connect(port, db=None, user="sh", pw="sh"):
    return pymysql.connect(host="127.0.0.1", port=port, user=user, password=pw, ssl=CTX,
                           database=db, autocommit=True, connect_timeout=10, read_timeout=30,
                           write_timeout=30)


def one(c, sql):
    with c.cursor() as cur:
        cur.execute(sql)
        return cur.fetchall()


def load(port, sock, n, seconds):
    """n clients, each keeping its own state and checking it after every statement."""
    fails, stmts, lock = [], [0], threading.Lock()
    ids = {}
    pinned_ids = {}
    stop = time.time() + seconds

    def fail(i, what):
        with lock:
            if len(fails) < 50:
                fails.append(f"client {i}: {what}")

    def client(i):
        db = f"sh{i % 10}"
        kind = "pinned" if i % 10 == 0 else "trx" if i % 10 in (1, 2) else "free"
        try:
            c = connect(port)
            seen = set()
            if kind == "pinned":
                # Pinned at the first statement: on the login's own connection (README,
                # "Connection sharing": a later pin may take a shared one).
                one(c, f"SET @mine = {i}")
                one(c, f"CREATE TEMPORARY TABLE {db}.tt (v INT)")
                one(c, f"INSERT INTO {db}.tt VALUES ({i})")
            one(c, f"USE {db}")
            tz = f"+{i % 12:02d}:{i % 60:02d}"
            one(c, f"SET time_zone = '{tz}', sql_mode = 'ANSI_QUOTES'")
            k = 0
            while time.time() < stop:
                k += 1
                if kind == "trx":
                    one(c, "BEGIN")
                    cid = one(c, "SELECT CONNECTION_ID()")[0][0]
                    one(c, f"INSERT INTO t (client, n) VALUES ({i}, {k})")
                    r = one(c, f"SELECT COUNT(*), MAX(n) FROM t WHERE client = {i} AND n = {k}")
                    if r[0] != (1, k):
                        fail(i, f"own uncommitted row not seen: {r}")
                    if one(c, "SELECT CONNECTION_ID()")[0][0] != cid:
                        fail(i, "transaction moved to another server connection")
                    one(c, "COMMIT" if k % 2 else "ROLLBACK")
                    seen.add(cid)
                r = one(c, "SELECT DATABASE(), @@time_zone, @@sql_mode, CONNECTION_ID()")[0]
                if (r[0], r[1], r[2]) != (db, tz, "ANSI_QUOTES"):
                    fail(i, f"state is {r[:3]}, expected {(db, tz, 'ANSI_QUOTES')}")
                seen.add(r[3])
                if kind == "pinned":
                    r2 = one(c, "SELECT @mine, (SELECT v FROM tt), CONNECTION_ID()")[0]
                    if r2[0] != i or r2[1] != i:
                        fail(i, f"pinned state is {r2[:2]}, expected {i}")
                    with lock:
                        pinned_ids.setdefault(i, set()).add(r2[2])
                n = one(c, f"SELECT COUNT(*) FROM t WHERE client = {i} AND n > {k}")[0][0]
                if n != 0:
                    fail(i, f"sees {n} rows it never wrote")
                with lock:
                    stmts[0] += 4
                time.sleep(random.uniform(0.01, 0.05))
            one(c, "SELECT 1")
            c.close()
            with lock:
                ids[i] = (kind, len(seen))
        except Exception as e:
            fail(i, f"{type(e).__name__}: {e}")

    maxthreads = [0, 10**9]
    def monitor():
        m = pymysql.connect(unix_socket=sock, user="root")
        t0 = time.time()
        while time.time() < stop:
            v = int(one(m, "SHOW GLOBAL STATUS LIKE 'Threads_connected'")[0][1])
            if time.time() - t0 > 3:
                maxthreads[0] = max(maxthreads[0], v)
                maxthreads[1] = min(maxthreads[1], v)
            time.sleep(0.1)
        m.close()

    ts = [threading.Thread(target=client, args=(i,)) for i in range(n)]
    mt = threading.Thread(target=monitor)
    mt.start()
    for t in ts:
        t.start()
    for t in ts:
        t.join(seconds + 60)
    mt.join(10)
    moved_free = sum(1 for k, s in ids.values() if k == "free" and s > 1)
    moved_pinned = sum(1 for s in pinned_ids.values() if len(s) > 1)
    print(json.dumps({"fails": fails, "statements": stmts[0], "finished": len(ids),
                      "free_clients_moved": moved_free,
                      "free_clients": sum(1 for k, _ in ids.values() if k == "free"),
                      "pinned_clients_moved": moved_pinned,
                      "threads_connected_max": maxthreads[0],
                      "threads_connected_min": maxthreads[1]}))


def diag(port):
    """Two sessions over one shared server connection (max_idle_server_connections = 1):
    what each asks about its own last statement after the other ran."""
    a, b = connect(port, "sh0"), connect(port, "sh1")
    out = {}
    one(a, "SELECT 1"); one(b, "SELECT 1")
    # warnings: held on the connection until a clean response
    one(a, "SELECT CAST('x1' AS SIGNED)")
    out["a_warnings"] = [list(r) for r in one(a, "SHOW WARNINGS")]
    one(a, "SELECT 1")
    one(b, "SELECT CAST('zz' AS SIGNED)")
    out["b_warnings"] = [list(r) for r in one(b, "SHOW WARNINGS")]
    one(b, "SELECT 1")
    # ROW_COUNT after an UPDATE (held), FOUND_ROWS after a result set (restored)
    one(a, "DELETE FROM sh1.d2"); one(a, "INSERT INTO sh1.d2 VALUES (1),(2),(3)")
    out["a_row_count"] = one(a, "SELECT ROW_COUNT()")[0][0]
    one(a, "SELECT * FROM sh1.d2")
    a_id = one(b, "SELECT CONNECTION_ID()")[0][0]
    one(b, "SELECT 1 UNION SELECT 2 UNION SELECT 3 UNION SELECT 4 UNION SELECT 5")
    out["a_found_rows"] = one(a, "SELECT FOUND_ROWS()")[0][0]
    out["a_row_count_after_select"] = one(a, "SELECT ROW_COUNT()")[0][0]
    one(b, "SELECT 1 UNION SELECT 2")
    one(a, "SET sql_mode = 'ANSI'")
    one(b, "SELECT 1")
    out["a_row_count_after_set"] = one(a, "SELECT ROW_COUNT()")[0][0]
    out["same_connection"] = one(a, "SELECT CONNECTION_ID()")[0][0] == a_id
    out["a_db"] = one(a, "SELECT DATABASE(), @@sql_mode")[0]
    out["b_db"] = one(b, "SELECT DATABASE(), @@sql_mode")[0]
    # LAST_INSERT_ID pins
    one(a, "INSERT INTO sh0.ai (v) VALUES (7)")
    lid = one(a, "SELECT LAST_INSERT_ID(), CONNECTION_ID()")[0]
    out["a_last_insert_id"] = lid[0]
    out["a_last_insert_id_expected"] = one(a, "SELECT MAX(id) FROM sh0.ai")[0][0]
    a.close(); b.close()
    print(json.dumps(out))


PINS = {
    "user_variable": ("SET @p = 42", "SELECT @p", "42"),
    "temporary_table": ("CREATE TEMPORARY TABLE tp (v INT)", "SELECT COUNT(*) FROM tp", "0"),
    "get_lock": ("SELECT GET_LOCK('sharing-pin', 0)", "SELECT IS_USED_LOCK('sharing-pin') = CONNECTION_ID()", "1"),
    "lock_tables": ("LOCK TABLES sh0.d READ", "SELECT COUNT(*) > 0 FROM sh0.d", "1"),
    "sql_prepare": ("PREPARE ps FROM 'SELECT 5'", "EXECUTE ps", "5"),
    "transaction": ("BEGIN", "SELECT @@in_transaction", "1"),
    "autocommit_off": ("SET autocommit = 0", "SELECT @@autocommit", "0"),
    "calc_found_rows": ("SELECT SQL_CALC_FOUND_ROWS * FROM sh0.d LIMIT 1", "SELECT FOUND_ROWS()", "3"),
    "xa": ("XA START 'sharing'", "SELECT 1", "1"),
}


def pin(port, item):
    """Session A holds a pin-list item; session B works meanwhile on the other
    connection; A must still be on its connection with its state."""
    a, b = connect(port, "sh0"), connect(port, "sh1")
    one(a, "SELECT 1"); one(b, "SELECT 1")
    do, check, want = PINS[item]
    a_id = one(a, "SELECT CONNECTION_ID()")[0][0]
    one(a, do)
    b_ids = set()
    for _ in range(20):
        b_ids.add(one(b, "SELECT CONNECTION_ID()")[0][0])
        time.sleep(0.01)
    got = str(one(a, check)[0][0])
    a_id2 = one(a, "SELECT CONNECTION_ID()")[0][0]
    print(json.dumps({"item": item, "got": got, "want": want, "a_same": a_id == a_id2,
                      "b_never_on_a": a_id not in b_ids}))
    try:
        a.close(); b.close()
    except Exception:
        pass


def prepared(port):
    """COM_STMT_PREPARE / EXECUTE over the binary protocol pins (mysql-connector)."""
    import mysql.connector
    c = mysql.connector.connect(host="127.0.0.1", port=port, user="sh", password="sh",
                                ssl_disabled=False, ssl_verify_cert=False, database="sh0")
    cur = c.cursor(prepared=True)
    cur.execute("SELECT CONNECTION_ID(), ?", (5,))
    r1 = cur.fetchall()
    time.sleep(0.3)
    cur.execute("SELECT CONNECTION_ID(), ?", (6,))
    r2 = cur.fetchall()
    print(json.dumps({"same": r1[0][0] == r2[0][0], "values": [r1[0][1], r2[0][1]]}))
    c.close()


def big(port, mb):
    """Result sets from 1 row to `mb` MiB through a shared session, checked by hash,
    while another session keeps taking the connection in between."""
    import hashlib
    a, b = connect(port, "sh0"), connect(port, "sh1")
    out = []
    for size in [1, 1000, 1 << 20, 16 * (1 << 20) - 5, mb << 20]:
        r = one(a, f"SELECT REPEAT('x', {size}) AS v, MD5(REPEAT('x', {size}))")[0]
        ok = len(r[0]) == size and hashlib.md5(r[0].encode()).hexdigest() == r[1]
        out.append([size, ok])
        one(b, "SELECT 1")
    rows = one(a, "SELECT seq FROM seq_1_to_100000")
    out.append(["rows", len(rows) == 100000 and rows[-1][0] == 100000])
    print(json.dumps(out))
    a.close(); b.close()


def attempt(c, sql):
    try:
        return [list(r) for r in one(c, sql)]
    except Exception as e:
        return f"{type(e).__name__}: {e}"


def kill(port, sock):
    """KILL of a parked (stashed) connection costs no session: its owner moves to the
    other one; KILL of a pinned session's connection costs that session only."""
    m = pymysql.connect(unix_socket=sock, user="root", autocommit=True)
    a, b = connect(port, "sh0", "shk", "shk"), connect(port, "sh1", "shk", "shk")
    c = connect(port, "sh2", "shk", "shk")
    one(c, "SET @pinned = 1")
    c_id = one(c, "SELECT CONNECTION_ID()")[0][0]
    one(a, "SET time_zone = '+03:00'")
    a_id = one(a, "SELECT CONNECTION_ID()")[0][0]
    b_id = one(b, "SELECT CONNECTION_ID()")[0][0]
    out = {"distinct": len({a_id, b_id, c_id}) == 3}
    time.sleep(0.2)
    one(m, f"KILL {a_id}")
    time.sleep(0.3)
    out["a_after_kill"] = attempt(a, "SELECT @@time_zone, DATABASE(), CONNECTION_ID()")
    out["b_id"] = b_id
    out["b_after"] = attempt(b, "SELECT DATABASE()")
    one(m, f"KILL {c_id}")
    time.sleep(0.3)
    out["c_after_kill"] = attempt(c, "SELECT @pinned")
    out["a_after_c"] = attempt(a, "SELECT @@time_zone, DATABASE()")
    out["b_after_c"] = attempt(b, "SELECT DATABASE()")
    m.close()
    print(json.dumps(out))


def mysql97(port):
    """MySQL 9.7, caching_sha2 over TLS: two sessions over one server connection, each
    one's schema, time zone, sql_mode, character set and FOUND_ROWS() restored."""
    a = connect(port, "sh97a", "sha2", "sha2pw")
    b = connect(port, "sh97b", "sha2", "sha2pw")
    one(a, "SET time_zone = '+05:00', sql_mode = 'ANSI_QUOTES'")
    one(b, "SET NAMES latin1")
    out = {"rounds": [], "a_ids": [], "b_ids": []}
    for k in range(5):
        one(a, "SELECT 1 UNION SELECT 2 UNION SELECT 3")
        rb = one(b, "SELECT DATABASE(), @@time_zone, @@character_set_client, CONNECTION_ID()")[0]
        ra = one(a, "SELECT FOUND_ROWS(), DATABASE(), @@time_zone, @@sql_mode, @@character_set_client, CONNECTION_ID()")[0]
        out["rounds"].append([list(ra[:5]), list(rb[:3])])
        out["a_ids"].append(ra[5]); out["b_ids"].append(rb[3])
    a.close(); b.close()
    print(json.dumps(out))


def servers(port_a, port_b):
    """Sessions on two routes; the test kills route A's server between the phases."""
    a = [connect(port_a, "sh0") for _ in range(3)]
    b = [connect(port_b, "sh1") for _ in range(3)]
    # Pinned on its login's connection (a session that pins later may take its
    # account's last idle connection: see README, "Connection sharing").
    one(b[0], "SET @pinned = 7")
    for i, c in enumerate(a + b):
        one(c, f"SET time_zone = '+0{i}:00'")
    print("ready", flush=True)
    sys.stdin.readline()
    t0 = time.time()
    out = {"a": [attempt(c, "SELECT 1") for c in a]}
    out["a_seconds"] = time.time() - t0
    out["b"] = [attempt(c, "SELECT @@time_zone, DATABASE()") for c in b]
    out["b_pinned"] = attempt(b[0], "SELECT @pinned")
    try:
        connect(port_a, "sh0")
        out["new_a"] = "connected"
    except Exception as e:
        out["new_a"] = f"{type(e).__name__}: {e}"
    print(json.dumps(out), flush=True)


def limits(port, sock):
    """max_connections = 30, max_idle_server_connections = 3, idle_timeout = 2 (account
    shl): what the client and the server see."""
    m = pymysql.connect(unix_socket=sock, user="root", autocommit=True)
    count = lambda: one(m, "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = 'shl'")[0][0]
    cs = []
    for i in range(30):
        c = connect(port, "sh0", "shl", "shl")
        one(c, f"SET time_zone = '+00:{i:02d}'")
        cs.append(c)
    out = {"accepted": len(cs)}
    try:
        connect(port, "sh0", "shl", "shl")
        out["over_limit"] = "connected"
    except Exception as e:
        out["over_limit"] = f"{type(e).__name__}: {e}"
    time.sleep(0.5)
    out["idle"] = count()
    time.sleep(3)
    out["idle_after_timeout"] = count()
    ok = 0
    for i, c in enumerate(cs):
        if one(c, "SELECT @@time_zone")[0][0] == f"+00:{i:02d}":
            ok += 1
    out["states_ok"] = ok
    out["busy_max"] = count()
    for c in cs:
        c.close()
    time.sleep(3.5)
    out["after_quit_and_timeout"] = count()
    c = connect(port, "sh0", "shl", "shl")
    out["reconnect"] = one(c, "SELECT 1")[0][0]
    c.close()
    m.close()
    print(json.dumps(out))


def change_user(port):
    """A session that changes user (COM_CHANGE_USER, mysql-connector) is never shared,
    and its connection never serves a session of the first account afterwards."""
    import mysql.connector
    a, b = connect(port, "sh0"), connect(port, "sh1")
    c = mysql.connector.connect(host="127.0.0.1", port=port, user="sh", password="sh",
                                ssl_disabled=False, ssl_verify_cert=False, database="sh0")
    cur = c.cursor()
    c.cmd_change_user(username="shk", password="shk", database="sh0")
    users = set()
    for _ in range(5):
        cur.execute("SELECT CURRENT_USER()")
        users.add(cur.fetchall()[0][0])
        users.add(one(a, "SELECT CURRENT_USER()")[0][0])
    c.close()
    time.sleep(0.2)
    seen = set()
    for _ in range(20):
        seen.add(one(a, "SELECT CURRENT_USER()")[0][0])
        seen.add(one(b, "SELECT CURRENT_USER()")[0][0])
    print(json.dumps({"changed": sorted(users), "after": sorted(seen)}))
    a.close(); b.close()


def dropped_schema(port, sock):
    """Session A's schema is dropped while A is unlinked: A cannot be restored on the
    connection B left (clear error for A only); B goes on, on the same connection."""
    m = pymysql.connect(unix_socket=sock, user="root", autocommit=True)
    one(m, "CREATE DATABASE IF NOT EXISTS shdrop")
    a, b = connect(port, "shdrop"), connect(port, "sh1")
    one(a, "SELECT 1"); one(b, "SELECT 1")
    b_id = one(b, "SELECT CONNECTION_ID()")[0][0]
    one(m, "DROP DATABASE shdrop")
    out = {"a": attempt(a, "SELECT 1")}
    out["b"] = attempt(b, "SELECT DATABASE(), CONNECTION_ID()")
    out["b_same_connection"] = isinstance(out["b"], list) and out["b"][0][1] == b_id
    m.close()
    print(json.dumps(out))


def plain(port):
    """A plain-TCP client on a sharing route keeps its connection (never shared); TLS
    clients of the same account share among themselves and never get it."""
    p = pymysql.connect(host="127.0.0.1", port=port, user="sh", password="sh", database="sh0",
                        autocommit=True, connect_timeout=10)
    t1, t2 = connect(port, "sh1"), connect(port, "sh2")
    p_ids, t_ids = set(), set()
    one(p, "SET time_zone = '+07:00'")
    for _ in range(10):
        p_ids.add(one(p, "SELECT CONNECTION_ID()")[0][0])
        t_ids.add(one(t1, "SELECT CONNECTION_ID()")[0][0])
        t_ids.add(one(t2, "SELECT CONNECTION_ID()")[0][0])
    out = {"plain_ids": len(p_ids), "tls_on_plain": bool(p_ids & t_ids),
           "plain_state": one(p, "SELECT @@time_zone, DATABASE()")[0]}
    p.close(); t1.close(); t2.close()
    print(json.dumps(out))


def hold(port, n, ready, go):
    """n sessions run one statement each, then stay idle (their connections stashed)
    until the file `go` exists (at most 30 s); `ready` is written once all are idle.
    Then each runs one more statement and quits."""
    cs = [connect(port) for _ in range(n)]
    for c in cs:
        one(c, "SELECT 1")
    open(ready, "w").close()
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            open(go).close()
            break
        except OSError:
            time.sleep(0.05)
    ok = sum(1 for c in cs if one(c, "SELECT 2")[0][0] == 2)
    for c in cs:
        c.close()
    print(json.dumps({"ok": ok}))


# An ERR after 1,999 rows: the correlated subquery returns one row too many at seq 2000.
ERR_MID_ROWS = "SELECT seq, (SELECT v FROM sh0.d WHERE seq >= 2000) FROM seq_1_to_3000"


def results(c, sql):
    """Every result of `sql` (rows, or the affected-row count of an OK), ending with
    ["error", code] where the server stopped with an error."""
    out = []
    with c.cursor() as cur:
        try:
            cur.execute(sql)
            while True:
                out.append([list(r) for r in cur.fetchall()] if cur.description else cur.rowcount)
                if not cur.nextset():
                    break
        except pymysql.MySQLError as e:
            out.append(["error", e.args[0]])
    return out


def midstream(port, sock):
    """Responses that end in unusual places, for the Rust test to compare with a direct
    connection (port 0: the server's socket): an ERR after 1,999 rows (text protocol;
    the binary one is mysql_async's part of the test: mysql-connector-python's prepared
    cursor waits forever for more rows after such an ERR, even on a direct connection);
    multi-statements with an error in the middle; CALLs with two result sets, and with
    an error after the first. Two sessions alternate (through the router, on one idle
    server connection); after each response both answer their own next statement."""
    from pymysql.constants import CLIENT

    def py(db):
        kw = dict(user="sh", password="sh", database=db, autocommit=True,
                  client_flag=CLIENT.MULTI_STATEMENTS, connect_timeout=10, read_timeout=30,
                  write_timeout=30)
        if port:
            return pymysql.connect(host="127.0.0.1", port=port, ssl=CTX, **kw)
        return pymysql.connect(unix_socket=sock, **kw)

    setup = py("sh0")  # CREATE PROCEDURE pins its session: not on a or b
    one(setup, "CREATE OR REPLACE PROCEDURE sh0.two() BEGIN SELECT 1 AS x; SELECT 2 AS y, 3 AS z; END")
    one(setup, "CREATE OR REPLACE PROCEDURE sh0.two_err() BEGIN SELECT 1 AS x; SELECT nope FROM sh0.d; END")
    setup.close()
    a, s = py("sh0"), {"b": py("sh1")}
    out = {"steps": []}

    def step(label, got):
        mine = [list(one(a, "SELECT DATABASE(), 'a'")[0]), list(one(s["b"], "SELECT DATABASE(), 'b'")[0])]
        out["steps"].append([label, got, mine])

    step("text: error after rows", results(a, ERR_MID_ROWS))
    step("text: error after rows, again", results(a, ERR_MID_ROWS))
    # Multi-statements and CALL pin their session; a session of the account that has no
    # connection left could only wait, so B logs in again (its login brings one).
    s["b"].close()
    s["b"] = py("sh1")
    step("multi: error in the middle", results(a, "SELECT 1; DO 0; SELECT nope FROM sh0.d; SELECT 3"))
    step("multi: all fine", results(s["b"], "SELECT 4; DO 0; SELECT 5, 6"))
    step("call: two result sets", results(a, "CALL sh0.two()"))
    step("call: error after a result set", results(s["b"], "CALL sh0.two_err()"))
    b = s["b"]
    a.close(); b.close()
    print(json.dumps(out))


def infile(port, sock, path):
    """LOAD DATA LOCAL INFILE (PyMySQL, local_infile): a load, a missing file (the
    client answers the server's request with an empty packet), then the same session
    goes on; port 0: directly on the server's socket."""
    kw = dict(user="sh", password="sh", database="sh0", autocommit=True, local_infile=True,
              connect_timeout=10, read_timeout=30, write_timeout=30)
    if port:
        c = pymysql.connect(host="127.0.0.1", port=port, ssl=CTX, **kw)
    else:
        c = pymysql.connect(unix_socket=sock, **kw)
    load = f"LOAD DATA LOCAL INFILE '{path}' INTO TABLE sh2.li FIELDS TERMINATED BY ','"
    count = "SELECT COUNT(*), CAST(SUM(b) AS SIGNED), DATABASE() FROM sh2.li"
    one(c, "DELETE FROM sh2.li")
    out = [results(c, load), results(c, count),
           results(c, load.replace(path, path + ".missing")), results(c, "SELECT 42"),
           results(c, load), results(c, count)]
    c.close()
    print(json.dumps(out))


if __name__ == "__main__":
    cmd = sys.argv[1]
    port = int(sys.argv[2])
    if cmd == "load":
        load(port, sys.argv[3], int(sys.argv[4]), float(sys.argv[5]))
    elif cmd == "diag":
        diag(port)
    elif cmd == "pin":
        pin(port, sys.argv[3])
    elif cmd == "prepared":
        prepared(port)
    elif cmd == "big":
        big(port, int(sys.argv[3]))
    elif cmd == "mysql97":
        mysql97(port)
    elif cmd == "change_user":
        change_user(port)
    elif cmd == "dropped_schema":
        dropped_schema(port, sys.argv[3])
    elif cmd == "plain":
        plain(port)
    elif cmd == "limits":
        limits(port, sys.argv[3])
    elif cmd == "servers":
        servers(port, int(sys.argv[3]))
    elif cmd == "hold":
        hold(port, int(sys.argv[3]), sys.argv[4], sys.argv[5])
    elif cmd == "kill":
        kill(port, sys.argv[3])
    elif cmd == "midstream":
        midstream(port, sys.argv[3])
    elif cmd == "infile":
        infile(port, sys.argv[3], sys.argv[4])
