//! MySQL 9.7.4 behind the router, with real clients: the 9.7 `mysql` CLI, PyMySQL,
//! mysql-connector-python, mysqlx-connector-python (X DevAPI) and mysql_async (plain,
//! TLS via rustls, zlib compression).
//! caching_sha2_password (full and fast authentication, TLS, the server's RSA key),
//! protocol compression, the X protocol, load, and what `max_connect_errors` counts.
//!
//! One server for the whole binary (`common::mysql97::shared`). Its
//! caching_sha2_password cache is shared state: tests that empty it (FLUSH PRIVILEGES)
//! hold [`AUTH_CACHE`] for writing, every other test holds it for reading and logs in
//! over TLS (or with the server's RSA key) at least once, so a cached entry exists.

mod common;

use std::process::Command;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use common::mysql97::{self, cli, cli_result, shared, Mysql97};
use common::{free_port, Router};

static AUTH_CACHE: RwLock<()> = RwLock::new(());

fn cache_reader() -> RwLockReadGuard<'static, ()> {
    AUTH_CACHE.read().unwrap_or_else(|e| e.into_inner())
}

fn cache_writer() -> RwLockWriteGuard<'static, ()> {
    AUTH_CACHE.write().unwrap_or_else(|e| e.into_inner())
}

/// The server, with its own `max_connect_errors` out of the way: the router connects
/// from 127.0.0.1 for every client, and the tests below make clients fail on purpose.
fn server() -> &'static Mysql97 {
    static INIT: std::sync::Once = std::sync::Once::new();
    let s = shared();
    INIT.call_once(|| {
        s.admin("SET GLOBAL max_connect_errors = 1000000000");
    });
    s
}

/// Empties the server's caching_sha2_password cache, as after a restart.
fn flush_auth_cache(s: &Mysql97) {
    s.admin("FLUSH PRIVILEGES");
}

fn route(name: &str, port: u16, dest: &str, extra: &str) -> String {
    format!(
        "[routing:{name}]\nbind_address = 127.0.0.1\nbind_port = {port}\ndestinations = {dest}\nrouting_strategy = first-available\n{extra}\n"
    )
}

/// A router with one classic route to the shared server; returns it and its port.
fn classic_router(extra: &str) -> (Router, u16) {
    let port = free_port();
    let r = Router::start(&route("my97", port, &server().addr(), extra), &[port]);
    (r, port)
}

fn x_router(extra: &str) -> (Router, u16) {
    let port = free_port();
    let body = route(
        "x97",
        port,
        &server().xaddr(),
        &format!("protocol = x\n{extra}"),
    );
    (Router::start(&body, &[port]), port)
}

const TLS: &[&str] = &["--ssl-mode=REQUIRED"];
const PLAIN: &[&str] = &["--ssl-mode=DISABLED"];
const PLAIN_RSA: &[&str] = &["--ssl-mode=DISABLED", "--get-server-public-key"];
const SSL_CIPHER: &str = "SHOW SESSION STATUS LIKE 'Ssl_cipher'";

/// The `Ssl_cipher` value the CLI printed ("" for none).
fn cipher(out: &str) -> String {
    out.trim()
        .strip_prefix("Ssl_cipher")
        .unwrap_or("?")
        .trim()
        .to_string()
}

fn assert_not_counted(r: &Router) {
    let log = r.log_text();
    assert!(
        !log.contains("incrementing error counter") && !log.contains("blocking client host"),
        "a handshake error was counted:\n{log}"
    );
}

/// Fields of a classic greeting (protocol 10), without the connection id and the
/// scramble, which differ per connection.
fn greeting_fields(g: &[u8]) -> Vec<Vec<u8>> {
    assert!(
        g.len() > 4 && g[4] == 10,
        "not a protocol-10 greeting: {g:02x?}"
    );
    let p = &g[4..];
    let vend = p.iter().position(|b| *b == 0).expect("version NUL");
    let version = p[1..vend].to_vec();
    let rest = &p[vend + 1..];
    // conn id (4), scramble part 1 (8), filler (1), caps low (2), charset (1),
    // status (2), caps high (2), auth data length (1), reserved (10), scramble part 2
    // (max(13, len - 8)), plugin name.
    let fixed = rest[12..31].to_vec();
    let auth_len = rest[20] as usize;
    let part2 = 13.max(auth_len.saturating_sub(8));
    let plugin = rest[31 + part2..].to_vec();
    vec![g[..4].to_vec(), version, fixed, plugin]
}

#[test]
fn greeting_is_the_servers_own() {
    let _c = cache_reader();
    let s = server();
    let (_r, port) = classic_router("");
    let direct = common::greeting(s.port).expect("server greeting");
    let routed = common::greeting(port).expect("greeting through the router");
    assert_eq!(direct.len(), routed.len(), "{direct:02x?}\n{routed:02x?}");
    assert_eq!(greeting_fields(&direct), greeting_fields(&routed));
    assert!(String::from_utf8_lossy(&greeting_fields(&routed)[1]).starts_with("9.7.4"));
    // The client's view: the version the server reports, not a router's own.
    let v = cli_result(&cli(port, TLS, "SELECT VERSION()")).unwrap();
    assert!(v.starts_with("9.7.4"), "{v}");

    // X protocol: the server speaks first too (a hello notice); the same bytes arrive.
    let (_rx, xport) = x_router("");
    let x_direct = common::greeting(s.xport).expect("X server hello");
    assert_eq!(x_direct[4], 11, "a notice frame: {x_direct:02x?}");
    assert_eq!(common::greeting(xport), Some(x_direct));
}

#[test]
fn caching_sha2_full_then_fast_auth_over_tls() {
    let _c = cache_writer();
    let s = server();
    let (r, port) = classic_router("max_connect_errors = 1");
    flush_auth_cache(s);
    // The cache is empty: a plain-TCP login without the key is refused (2061)...
    let e = cli_result(&cli(port, PLAIN, "SELECT 1")).unwrap_err();
    assert!(e.contains("ERROR 2061"), "{e}");
    // ... full authentication over TLS works and fills the cache ...
    let out = cli_result(&cli(port, TLS, SSL_CIPHER)).unwrap();
    assert!(!cipher(&out).is_empty(), "no TLS: {out}");
    // ... after which fast authentication works, on plain TCP too, and over TLS again.
    let out = cli_result(&cli(port, PLAIN, SSL_CIPHER)).unwrap();
    assert_eq!(cipher(&out), "", "{out}");
    let out = cli_result(&cli(port, TLS, SSL_CIPHER)).unwrap();
    assert!(!cipher(&out).is_empty(), "no TLS: {out}");
    assert_not_counted(&r);
}

#[test]
fn caching_sha2_full_auth_over_plain_tcp_with_the_servers_rsa_key() {
    let _c = cache_writer();
    let s = server();
    let (r, port) = classic_router("max_connect_errors = 1");
    flush_auth_cache(s);
    let out = cli_result(&cli(
        port,
        PLAIN_RSA,
        &format!("{SSL_CIPHER}; SELECT CURRENT_USER()"),
    ))
    .unwrap();
    assert_eq!(out, "Ssl_cipher\t\nsha2@%\n");
    assert_not_counted(&r);
}

/// The defect of issue 10: with the server's auth cache empty, a client on plain TCP
/// without the server's key gets the full-authentication request and gives up (2061).
/// That must reach the client untouched and never block its host.
#[test]
fn refused_full_auth_is_passed_through_and_not_counted() {
    let _c = cache_writer();
    let s = server();
    let (r, port) = classic_router("max_connect_errors = 3");
    flush_auth_cache(s);
    let direct = cli_result(&cli(s.port, PLAIN, "SELECT 1")).unwrap_err();
    assert!(
        direct.contains("ERROR 2061 (HY000): Authentication plugin 'caching_sha2_password' reported error: Authentication requires secure connection."),
        "{direct}"
    );
    for i in 0..5 {
        let routed = cli_result(&cli(port, PLAIN, "SELECT 1")).unwrap_err();
        assert_eq!(routed, direct, "attempt {i}");
    }
    let out = cli_result(&cli(port, TLS, "SELECT CURRENT_USER()")).unwrap();
    assert_eq!(out, "sha2@%\n");
    assert_not_counted(&r);

    // What the README calls bad is still counted: partial handshakes block at 3.
    for _ in 0..3 {
        let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut g = [0u8; 256];
        let _ = std::io::Read::read(&mut c, &mut g);
        // The start of a HandshakeResponse41 (header says 64 bytes), then close.
        std::io::Write::write_all(&mut c, &[64, 0, 0, 1, 0x0d, 0xa2, 0x0b, 0x00]).unwrap();
    }
    assert!(
        r.wait_log("blocking client host", Duration::from_secs(5)),
        "{}",
        r.log_text()
    );
    let e = cli_result(&cli(port, TLS, "SELECT 1")).unwrap_err();
    assert!(
        e.contains("1129") && e.contains("Too many connection errors"),
        "{e}"
    );
}

/// The X protocol's form of the defect: a client that learns the server's capabilities
/// and then refuses to send a password on an unencrypted connection.
#[test]
fn x_client_refusing_plain_auth_is_not_counted() {
    let _c = cache_reader();
    let (r, port) = x_router("max_connect_errors = 3");
    let want = r#"{"error": -1, "msg": "PLAIN authentication is not allowed via unencrypted connection", "type": "InterfaceError"}"#;
    for i in 0..5 {
        let out = py(&["xlogin", &port.to_string(), "disabled", "plain"]);
        assert_eq!(out.trim(), want, "attempt {i}");
    }
    let out = py(&["xlogin", &port.to_string(), "required", "plain"]);
    assert_eq!(out.trim(), r#"{"ok": true}"#);
    assert_not_counted(&r);
}

#[test]
fn wrong_passwords_are_never_counted() {
    let _c = cache_reader();
    let (r, port) = classic_router("max_connect_errors = 2");
    for extra in [TLS, PLAIN_RSA, TLS, PLAIN_RSA, TLS] {
        let mut args = extra.to_vec();
        args.push("--password=wrong");
        let e = cli_result(&cli(port, &args, "SELECT 1")).unwrap_err();
        assert!(
            e.contains("ERROR 1045 (28000): Access denied for user 'sha2'@'localhost' (using password: YES)"),
            "{extra:?}: {e}"
        );
    }
    assert_eq!(cli_result(&cli(port, TLS, "SELECT 1")).unwrap(), "1\n");
    assert_not_counted(&r);
}

/// About 1.1 MB of distinct rows (needs `cte_max_recursion_depth` ≥ 16000).
const BIG_SELECT: &str =
    "WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < 16000) \
    SELECT n, SHA2(n, 256), REPEAT('x', n % 7) FROM s";

#[test]
fn compression_zlib_and_zstd_results_are_byte_identical() {
    let _c = cache_reader();
    let s = server();
    let (r, port) = classic_router("max_connect_errors = 1");
    for algo in ["zlib", "zstd"] {
        let comp = format!("--compression-algorithms={algo}");
        let sql = format!(
            "SHOW SESSION STATUS LIKE 'Compression_algorithm'; \
             SET SESSION cte_max_recursion_depth = 20000; {BIG_SELECT}"
        );
        for ssl in [TLS, PLAIN_RSA] {
            let mut args = ssl.to_vec();
            args.push(&comp);
            let direct = cli_result(&cli(s.port, &args, &sql)).unwrap();
            let routed = cli_result(&cli(port, &args, &sql)).unwrap();
            assert!(
                routed.starts_with(&format!("Compression_algorithm\t{algo}\n")),
                "{}",
                &routed[..80.min(routed.len())]
            );
            assert!(routed.len() > 1_000_000, "{} bytes", routed.len());
            assert!(direct == routed, "{algo} {ssl:?}: results differ");
        }
    }
    // mysql_async (zlib) through the router, the same rows as directly.
    let rt = common::rt();
    let rows = |p: u16| {
        rt.block_on(async move {
            use mysql_async::prelude::Queryable;
            let opts = mysql_async::OptsBuilder::default()
                .ip_or_hostname("127.0.0.1")
                .tcp_port(p)
                .user(Some(mysql97::USER))
                .pass(Some(mysql97::PASS))
                .prefer_socket(false)
                .compression(mysql_async::Compression::default());
            let mut c = mysql_async::Conn::new(opts)
                .await
                .expect("mysql_async connect");
            let algo: Option<(String, String)> = c
                .query_first("SHOW SESSION STATUS LIKE 'Compression_algorithm'")
                .await
                .unwrap();
            c.query_drop("SET SESSION cte_max_recursion_depth = 20000")
                .await
                .unwrap();
            let rows: Vec<(u32, String, String)> = c.query(BIG_SELECT).await.unwrap();
            c.disconnect().await.unwrap();
            (algo, rows)
        })
    };
    let (algo, routed) = rows(port);
    assert_eq!(algo.map(|a| a.1).as_deref(), Some("zlib"));
    assert_eq!(routed.len(), 16000);
    assert!(rows(s.port).1 == routed, "mysql_async: results differ");
    assert_not_counted(&r);
}

/// Runs tests/py/mysql97_clients.py with Debian's python3; its stdout.
fn py(args: &[&str]) -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/mysql97_clients.py");
    let out = Command::new("/usr/bin/python3")
        .arg(script)
        .args(args)
        .output()
        .expect("/usr/bin/python3 (apt-get install python3)");
    assert!(
        out.status.success(),
        "python3 {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn python_clients_see_what_a_direct_connection_sees() {
    let _c = cache_reader();
    let s = server();
    let (r, port) = classic_router("max_connect_errors = 1");
    // A TLS login fills the auth cache for the plain-TCP runs.
    cli_result(&cli(port, TLS, "SELECT 1")).unwrap();
    let sqls = [
        "SELECT 1, 'é', NULL, 1.5, CAST('2026-11-24 10:00:00' AS DATETIME)",
        "SELECT @@version, CURRENT_USER()",
        "SELECT * FROM no_such_schema.t",
        "SELEC 1",
        "SELECT JSON_OBJECT('a', 1)",
    ];
    for lib in ["pymysql", "connector"] {
        for ssl in ["1", "0"] {
            let run = |p: u16| {
                let p = p.to_string();
                let mut a = vec![lib, &p, ssl];
                a.extend_from_slice(&sqls);
                py(&a)
            };
            let routed = run(port);
            assert_eq!(routed, run(s.port), "{lib} ssl={ssl}");
            assert_eq!(routed.lines().count(), sqls.len());
            assert!(routed.contains("\"error\": 1064"), "{routed}");
        }
    }
    assert_not_counted(&r);
}

#[test]
fn x_protocol_sql_and_document_store() {
    let _c = cache_reader();
    let s = server();
    let (r, port) = x_router("max_connect_errors = 1");
    // An X login over TLS fills the X plugin's cache for the unencrypted runs.
    let login = py(&["xlogin", &port.to_string(), "required", "plain"]);
    assert_eq!(login.trim(), r#"{"ok": true}"#);
    for (n, ssl, comp) in [
        (0, "required", "disabled"),
        (1, "required", "required"),
        (2, "disabled", "disabled"),
        (3, "disabled", "required"),
    ] {
        let routed = py(&[
            "xsession",
            &port.to_string(),
            ssl,
            comp,
            &format!("i10_x{n}_r"),
        ]);
        let direct = py(&[
            "xsession",
            &s.xport.to_string(),
            ssl,
            comp,
            &format!("i10_x{n}_d"),
        ]);
        assert_eq!(routed, direct, "ssl={ssl} compression={comp}");
        let status = routed.lines().next().unwrap_or("");
        let tls_on = ssl == "required";
        assert!(
            status.contains(&format!(
                "\"Mysqlx_ssl_active\", \"{}\"",
                if tls_on { "ON" } else { "OFF" }
            )),
            "{status}"
        );
        let compressed = !status.contains("[\"Mysqlx_compression_algorithm\", \"\"]");
        assert_eq!(compressed, comp == "required", "{status}");
        assert!(routed.contains(r#"{"found": [{"_id": "2", "n": 2, "name": "bob"}, {"_id": "3", "n": 3, "name": "eve"}]}"#), "{routed}");
    }
    assert_not_counted(&r);
}

#[test]
fn hundred_concurrent_clients_fifty_queries_each() {
    let _c = cache_reader();
    let (r, port) = classic_router("max_connect_errors = 1");
    cli_result(&cli(port, TLS, "SELECT 1")).unwrap();
    common::raise_fd_limit();
    let rt = common::rt();
    let failures = rt.block_on(async move {
        let mut tasks = Vec::new();
        for client in 0..100u32 {
            tasks.push(tokio::spawn(async move {
                use mysql_async::prelude::Queryable;
                // Every other client over TLS (the server's self-signed certificate).
                let tls = client % 2 == 0;
                let ssl = mysql_async::SslOpts::default()
                    .with_danger_accept_invalid_certs(true)
                    .with_danger_skip_domain_validation(true);
                let opts = mysql_async::OptsBuilder::default()
                    .ip_or_hostname("127.0.0.1")
                    .tcp_port(port)
                    .user(Some(mysql97::USER))
                    .pass(Some(mysql97::PASS))
                    .prefer_socket(false)
                    .ssl_opts(tls.then_some(ssl));
                let mut c = mysql_async::Conn::new(opts)
                    .await
                    .map_err(|e| e.to_string())?;
                let cipher: Option<(String, String)> = c
                    .query_first("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
                    .await
                    .map_err(|e| e.to_string())?;
                let cipher = cipher.map(|c| c.1).unwrap_or_default();
                if cipher.is_empty() == tls {
                    return Err(format!(
                        "client {client}: tls={tls} but Ssl_cipher={cipher:?}"
                    ));
                }
                for q in 0..50u32 {
                    let got: Option<u32> = c
                        .query_first(format!("SELECT {client} * 1000 + {q}"))
                        .await
                        .map_err(|e| e.to_string())?;
                    if got != Some(client * 1000 + q) {
                        return Err(format!("client {client} query {q}: {got:?}"));
                    }
                }
                c.disconnect().await.map_err(|e| e.to_string())
            }));
        }
        let mut failures = Vec::new();
        for t in tasks {
            match tokio::time::timeout(Duration::from_secs(120), t).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => failures.push(e),
                Ok(Err(e)) => failures.push(e.to_string()),
                Err(_) => failures.push("timeout".into()),
            }
        }
        failures
    });
    assert!(
        failures.is_empty(),
        "{} of 100 clients failed: {:?}",
        failures.len(),
        failures
    );
    assert_not_counted(&r);
}
