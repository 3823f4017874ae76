"""Real Python clients for tests/mysql97.rs: PyMySQL (Debian's python3-pymysql),
mysql-connector-python and its X DevAPI sibling mysqlx-connector-python (pip).

Each command connects as sha2/sha2pw to 127.0.0.1:PORT, does its work and prints one
JSON line per step (results or the error's code and message), so a test can compare a
run through the router with a direct one.

  pymysql PORT SSL SQL...              SSL: 1 = TLS (no verification), 0 = plain TCP
  connector PORT SSL SQL...            (pure-Python implementation)
  xsession PORT SSL_MODE COMPRESSION SCHEMA
                                       X protocol: SQL, then a document-store add/find
  xlogin PORT SSL_MODE AUTH            X protocol login only: OK or the error
"""
import json
import sys


def out(obj):
    print(json.dumps(obj, default=str, sort_keys=True), flush=True)


def err(e):
    code = getattr(e, "errno", None)
    if code is None and getattr(e, "args", None):
        code = e.args[0] if isinstance(e.args[0], int) else None
    return {"error": code, "type": type(e).__name__, "msg": str(e)}


def classic(lib, port, ssl, sqls):
    if lib == "pymysql":
        import pymysql

        kw = {"ssl": {"check_hostname": False}} if ssl else {}
        conn = pymysql.connect(host="127.0.0.1", port=port, user="sha2",
                               password="sha2pw", connect_timeout=10, **kw)
    else:
        import mysql.connector

        kw = {} if ssl else {"ssl_disabled": True}
        conn = mysql.connector.connect(host="127.0.0.1", port=port, user="sha2",
                                       password="sha2pw", connection_timeout=10,
                                       use_pure=True, **kw)
    cur = conn.cursor()
    for sql in sqls:
        try:
            cur.execute(sql)
            rows = cur.fetchall() if cur.description else []
            out({"rows": [list(r) for r in rows]})
        except Exception as e:  # the server's error, reported for comparison
            out(err(e))
    conn.close()


def xsession(port, ssl_mode, compression, schema):
    import mysqlx

    s = mysqlx.get_session(host="127.0.0.1", port=port, user="sha2", password="sha2pw",
                           ssl_mode=ssl_mode, compression=compression,
                           connect_timeout=10000)
    r = s.sql("SHOW SESSION STATUS WHERE Variable_name IN "
              "('Mysqlx_ssl_active', 'Mysqlx_compression_algorithm')").execute()
    out({"status": sorted([list(x) for x in r.fetch_all()])})
    out({"rows": [list(x) for x in s.sql("SELECT 1 + 1, 'x', NULL").execute().fetch_all()]})
    try:
        s.sql("SELECT * FROM no_such_schema.no_such_table").execute()
    except Exception as e:
        out(err(e))
    s.drop_schema(schema)
    db = s.create_schema(schema)
    coll = db.create_collection("docs")
    coll.add({"_id": "1", "name": "ada", "n": 1},
             {"_id": "2", "name": "bob", "n": 2},
             {"_id": "3", "name": "eve", "n": 3}).execute()
    found = coll.find("n >= :m").bind("m", 2).sort("n").execute().fetch_all()
    out({"found": [json.loads(str(d)) for d in found]})
    s.drop_schema(schema)
    s.close()


def xlogin(port, ssl_mode, auth):
    import mysqlx

    try:
        s = mysqlx.get_session(host="127.0.0.1", port=port, user="sha2", password="sha2pw",
                               ssl_mode=ssl_mode, auth=auth, connect_timeout=10000)
        s.sql("SELECT 1").execute().fetch_all()
        s.close()
        out({"ok": True})
    except Exception as e:
        out(err(e))


def main(argv):
    cmd, port = argv[1], int(argv[2])
    if cmd in ("pymysql", "connector"):
        classic(cmd, port, argv[3] == "1", argv[4:])
    elif cmd == "xsession":
        xsession(port, argv[3], argv[4], argv[5])
    elif cmd == "xlogin":
        xlogin(port, argv[3], argv[4])
    else:
        sys.exit("unknown command " + cmd)


if __name__ == "__main__":
    main(sys.argv)
