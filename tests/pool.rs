//! Connection pooling through the binary: `[connection_pool]` and the route options as
//! MySQL Router 9.7.4 has them, and server connections of TLS sessions that end being
//! reset, parked and reused by later clients — with a real MariaDB (and MySQL 9.7) and
//! the real `mariadb` / 9.7 `mysql` CLIs. A reused connection is recognised by its
//! server thread id (`CONNECTION_ID()`), which the router cannot fake.

mod common;

use common::{free_port, tmp_dir, MariaDb, Router};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A self-signed certificate for the router's client hop.
fn cert() -> &'static (String, String) {
    static C: OnceLock<(String, String)> = OnceLock::new();
    C.get_or_init(|| common::pki::self_signed("pool-pki", &["rsa:2048"]))
}

fn server() -> &'static MariaDb {
    static S: OnceLock<MariaDb> = OnceLock::new();
    S.get_or_init(|| {
        let s = MariaDb::start_with(&["--max-allowed-packet=64M".into()]);
        admin(&s, "CREATE DATABASE IF NOT EXISTS pooltest; CREATE TABLE IF NOT EXISTS pooltest.k (x INT) ENGINE=InnoDB; \
             CREATE USER IF NOT EXISTS 'pb'@'%' IDENTIFIED BY 'pb'; GRANT ALL ON *.* TO 'pb'@'%';");
        s
    })
}

/// SQL as root over the server's socket.
fn admin(s: &MariaDb, sql: &str) -> String {
    let o = Command::new("mariadb")
        .args(["--no-defaults", "-uroot", "-S"])
        .arg(&s.socket)
        .args(["-N", "-B", "-e", sql])
        .output()
        .expect("mariadb client");
    assert!(
        o.status.success(),
        "admin {sql:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A terminating route (client hop TLS if the client asks, plain server hop) with a
/// pool; one I/O thread, so every session meets the same pool.
fn router(pool: &str) -> (Router, u16) {
    let (c, k) = cert();
    let port = free_port();
    let body = format!(
        "[io]\nthreads = 1\n\n[connection_pool]\n{pool}\n\n[routing:pool]\nbind_port = {port}\ndestinations = {}\nrouting_strategy = first-available\nclient_ssl_mode = PREFERRED\nclient_ssl_cert = {c}\nclient_ssl_key = {k}\nserver_ssl_mode = DISABLED\n",
        server().addr()
    );
    (Router::start_with(&body, &[port], "debug", &[]), port)
}

/// The `mariadb` CLI through the router as `user`/`pass`, TLS on or off, `--force` so
/// that one failing statement does not hide the others' output.
fn cli(port: u16, tls: bool, user: &str, pass: &str, sql: &str) -> Output {
    Command::new("mariadb")
        .args([
            "--no-defaults",
            "-h",
            "127.0.0.1",
            "-P",
            &port.to_string(),
            "--protocol=TCP",
        ])
        .arg(if tls { "--ssl" } else { "--skip-ssl" })
        .args([
            "--ssl-verify-server-cert=0",
            "-u",
            user,
            &format!("-p{pass}"),
        ])
        .args(["-N", "-B", "--force", "--connect-timeout=5", "-e", sql])
        .output()
        .expect("mariadb client")
}

fn out(o: &Output) -> String {
    assert!(
        o.status.success(),
        "client failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn conn_id(port: u16, tls: bool) -> u64 {
    out(&cli(port, tls, "t", "t", "SELECT CONNECTION_ID()"))
        .trim()
        .parse()
        .expect("a thread id")
}

/// Server threads of user `pb` (only the pool-limit test logs in as `pb`, so other
/// tests running at the same time do not count).
fn router_threads(s: &MariaDb) -> usize {
    admin(
        s,
        "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = 'pb'",
    )
    .trim()
    .parse()
    .unwrap()
}

/// The MySQL 9.7 tests of this binary take turns: each empties the server's
/// caching_sha2 cache (FLUSH PRIVILEGES) and expects what follows to need full
/// authentication, or not.
fn auth_cache_turn() -> std::sync::MutexGuard<'static, ()> {
    static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());
    TURN.lock().unwrap_or_else(|p| p.into_inner())
}

fn wait_until(max: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + max;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}

#[test]
fn a_reused_connection_carries_nothing_of_the_previous_client() {
    let (_r, port) = router("max_idle_server_connections = 4\nidle_timeout = 60");
    // Client A leaves every kind of session state behind.
    let a = out(&cli(
        port,
        true,
        "t",
        "t",
        "SELECT CONNECTION_ID(); SET @v = 42; USE pooltest; \
         CREATE TEMPORARY TABLE tmp_a (x INT); SET SESSION sql_mode = 'ANSI_QUOTES'; \
         SET SESSION wait_timeout = 77; SELECT GET_LOCK('pool_lock_a', 0); \
         START TRANSACTION; INSERT INTO k VALUES (1); SELECT 'left'",
    ));
    let a_id: u64 = a.lines().next().unwrap().trim().parse().unwrap();
    assert!(a.contains("left"), "{a}");
    // Client B gets A's server connection, in the state of a new session.
    let b = cli(
        port,
        true,
        "t",
        "t",
        "SELECT CONNECTION_ID(), @v IS NULL, DATABASE() IS NULL, \
         @@session.sql_mode = @@global.sql_mode, @@session.wait_timeout = @@global.wait_timeout, \
         IS_FREE_LOCK('pool_lock_a'), (SELECT COUNT(*) FROM pooltest.k), @@in_transaction; \
         SELECT * FROM pooltest.tmp_a",
    );
    let so = String::from_utf8_lossy(&b.stdout);
    let se = String::from_utf8_lossy(&b.stderr);
    assert_eq!(
        so.trim(),
        format!("{a_id}\t1\t1\t1\t1\t1\t0\t0"),
        "stderr: {se}"
    );
    assert!(
        se.contains("ERROR 1146") && se.contains("tmp_a"),
        "the temporary table survived: {se}"
    );
}

#[test]
fn wrong_passwords_on_a_pooled_connection_get_1045_and_no_session() {
    let (r, port) = router("max_idle_server_connections = 4\nidle_timeout = 60");
    let s = server();
    for (user, pass) in [("t", "wrong"), ("nosuchuser", "t")] {
        // Park one, so that this login meets a pooled connection.
        conn_id(port, true);
        let o = cli(port, true, user, pass, "SELECT 'got a session'");
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(
            !o.status.success(),
            "{user}/{pass} got in: {}",
            String::from_utf8_lossy(&o.stdout)
        );
        assert!(!String::from_utf8_lossy(&o.stdout).contains("got a session"));
        // The server's own verdict, as a direct login gets it.
        let direct = Command::new("mariadb")
            .args([
                "--no-defaults",
                "-h",
                "127.0.0.1",
                "-P",
                &s.port.to_string(),
                "--protocol=TCP",
            ])
            .args(["-u", user, &format!("-p{pass}"), "-e", "SELECT 1"])
            .output()
            .unwrap();
        let d = String::from_utf8_lossy(&direct.stderr);
        let code = |t: &str| t.split_whitespace().nth(1).unwrap_or_default().to_string();
        assert!(e.contains("(28000): Access denied"), "{e}");
        assert_eq!(code(&e), code(&d), "through the pool: {e}; direct: {d}");
        if user == "t" {
            assert!(e.contains("ERROR 1045 (28000)"), "{e}");
        }
    }
    // The right password still works, and the pool took part at all.
    let again = conn_id(port, true);
    assert_ne!(again, 0);
    assert!(
        r.log_text().contains("taking a pooled server connection"),
        "{}",
        r.log_text()
    );
}

#[test]
fn sessions_reuse_parked_connections_and_the_server_sees_no_new_ones() {
    let (r, port) = router("max_idle_server_connections = 4\nidle_timeout = 60");
    let first = conn_id(port, true);
    for _ in 0..5 {
        assert_eq!(conn_id(port, true), first, "log:\n{}", r.log_text());
    }
    assert!(r.log_text().contains("reusing a pooled server connection"));
}

/// TLS clients with protocol compression over the plain server hop: the router speaks
/// compression with them and none with the server, so their server connections are
/// plain classic sessions that park and are reused like any other (mysql_async, zlib).
#[test]
fn compressed_tls_sessions_reuse_parked_connections() {
    use mysql_async::prelude::Queryable;
    let (r, port) = router("max_idle_server_connections = 4\nidle_timeout = 60");
    let opts: mysql_async::Opts = mysql_async::OptsBuilder::from_opts(common::opts(port))
        .user(Some("pb"))
        .pass(Some("pb"))
        .ssl_opts(Some(
            mysql_async::SslOpts::default().with_danger_accept_invalid_certs(true),
        ))
        .compression(Some(mysql_async::Compression::default()))
        .into();
    let ids: Vec<(u64, usize)> = common::rt().block_on(async {
        let mut ids = Vec::new();
        for i in 0..6 {
            let mut c = mysql_async::Conn::new(opts.clone()).await.expect("login");
            let row: Option<(u64, String)> = c
                .query_first(format!("SELECT CONNECTION_ID(), REPEAT('c', {})", 1000 * i))
                .await
                .unwrap();
            let (id, s) = row.expect("a row");
            ids.push((id, s.len()));
            c.disconnect().await.unwrap();
        }
        ids
    });
    for (i, (_, n)) in ids.iter().enumerate() {
        assert_eq!(*n, 1000 * i);
    }
    // A quitting client's connection is parked after its reset, which may end just
    // after the next client arrived: two server connections at most for six sessions.
    let distinct: std::collections::HashSet<u64> = ids.iter().map(|(id, _)| *id).collect();
    assert!(distinct.len() <= 2, "{ids:?}\nlog:\n{}", r.log_text());
    assert!(r.log_text().contains("reusing a pooled server connection"));
}

/// MariaDB answers every COM_CHANGE_USER with the connection's own nonce, so a plain
/// client's token (sent in clear) could be replayed on a pooled connection: plain
/// clients get fresh connections and theirs are not parked. The pooled connection they
/// were greeted for is spared (they saw only a router-made nonce).
#[test]
fn mariadb_plain_clients_neither_get_nor_leave_a_pooled_connection() {
    let (_r, port) = router("max_idle_server_connections = 4\nidle_timeout = 60");
    let tls = conn_id(port, true);
    let plain = conn_id(port, false);
    assert_ne!(plain, tls);
    let plain2 = conn_id(port, false);
    assert_ne!(plain2, plain, "a plain session's connection was pooled");
    assert_ne!(plain2, tls);
    assert_eq!(
        conn_id(port, true),
        tls,
        "the parked connection was not spared"
    );
}

/// The greeting a client gets for a pooled connection carries a nonce the router made,
/// not the connection's (which MariaDB keeps for the connection's life).
#[test]
fn a_pooled_greeting_carries_a_router_nonce() {
    use std::io::Read;
    let (_r, port) = router("max_idle_server_connections = 4\nidle_timeout = 60");
    conn_id(port, true);
    let greeting = || {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut b = vec![0u8; 512];
        let n = s.read(&mut b).unwrap();
        b.truncate(n);
        let v = 5 + b[5..].iter().position(|&c| c == 0).unwrap() + 1;
        let id = u32::from_le_bytes(b[v..v + 4].try_into().unwrap());
        let nonce = [&b[v + 4..v + 12], &b[v + 31..v + 43]].concat();
        (id, nonce)
    };
    // Two greetings in a row for the same parked connection (the first client went
    // back unused)... The CLI's connection is parked after its reset, and a greeting
    // that came first was for a fresh connection, parked in turn: greet until two in a
    // row name the same connection (within 5 s).
    let deadline = Instant::now() + Duration::from_secs(5);
    let (mut id1, mut n1) = greeting();
    let (id2, n2) = loop {
        let (id2, n2) = greeting();
        if id2 == id1 {
            break (id2, n2);
        }
        assert!(
            Instant::now() < deadline,
            "never greeted twice for one parked connection (last ids {id1}, {id2})"
        );
        (id1, n1) = (id2, n2);
    };
    assert_eq!(id1, id2);
    // ...with different nonces, neither of them NUL.
    assert_ne!(n1, n2);
    assert!(n1.iter().chain(&n2).all(|&c| c != 0));
}

/// MySQL 9.7 answers every COM_CHANGE_USER with a new nonce: plain clients reuse
/// pooled connections too — caching_sha2 fast and full authentication (the client asks
/// for the server's RSA key), the server's 1045 for a wrong password, no state left.
#[test]
fn mysql97_plain_clients_reuse_pooled_connections() {
    use common::mysql97;
    let _turn = auth_cache_turn();
    let srv = mysql97::shared();
    // A plain server hop, and TLS towards the server.
    let (plain_hop, tls_hop) = (free_port(), free_port());
    let route = |name: &str, port: u16, server_mode: &str| {
        format!(
            "[routing:{name}]\nbind_port = {port}\ndestinations = {}\nrouting_strategy = first-available\n\
             client_ssl_mode = DISABLED\nserver_ssl_mode = {server_mode}\n\n",
            srv.addr()
        )
    };
    let body = format!(
        "[io]\nthreads = 1\n\n[connection_pool]\nmax_idle_server_connections = 4\nidle_timeout = 60\n\n{}{}",
        route("plain", plain_hop, "DISABLED"),
        route("tls", tls_hop, "REQUIRED")
    );
    let r = Router::start_with(&body, &[plain_hop, tls_hop], "debug", &[]);
    for port in [plain_hop, tls_hop] {
        let q = "SELECT CONNECTION_ID(), @v IS NULL, CURRENT_USER(); SET @v = 1";
        let run = || {
            mysql97::cli_result(&mysql97::cli(
                port,
                &["--ssl-mode=DISABLED", "--get-server-public-key"],
                q,
            ))
            .unwrap_or_else(|e| panic!("{e}\nlog:\n{}", r.log_text()))
        };
        let first = run();
        let id = first.split('\t').next().unwrap().to_string();
        assert!(first.trim_end().ends_with("\t1\tsha2@%"), "{first}");
        let second = run();
        assert_eq!(second, first, "not reused, or state leaked");
        // Full authentication (the server's cache emptied). Only over the plain server
        // hop: a plain client behind a TLS server hop asks for the RSA key while the
        // server expects the password in clear, and gets 1045 — on fresh connections
        // as well (a limit of the terminated handshake, not of the pool).
        if port == plain_hop {
            srv.admin("FLUSH PRIVILEGES");
            let third = run();
            assert!(third.starts_with(&format!("{id}\t1\t")), "{third}");
        }
        let bad = mysql97::cli_result(&mysql97::client(&[
            "-h",
            "127.0.0.1",
            "-P",
            &port.to_string(),
            "--protocol=TCP",
            "-u",
            mysql97::USER,
            "-pwrong",
            "--ssl-mode=DISABLED",
            "--get-server-public-key",
            "-e",
            "SELECT 1",
        ]));
        let e = bad.expect_err("a wrong password got a session");
        assert!(e.contains("ERROR 1045 (28000): Access denied"), "{e}");
        // A failed COM_CHANGE_USER costs that server connection; the next login works.
        assert!(run().trim_end().ends_with("\t1\tsha2@%"));
    }
    assert!(r.log_text().contains("reusing a pooled server connection"));
}

#[test]
fn a_pooled_connection_killed_by_the_server_is_never_handed_out() {
    let s = server();
    let (_r, port) = router("max_idle_server_connections = 4\nidle_timeout = 60");
    let parked = conn_id(port, true);
    admin(s, &format!("KILL {parked}"));
    // At once: the check when taking it, before the sweeper could notice.
    let next = out(&cli(port, true, "t", "t", "SELECT CONNECTION_ID(), 'ok'"));
    assert!(next.contains("\tok"), "{next}");
    assert!(
        !next.starts_with(&format!("{parked}\t")),
        "the killed connection was handed out"
    );
}

#[test]
fn the_pool_is_bounded_and_idle_connections_time_out() {
    let s = server();
    let (r, port) = router("max_idle_server_connections = 2\nidle_timeout = 2");
    let base = router_threads(s);
    // Five sessions at once, each keeping its connection for a moment.
    let clients: Vec<_> = (0..5)
        .map(|_| {
            std::thread::spawn(move || {
                out(&cli(
                    port,
                    true,
                    "pb",
                    "pb",
                    "SELECT SLEEP(0.5), CONNECTION_ID()",
                ))
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    // At most two stay parked (the others were closed politely).
    assert!(
        wait_until(Duration::from_secs(5), || router_threads(s) <= base + 2),
        "{} server connections after the clients left (pool max 2)",
        router_threads(s)
    );
    assert!(
        router_threads(s) > base,
        "nothing was parked; log:\n{}",
        r.log_text()
    );
    // idle_timeout = 2: gone within a few seconds.
    assert!(
        wait_until(Duration::from_secs(8), || router_threads(s) == base),
        "idle connections outlived idle_timeout: {}",
        router_threads(s) - base
    );
    assert!(r.log_text().contains("idle server connection(s)"));
}

#[test]
fn concurrent_sessions_never_see_each_others_state() {
    let (r, port) = router("max_idle_server_connections = 3\nidle_timeout = 60");
    let workers: Vec<_> = (0..6)
        .map(|w| {
            std::thread::spawn(move || {
                let mut ids = Vec::new();
                for i in 0..8 {
                    let tag = format!("w{w}i{i}");
                    let o = out(&cli(
                        port,
                        true,
                        "t",
                        "t",
                        &format!(
                            "SELECT @mine IS NULL, CONNECTION_ID(); SET @mine = '{tag}'; \
                             CREATE TEMPORARY TABLE pooltest.t_{tag} (x INT); SELECT @mine"
                        ),
                    ));
                    let mut lines = o.lines();
                    let first = lines.next().unwrap_or_default().to_string();
                    assert!(
                        first.starts_with("1\t"),
                        "{tag} saw someone's variable: {o}"
                    );
                    ids.push(first.split('\t').nth(1).unwrap().to_string());
                    assert_eq!(lines.next(), Some(tag.as_str()));
                }
                ids
            })
        })
        .collect();
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.join().unwrap());
    }
    let distinct: std::collections::HashSet<_> = all.iter().collect();
    assert!(
        distinct.len() < all.len(),
        "no connection was reused; log:\n{}",
        r.log_text()
    );
}

#[test]
fn options_as_mysql_router_9_7_4() {
    let run = |body: &str| -> (Option<i32>, String) {
        let dir = tmp_dir("pool-cfg");
        let path: PathBuf = dir.join("c.conf");
        std::fs::write(&path, format!("[DEFAULT]\nlogging_folder =\n{body}")).unwrap();
        let mut child = Command::new(common::router_bin())
            .arg("-c")
            .arg(&path)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let end = Instant::now() + Duration::from_secs(2);
        let code = loop {
            if let Ok(Some(st)) = child.try_wait() {
                break st.code();
            }
            if Instant::now() > end {
                let _ = child.kill();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let o = child.wait_with_output().unwrap();
        (code, String::from_utf8_lossy(&o.stderr).into_owned())
    };
    let port = free_port();
    let route = |extra: &str| {
        format!("[routing:a]\nbind_port = {port}\ndestinations = 127.0.0.1:1\nrouting_strategy = first-available\n{extra}\n")
    };
    for (pool, bad) in [
        ("max_idle_server_connections = -1", "option max_idle_server_connections in [connection_pool] needs value between 0 and 4294967295 inclusive, was '-1'"),
        ("max_idle_server_connections = 1.5", "option max_idle_server_connections in [connection_pool] needs value between 0 and 4294967295 inclusive, was '1.5'"),
        ("max_idle_server_connections = 4294967296", "option max_idle_server_connections in [connection_pool] needs value between 0 and 4294967295 inclusive, was '4294967296'"),
        ("idle_timeout = abc", "option idle_timeout in [connection_pool] needs value between 0 and 4294967295 inclusive, was 'abc'"),
    ] {
        let (code, err) = run(&format!("[connection_pool]\n{pool}\n{}", route("")));
        assert_eq!(code, Some(1), "{pool}: {err}");
        assert!(err.contains(&format!("Error: Configuration error: {bad}")), "{pool}: {err}");
    }
    for ok in [
        "max_idle_server_connections = 4294967295\nidle_timeout = 0",
        "max_idle_server_connections =\nidle_timeout =",
    ] {
        let (code, err) = run(&format!(
            "[connection_pool]\n{ok}\n{}",
            route("connection_sharing_delay =")
        ));
        assert_eq!(code, None, "{ok} was refused: {err}");
        assert!(!err.contains("not implemented"), "{err}");
    }
    let (_, err) = run(&route("connection_sharing = 1"));
    assert!(err.contains("routing_plugin WARNING") && err.contains("[routing:a].connection_sharing=1 has been ignored, as client_ssl_mode=PASSTHROUGH."), "{err}");
    let (c, k) = cert();
    let (_, err) = run(&route(&format!("connection_sharing = 1\nclient_ssl_mode = PREFERRED\nclient_ssl_cert = {c}\nclient_ssl_key = {k}\nserver_ssl_mode = AS_CLIENT")));
    assert!(err.contains("[routing:a].connection_sharing=1 has been ignored, as client_ssl_mode=PREFERRED and server_ssl_mode=AS_CLIENT."), "{err}");
    // Where sharing works, MySQL Router 9.7.4 says nothing (with or without a pool).
    for pool in ["", "[connection_pool]\nmax_idle_server_connections = 4\n"] {
        let (code, err) = run(&format!("{pool}{}", route(&format!("connection_sharing = 1\nclient_ssl_mode = PREFERRED\nclient_ssl_cert = {c}\nclient_ssl_key = {k}\nserver_ssl_mode = DISABLED"))));
        assert_eq!(code, None, "{err}");
        assert!(!err.contains("connection_sharing"), "{err}");
    }
    let (code, err) = run(&route("connection_sharing_delay = -1"));
    assert_eq!(code, Some(1));
    assert!(err.contains("option connection_sharing_delay in [routing:a] needs value between 0 and 1.79769e+308 inclusive, was '-1'"), "{err}");
}

/// MySQL 9.7: caching_sha2_password on a pooled connection — fast authentication,
/// full authentication after the server forgot its cache (the client's password over
/// its TLS hop, then TLS or the server's RSA key towards the server), wrong passwords.
#[test]
fn mysql97_caching_sha2_on_pooled_connections() {
    use common::mysql97;
    let _turn = auth_cache_turn();
    let srv = mysql97::shared();
    let (c, k) = cert();
    let (tls_hop, plain_hop) = (free_port(), free_port());
    let route = |name: &str, port: u16, server_mode: &str| {
        format!(
            "[routing:{name}]\nbind_port = {port}\ndestinations = {}\nrouting_strategy = first-available\nclient_ssl_mode = PREFERRED\nclient_ssl_cert = {c}\nclient_ssl_key = {k}\nserver_ssl_mode = {server_mode}\n\n",
            srv.addr()
        )
    };
    let body = format!(
        "[io]\nthreads = 1\n\n[connection_pool]\nmax_idle_server_connections = 4\nidle_timeout = 60\n\n{}{}",
        route("tls", tls_hop, "REQUIRED"),
        route("plain", plain_hop, "DISABLED")
    );
    let r = Router::start_with(&body, &[tls_hop, plain_hop], "debug", &[]);
    let q = "SELECT CONNECTION_ID(), @v IS NULL, CURRENT_USER(); SET @v = 1";
    for port in [tls_hop, plain_hop] {
        let run = || {
            mysql97::cli_result(&mysql97::cli(port, &["--ssl-mode=REQUIRED"], q))
                .unwrap_or_else(|e| panic!("port {port}: {e}\nlog:\n{}", r.log_text()))
        };
        let first = run();
        let id = first.split('\t').next().unwrap().to_string();
        assert!(first.trim_end().ends_with("\t1\tsha2@%"), "{first}");
        // Fast authentication on the parked connection.
        let second = run();
        assert_eq!(second, first, "not reused, or state leaked");
        // Full authentication: the server's cache is empty after FLUSH PRIVILEGES.
        srv.admin("FLUSH PRIVILEGES");
        let third = run();
        assert!(third.starts_with(&format!("{id}\t1\t")), "{third}");
        let bad = mysql97::cli_result(&mysql97::client(&[
            "-h",
            "127.0.0.1",
            "-P",
            &port.to_string(),
            "--protocol=TCP",
            "-u",
            mysql97::USER,
            "-pwrong",
            "--ssl-mode=REQUIRED",
            "-e",
            "SELECT 1",
        ]));
        let e = bad.expect_err("a wrong password got a session");
        assert!(e.contains("ERROR 1045 (28000): Access denied"), "{e}");
    }
    assert!(r.log_text().contains("reusing a pooled server connection"));
}

/// A route with `client_ssl_mode = DISABLED` (no client can use TLS there) neither
/// takes nor burns the connections another route to the same server parked.
#[test]
fn a_route_without_tls_leaves_the_pool_alone() {
    let (c, k) = cert();
    let (tls_port, plain_port) = (free_port(), free_port());
    let dest = server().addr();
    let body = format!(
        "[io]\nthreads = 1\n\n[connection_pool]\nmax_idle_server_connections = 4\nidle_timeout = 60\n\n\
         [routing:tls]\nbind_port = {tls_port}\ndestinations = {dest}\nrouting_strategy = first-available\n\
         client_ssl_mode = PREFERRED\nclient_ssl_cert = {c}\nclient_ssl_key = {k}\nserver_ssl_mode = DISABLED\n\n\
         [routing:plain]\nbind_port = {plain_port}\ndestinations = {dest}\nrouting_strategy = first-available\n\
         client_ssl_mode = DISABLED\nserver_ssl_mode = DISABLED\n"
    );
    let _r = Router::start_with(&body, &[tls_port, plain_port], "debug", &[]);
    let parked = conn_id(tls_port, true);
    let plain = conn_id(plain_port, false);
    assert_ne!(plain, parked);
    assert_eq!(
        conn_id(tls_port, true),
        parked,
        "the DISABLED route burned the parked connection"
    );
}

/// The relay that parks follows responses of many packets (a 20 MiB row: two packets of
/// 16 MiB framing) and errors to their end: the client gets every
/// byte, and the connection is parked and reused afterwards.
#[test]
fn big_rows_and_errors_reach_the_client_whole_and_the_connection_is_reused() {
    let (_r, port) = router("max_idle_server_connections = 4\nidle_timeout = 60");
    let o = Command::new("mariadb")
        .args([
            "--no-defaults",
            "-h",
            "127.0.0.1",
            "-P",
            &port.to_string(),
            "--protocol=TCP",
        ])
        .args([
            "--ssl",
            "--ssl-verify-server-cert=0",
            "-u",
            "t",
            "-pt",
            "-N",
            "-B",
            "--force",
        ])
        .args(["--max-allowed-packet=64M", "--connect-timeout=5", "-e"])
        .arg(
            "SELECT CONNECTION_ID(); SELECT REPEAT('ab', 10485760); SELECT 1; \
             SELECT * FROM no_such_db.t",
        )
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    let lines: Vec<&str> = text.lines().collect();
    let lens: Vec<usize> = lines.iter().map(|l| l.len()).collect();
    assert_eq!(
        lines.len(),
        3,
        "line lengths {lens:?}; stderr: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let id: u64 = lines[0].trim().parse().unwrap();
    assert!(
        lines[1] == "ab".repeat(10485760),
        "the 20 MiB row arrived damaged"
    );
    assert_eq!(lines[2], "1");
    assert!(String::from_utf8_lossy(&o.stderr).contains("ERROR 1146"));
    assert_eq!(conn_id(port, true), id, "not parked after the big response");
}

/// `/connection_pool/main/status|config` and `/metrics` tell the pool's state as the
/// server sees it: after N TLS sessions quit, N idle server connections (the server's
/// processlist agrees); a reuse takes one; after `idle_timeout`, none.
#[test]
fn rest_api_and_metrics_show_the_pool_as_the_server_sees_it() {
    use common::http::{curl, passwd_file};
    let s = server();
    admin(
        s,
        "CREATE USER IF NOT EXISTS 'pr'@'%' IDENTIFIED BY 'pr'; GRANT ALL ON *.* TO 'pr'@'%';",
    );
    let (c, k) = cert();
    let dir = tmp_dir("pool-rest");
    let passwd = passwd_file(&dir, "alice", "secret");
    let (port, http) = (free_port(), free_port());
    let body = format!(
        "[io]\nthreads = 1\n\n[connection_pool]\nmax_idle_server_connections = 8\nidle_timeout = 3\n\n\
         [routing:pool]\nbind_port = {port}\ndestinations = {}\nrouting_strategy = first-available\n\
         client_ssl_mode = PREFERRED\nclient_ssl_cert = {c}\nclient_ssl_key = {k}\nserver_ssl_mode = DISABLED\n\n\
         [http_server]\nport={http}\nbind_address=127.0.0.1\n\n\
         [http_auth_realm:r]\nbackend=b\nmethod=basic\nname=Some Realm\n\n\
         [http_auth_backend:b]\nbackend=file\nfilename={}\n\n\
         [rest_connection_pool]\nrequire_realm=r\n\n[metrics]\n",
        s.addr(),
        passwd.display()
    );
    let r = Router::start_with(&body, &[port], "debug", &[]);
    let api = format!("http://127.0.0.1:{http}/api/20190715");
    let get = |path: &str| {
        let a = curl(&["-u", "alice:secret"], &format!("{api}{path}")).expect("curl");
        (a.status, a.body)
    };
    let metric = |name: &str| -> u64 {
        let a = curl(&[], &format!("http://127.0.0.1:{http}/metrics")).expect("curl");
        a.body
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} not in:\n{}", a.body))
            .trim()
            .parse()
            .unwrap()
    };
    let status =
        |idle: usize| format!(r#"{{"idleServerConnections":{idle},"stashedServerConnections":0}}"#);
    let pr_threads = || -> usize {
        admin(
            s,
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = 'pr'",
        )
        .trim()
        .parse()
        .unwrap()
    };
    assert_eq!(
        get("/connection_pool"),
        (200, r#"{"items":[{"name":"main"}]}"#.into())
    );
    assert_eq!(
        get("/connection_pool/main/config"),
        (
            200,
            r#"{"maxIdleServerConnections":8,"idleTimeoutInMs":3000}"#.into()
        )
    );
    assert_eq!(get("/connection_pool/main/status"), (200, status(0)));
    assert_eq!(get("/connection_pool/other/status").0, 404);
    assert_eq!(
        curl(&[], &format!("{api}/connection_pool/main/status"))
            .unwrap()
            .status,
        401
    );

    // Five TLS sessions at once, so five server connections; all quit.
    let n = 5;
    let clients: Vec<_> = (0..n)
        .map(|_| {
            std::thread::spawn(move || {
                out(&cli(
                    port,
                    true,
                    "pr",
                    "pr",
                    "SELECT SLEEP(0.5), CONNECTION_ID()",
                ))
            })
        })
        .collect();
    let ids: std::collections::BTreeSet<String> =
        clients.into_iter().map(|c| c.join().unwrap()).collect();
    assert_eq!(ids.len(), n, "{ids:?}");
    assert!(
        wait_until(Duration::from_secs(10), || get(
            "/connection_pool/main/status"
        )
        .1 == status(n)),
        "{:?}; log:\n{}",
        get("/connection_pool/main/status"),
        r.log_text()
    );
    assert_eq!(pr_threads(), n, "the server's view of the idle connections");
    assert_eq!(
        metric("mysqlrouter_connection_pool_idle_server_connections"),
        n as u64
    );
    assert_eq!(metric("mysqlrouter_connection_pool_parked_total"), n as u64);
    assert_eq!(metric("mysqlrouter_connection_pool_opened_total"), n as u64);
    assert_eq!(metric("mysqlrouter_connection_pool_reused_total"), 0);

    // One reuse: the client runs on a parked connection (its id is one of them),
    // then parks it again.
    let again = out(&cli(port, true, "pr", "pr", "SELECT CONNECTION_ID()"));
    assert!(
        ids.iter().any(|i| i.contains(again.trim())),
        "{again} not in {ids:?}"
    );
    assert!(wait_until(Duration::from_secs(5), || get(
        "/connection_pool/main/status"
    )
    .1 == status(n)));
    assert_eq!(metric("mysqlrouter_connection_pool_reused_total"), 1);
    assert_eq!(
        metric("mysqlrouter_connection_pool_parked_total"),
        n as u64 + 1
    );
    assert_eq!(pr_threads(), n);

    // idle_timeout = 3 s: the pool empties, and the server sees them go.
    assert!(
        wait_until(Duration::from_secs(12), || get(
            "/connection_pool/main/status"
        )
        .1 == status(0)),
        "{:?}",
        get("/connection_pool/main/status")
    );
    assert!(wait_until(Duration::from_secs(5), || pr_threads() == 0));
    assert_eq!(
        metric("mysqlrouter_connection_pool_idle_server_connections"),
        0
    );
    assert_eq!(
        metric("mysqlrouter_connection_pool_dropped_total"),
        n as u64
    );
}
