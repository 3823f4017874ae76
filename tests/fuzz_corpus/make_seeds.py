#!/usr/bin/env python3
"""Writes the seed corpus of tests/fuzz.rs (run from anywhere; idempotent).

Seeds are well-formed inputs: real configuration files, command lines, and classic /
X protocol conversations built from the protocol documentation. Two-sided inputs are
chunks: a control byte (bit 7 = from the server, bits 0-6 = length) and the bytes."""
import os, struct

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

def out(target, name, data):
    d = os.path.join(HERE, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)

def chunks(parts):
    """parts: list of (from_server, bytes); split into <=127-byte chunks."""
    b = bytearray()
    for srv, data in parts:
        for i in range(0, max(len(data), 1), 127):
            piece = data[i:i + 127]
            b.append((0x80 if srv else 0) | len(piece))
            b += piece
    return bytes(b)

def pkt(seq, payload):
    return struct.pack("<I", len(payload))[:3] + bytes([seq]) + payload

LONG_PASSWORD, CONNECT_WITH_DB, PROTOCOL_41, SSL = 1, 8, 0x200, 0x800
TRANSACTIONS, SECURE, MULTI_RESULTS = 0x2000, 0x8000, 0x20000
PLUGIN_AUTH, ATTRS, LENENC, DEPRECATE_EOF = 0x80000, 0x100000, 0x200000, 0x1000000

def greeting(caps, plugin=b"mysql_native_password"):
    p = b"\x0a" + b"10.11.6-MariaDB\x00" + struct.pack("<I", 42) + b"abcdefgh" + b"\x00"
    p += struct.pack("<H", caps & 0xffff) + b"\x21" + struct.pack("<H", 2)
    p += struct.pack("<H", caps >> 16) + bytes([21]) + b"\x00" * 10 + b"ijklmnopqrst\x00" + plugin + b"\x00"
    return p

def response41(caps, user=b"t", auth=b"\x01" * 20, db=None, plugin=b"mysql_native_password"):
    p = struct.pack("<IIB", caps, 16 * 1024 * 1024, 33) + b"\x00" * 23 + user + b"\x00"
    p += bytes([len(auth)]) + auth
    if db is not None:
        p += db + b"\x00"
    p += plugin + b"\x00"
    if caps & ATTRS:
        attrs = b"\x04_pid\x0512345"
        p += bytes([len(attrs)]) + attrs
    return p

OK = b"\x00\x00\x00\x02\x00\x00\x00"
ERR = b"\xff\x15\x04#28000Access denied for user 't'"
SRV = PROTOCOL_41 | SECURE | PLUGIN_AUTH | TRANSACTIONS | MULTI_RESULTS | LONG_PASSWORD | CONNECT_WITH_DB | LENENC | ATTRS | SSL | DEPRECATE_EOF
CLI = SRV & ~SSL

classic = {
    "login_ok": [(1, pkt(0, greeting(SRV))), (0, pkt(1, response41(CLI))), (1, pkt(2, OK))],
    "login_err": [(1, pkt(0, greeting(SRV))), (0, pkt(1, response41(CLI, db=b"test"))), (1, pkt(2, ERR))],
    "auth_switch": [(1, pkt(0, greeting(SRV))), (0, pkt(1, response41(CLI, plugin=b"caching_sha2_password"))),
                    (1, pkt(2, b"\xfemysql_native_password\x00" + b"x" * 20 + b"\x00")), (0, pkt(3, b"\x02" * 20)), (1, pkt(4, OK))],
    "caching_sha2_full": [(1, pkt(0, greeting(SRV, b"caching_sha2_password"))), (0, pkt(1, response41(CLI, auth=b"\x03" * 32, plugin=b"caching_sha2_password"))),
                          (1, pkt(2, b"\x01\x04")), (0, pkt(3, b"\x02")), (1, pkt(4, b"\x01-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----\n")), (0, pkt(5, b"\x05" * 256)), (1, pkt(6, OK))],
    "ssl_request": [(1, pkt(0, greeting(SRV))), (0, pkt(1, struct.pack("<IIB", CLI | SSL, 1 << 24, 33) + b"\x00" * 23)),
                    (0, b"\x16\x03\x01\x00\x05hello"), (1, b"\x16\x03\x03\x00\x05world")],
    "server_err_greeting": [(1, pkt(0, b"\xff\x10\x04Too many connections"))],
    "bad_client": [(1, pkt(0, greeting(SRV))), (0, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")],
}
for name, parts in classic.items():
    out("handshake_classic", name, chunks(parts))
    out("terminate", name, chunks(parts))

def xframe(t, payload=b""):
    return struct.pack("<I", len(payload) + 1) + bytes([t]) + payload

x = {
    "caps_auth_ok": [(0, xframe(1)), (1, xframe(2, b"\x0a\x0e\x0a\x03tls\x12\x07\x08\x07\x40\x01")),
                     (0, xframe(4, b"\x0a\x0cMYSQL41\x12\x00")), (1, xframe(3, b"\x0a\x14" + b"s" * 20)),
                     (0, xframe(5, b"\x0a\x1a\x00t\x00*" + b"a" * 40)), (1, xframe(11, b"\x08\x01")), (1, xframe(4, b""))],
    "caps_set_tls": [(0, xframe(2, b"\x0a\x0d\x0a\x0b\x0a\x03tls\x12\x04\x08\x07\x40\x01")), (1, xframe(0)), (0, b"\x16\x03\x01\x00\x02hi"), (1, b"\x16\x03\x03\x00\x02ok")],
    "auth_error": [(0, xframe(4, b"\x0a\x05PLAIN\x12\x05\x00t\x00t")), (1, xframe(1, b"\x08\x01\x10\x95\x08\x1a\x05" + b"denied" + b"\x22\x0528000"))],
    "close": [(0, xframe(3))],
    "bad": [(0, xframe(12, b"select 1"))],
}
for name, parts in x.items():
    out("handshake_x", name, chunks(parts))

def coldef(name):
    def lenenc(s): return bytes([len(s)]) + s
    return lenenc(b"def") + lenenc(b"") + lenenc(b"") + lenenc(b"") + lenenc(name) + lenenc(b"") + b"\x0c\x21\x00\x0b\x00\x00\x00\x03\x00\x00\x00\x00\x00"

EOF_OK = b"\xfe\x00\x00\x02\x00\x00\x00"
caps8 = struct.pack("<Q", CLI)
caps8_eof = struct.pack("<Q", CLI & ~DEPRECATE_EOF)
ex = {
    "query_rows": (caps8, [(0, pkt(0, b"\x03SELECT @@port")), (1, pkt(1, b"\x01") + pkt(2, coldef(b"@@port")) + pkt(3, b"\x043306") + pkt(4, EOF_OK))]),
    "query_rows_eof": (caps8_eof, [(0, pkt(0, b"\x03SELECT 1")), (1, pkt(1, b"\x01") + pkt(2, coldef(b"1")) + pkt(3, b"\xfe\x00\x00\x02\x00") + pkt(4, b"\x011") + pkt(5, b"\xfe\x00\x00\x02\x00"))]),
    "ping_begin_commit": (caps8, [(0, pkt(0, b"\x0e")), (1, pkt(1, OK)), (0, pkt(0, b"\x03BEGIN")), (1, pkt(1, b"\x00\x00\x00\x03\x00\x00\x00")), (0, pkt(0, b"\x03COMMIT")), (1, pkt(1, OK))]),
    "prepare_execute": (caps8, [(0, pkt(0, b"\x16SELECT ?")), (1, pkt(1, b"\x00\x01\x00\x00\x00\x01\x00\x01\x00\x00\x00") + pkt(2, coldef(b"?")) + pkt(3, coldef(b"?"))),
                                (0, pkt(0, b"\x17\x01\x00\x00\x00\x00\x01\x00\x00\x00\x00\x01\x08\x00\x05\x00\x00\x00\x00\x00\x00\x00")), (1, pkt(1, b"\x01") + pkt(2, coldef(b"?")) + pkt(3, b"\x00\x00\x05\x00\x00\x00\x00\x00\x00\x00") + pkt(4, EOF_OK))]),
    "error_quit": (caps8, [(0, pkt(0, b"\x03SELEC")), (1, pkt(1, b"\xff\x28\x04#42000You have an error")), (0, pkt(0, b"\x01"))]),
    "load_data_local": (caps8 , [(0, pkt(0, b"\x03LOAD DATA LOCAL INFILE 'x' INTO TABLE t")), (1, pkt(1, b"\xfbx")), (0, pkt(2, b"1\n2\n") + pkt(3, b"")), (1, pkt(4, OK))]),
    "big_row": (caps8, [(0, pkt(0, b"\x03SELECT REPEAT('a', 300)")), (1, pkt(1, b"\x01") + pkt(2, coldef(b"r")) + pkt(3, b"\xfc\x2c\x01" + b"a" * 300) + pkt(4, EOF_OK))]),
}
for name, (caps, parts) in ex.items():
    out("exchange", name, caps + chunks(parts))

for src, name in [("etc/mysqlrouter.conf", "etc"), ("etc/readconnroute.conf", "readconnroute"), ("packaging/mysqlrouter.conf", "packaged")]:
    p = os.path.join(ROOT, src)
    if os.path.exists(p):
        out("config", name, open(p, "rb").read())
out("config", "everything", b"""[DEFAULT]
logging_folder =
runtime_folder = /run/{name}
max_total_connections = 100
shutdown_timeout = 3
[logger]
level = debug
sinks = consolelog,filelog
[destination_status]
error_quarantine_threshold = 2
error_quarantine_interval = 5
[io]
threads = 2
[monitor]
user = m
password = p
interval = 1
ssl_mode = PREFERRED
[routing:rw]
bind_address = 127.0.0.1:6446
socket = /tmp/r.sock
destinations = a:3306,[::1]:3307,b
routing_strategy = first-available
role = PRIMARY
max_connections = 10
max_connect_errors = 3
client_connect_timeout = 4
connect_timeout = 2
net_buffer_length = 16384
[routing:x]
bind_port = 33060
protocol = x
destinations = 127.0.0.1:33061
routing_strategy = round-robin
client_ssl_mode = DISABLED
server_ssl_mode = PREFERRED
""")
for i, line in enumerate([
    b"-c\n/etc/mysqlrouter/mysqlrouter.conf",
    b"--config=/a.conf\n--extra-config\n/b.conf\n-a\n/c.conf",
    b"-V", b"--help", b"--version",
    b"-c\nx.conf\n--user\nmysqlrouter\n--pid-file\n/run/r.pid\n--core-file",
    b"-c\nx.conf\n--routing:rw.bind_port=1\n--DEFAULT.logging_folder=",
    b"--bootstrap\nroot@localhost:3306\n--directory\n/tmp/x",
    b"-c\nx.conf\n--logger.level\ndebug",
]):
    out("cli", f"args{i}", line)

# The monitoring HTTP layer. http_api: a configuration digit (0: all behind the realm,
# 1: also [http_server] require_realm, 2: swagger and metrics open), then the method,
# the path (with ?query) and header lines, one per line. http_raw: the digit, then the
# bytes of an HTTP/1.1 conversation.
import base64
GOOD = b"Authorization: Basic " + base64.b64encode(b"alice:pw")
BAD = b"Authorization: Basic " + base64.b64encode(b"alice:wrong")
API = b"/api/20190715"
http = {
    "routes": b"0GET\n" + API + b"/routes\n" + GOOD,
    "connections": b"0GET\n" + API + b"/routes/rw/connections\n" + GOOD,
    "escaped": b"0GET\n" + API + b"/routes/r%5F1/destinations\n" + GOOD,
    "status_slash": b"1GET\n" + API + b"/routes/ro/status/\n" + GOOD,
    "health": b"2GET\n" + API + b"/routes/r_1/health\n" + GOOD,
    "config": b"0GET\n" + API + b"/routes/ro/config\n" + GOOD,
    "blocked": b"0GET\n" + API + b"/routes/rw/blockedHosts\n" + GOOD,
    "routing_status": b"0GET\n" + API + b"/routing/status\n" + GOOD,
    "router_status_ims": b"0GET\n" + API + b"/router/status\n" + GOOD + b"\nIf-Modified-Since: Tue, 24 Nov 2026 15:55:19 GMT",
    "swagger_open": b"2GET\n" + API + b"/swagger.json\nIf-Modified-Since: Mon, 01 Jan 2001 00:00:00 GMT",
    "metrics": b"0GET\n/metrics?name[]=x\n" + GOOD,
    "pool_list": b"0GET\n" + API + b"/connection_pool\n" + GOOD,
    "pool_status": b"1GET\n" + API + b"/connection_pool/main/status\n" + GOOD,
    "pool_config": b"2GET\n" + API + b"/connection_pool/main/config/\n" + GOOD,
    "wrong_password": b"0GET\n" + API + b"/routes\n" + BAD,
    "bearer": b"1GET\n/elsewhere\nAuthorization: Bearer abc",
    "post_query": b"0POST\n" + API + b"/routes?x=1&y\n" + GOOD,
    # Regression: a 19-digit year overflowed the date arithmetic (src/http/time.rs).
    "ims_huge_year": b"0GET\n" + API + b"/router/status\n" + GOOD + b"\nIf-Modified-Since: Tue, 24 Nov 9223372036854775807 15:55:19 GMT",
}
for name, data in http.items():
    out("http_api", name, data)
raw = {
    "get": b"0GET " + API + b"/routes HTTP/1.1\r\nHost: x\r\n" + GOOD + b"\r\n\r\n",
    "pipelined": b"0GET " + API + b"/routes/rw/status HTTP/1.1\r\nHost: x\r\n" + GOOD + b"\r\n\r\nGET /metrics HTTP/1.1\r\nHost: x\r\n" + BAD + b"\r\n\r\n",
    "post_body": b"2POST " + API + b"/routes HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
    "chunked": b"2PUT /metrics HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    "http10": b"1GET /nope HTTP/1.0\r\n\r\n",
    "ims": b"2GET " + API + b"/swagger.json HTTP/1.1\r\nHost: x\r\nIf-Modified-Since: Fri, 01 Jan 2100 00:00:00 GMT\r\nConnection: close\r\n\r\n",
}
for name, data in raw.items():
    out("http_raw", name, data)

# Password files: hashes of "pw" made here (cheap work factors) and Oracle's
# mysqlrouter_passwd 9.7.4 hashes of "secret" (src/http/passwd.rs).
import warnings
warnings.filterwarnings("ignore", category=DeprecationWarning)
import crypt, hashlib
def ab64(b): return base64.b64encode(b).decode().rstrip("=").replace("+", ".")
salt = b"0123456789abcdef"
pbkdf2_256 = "$pbkdf2-sha256$7$%s$%s" % (ab64(salt), ab64(hashlib.pbkdf2_hmac("sha256", b"pw", salt, 7)))
pbkdf2_512 = "$pbkdf2-sha512$3$%s$%s" % (ab64(salt), ab64(hashlib.pbkdf2_hmac("sha512", b"pw", salt, 3)))
sha256 = crypt.crypt("pw", "$5$rounds=1000$saltsaltsaltsalt")
sha512 = crypt.crypt("pw", "$6$rounds=1000$saltsalt")
oracle = [
    "$5$CMYVtzTN/fBGshh9$VIQP11/xbpvjmJ0PY4HDkbv22rHp2VWcr47to/4Nqx8",
    "$pbkdf2-sha256$5000$.BrNWJ70AIXMs1FAvLX2xA$Acqn2EmeAa3AbqOIyin/0e0jj.X9ajZ9rpTGrtHu4n4",
    "$pbkdf2-sha512$1000$s2hraUlBauyv5XtGxOqakQ$/M/c68rnCjRyEQNCXlrKsC.IS11Z8aeeV4CEl9qmC0Pm55NrpS3hXCLyOh6D0GRt8.WkYGYxFSh1PW2ppUgiRw",
]
out("passwd", "ours", ("a:%s\nb:%s\nc:%s\nd:%s\n" % (pbkdf2_256, pbkdf2_512, sha256, sha512)).encode())
out("passwd", "oracle", "".join("u%d:%s\n" % (i, h) for i, h in enumerate(oracle)).encode())
out("passwd", "crlf_dup", ("a:%s\r\na:%s\r\nz:$1$unknown$x\r\n" % (pbkdf2_256, sha256)).encode())
out("passwd", "one", ("alice:%s" % pbkdf2_512).encode())
# Regression, found by the long run: `u1:\r` at the end parsed, rendered as `u1:\r\n`,
# and that no longer parsed (src/http/passwd.rs: lines end at \n only now).
out("passwd", "cr_at_eof", bytes.fromhex(
    "75303a243524434d5956747a544e2f66424773686839245649515031312f78620a613a243524726f756e64733d313030302473616c7473616c7473616c70766a6d4a30505934482f446b6276323272487032565763723437746f2f344e7178380a75313a0d"))
