//! TLS termination (`client_ssl_mode` / `server_ssl_mode`) through the binary, with
//! real servers (MariaDB with TLS certificates made here by openssl, one without TLS,
//! MySQL 9.7 from ../shared/lab) and real clients (the `mariadb` CLI, the 9.7 `mysql`
//! CLI, mysql_async over rustls).

mod common;

use common::{free_port, tmp_dir, MariaDb, Router};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Duration;

/// A CA and a server certificate for `localhost` only (no IP SAN), made by openssl.
struct Pki {
    dir: PathBuf,
}

impl Pki {
    fn path(&self, f: &str) -> String {
        self.dir.join(f).display().to_string()
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl (apt-get install openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn pki() -> &'static Pki {
    static P: OnceLock<Pki> = OnceLock::new();
    P.get_or_init(|| {
        let dir = tmp_dir("pki");
        let subj = |cn: &str| format!("/CN={cn}");
        for (ca, key) in [
            ("ca.pem", "ca-key.pem"),
            ("other-ca.pem", "other-ca-key.pem"),
        ] {
            openssl(
                &dir,
                &[
                    "req",
                    "-x509",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-keyout",
                    key,
                    "-out",
                    ca,
                    "-days",
                    "30",
                    "-subj",
                    &subj(ca),
                ],
            );
        }
        openssl(
            &dir,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "server-key.pem",
                "-out",
                "server.csr",
                "-subj",
                "/CN=localhost",
            ],
        );
        std::fs::write(dir.join("ext.cnf"), "subjectAltName=DNS:localhost\n").unwrap();
        openssl(
            &dir,
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca-key.pem",
                "-CAcreateserial",
                "-out",
                "server-cert.pem",
                "-days",
                "30",
                "-extfile",
                "ext.cnf",
            ],
        );
        // mariadbd runs as mysql and must read them.
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let _ = std::fs::set_permissions(
                e.path(),
                std::os::unix::fs::PermissionsExt::from_mode(0o644),
            );
        }
        Pki { dir }
    })
}

/// A MariaDB server with TLS (the certificate above).
fn tls_server() -> &'static MariaDb {
    static S: OnceLock<MariaDb> = OnceLock::new();
    S.get_or_init(|| {
        let p = pki();
        MariaDb::start_with(&[
            format!("--ssl-cert={}", p.path("server-cert.pem")),
            format!("--ssl-key={}", p.path("server-key.pem")),
            format!("--ssl-ca={}", p.path("ca.pem")),
            "--max-allowed-packet=64M".into(),
        ])
    })
}

/// A MariaDB server without TLS (Debian's package has no certificates).
fn plain_server() -> &'static MariaDb {
    static S: OnceLock<MariaDb> = OnceLock::new();
    S.get_or_init(MariaDb::start)
}

fn route(name: &str, port: u16, dest: &str, extra: &str) -> String {
    format!(
        "[routing:{name}]\nbind_port = {port}\ndestinations = {dest}\nrouting_strategy = first-available\n{extra}\n"
    )
}

/// A route that terminates TLS with the test certificate, plus `extra` options.
fn tls_route(name: &str, port: u16, dest: &str, extra: &str) -> String {
    route(name, port, dest, &format!("{}{extra}", cert_opts()))
}

fn cert_opts() -> String {
    let p = pki();
    format!(
        "client_ssl_cert = {}\nclient_ssl_key = {}\n",
        p.path("server-cert.pem"),
        p.path("server-key.pem")
    )
}

/// Runs the `mariadb` CLI against 127.0.0.1:port with extra args and SQL.
fn mariadb(port: u16, args: &[&str], sql: &str) -> Output {
    Command::new("mariadb")
        .args(["--no-defaults", "-h", "127.0.0.1", "-P", &port.to_string()])
        .args([
            "--protocol=TCP",
            "-u",
            "t",
            "-pt",
            "-N",
            "-B",
            "--connect-timeout=20",
        ])
        .args(args)
        .args(["-e", sql])
        .output()
        .expect("mariadb client")
}

fn ok_text(o: &Output) -> String {
    assert!(
        o.status.success(),
        "client failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The server's view (`Ssl_cipher` of the session) and the client's (`\s`).
fn ciphers(port: u16, client_ssl: bool) -> Result<(String, String), String> {
    let flag = if client_ssl { "--ssl" } else { "--skip-ssl" };
    let o = mariadb(
        port,
        &[flag, "--ssl-verify-server-cert=0"],
        "SHOW SESSION STATUS LIKE 'Ssl_cipher'; \\s",
    );
    if !o.status.success() {
        return Err(String::from_utf8_lossy(&o.stderr).trim().to_string());
    }
    let out = String::from_utf8_lossy(&o.stdout);
    let server = out
        .lines()
        .find_map(|l| l.strip_prefix("Ssl_cipher\t"))
        .unwrap_or("")
        .trim()
        .to_string();
    let client = out
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("SSL:"))
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    Ok((server, client))
}

/// The router's 2026 `SSL connection error`. The `mariadb` CLI (Connector/C) shows a
/// server-sent error with a client-range code as 2027 `Received malformed packet`
/// when the greeting is MariaDB's (as it is through this router); MySQL's clients show
/// 2026 and the text.
fn refused_for_tls(stderr: &str) -> bool {
    stderr.contains("ERROR 2026 (HY000): SSL connection error")
        || stderr.contains("ERROR 2027 (HY000): Received malformed packet")
}

/// Runs the MySQL 9.7 `mysql` CLI (../shared/lab) against 127.0.0.1:port.
fn mysql97(port: u16, args: &[&str], sql: &str) -> Output {
    let lab = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/lab/mysql-9.7");
    Command::new(lab)
        .args([
            "client",
            "--no-defaults",
            "-h",
            "127.0.0.1",
            "-P",
            &port.to_string(),
        ])
        .args([
            "--protocol=TCP",
            "-u",
            "t",
            "-pt",
            "-N",
            "-B",
            "--connect-timeout=20",
        ])
        .args(args)
        .args(["-e", sql])
        .output()
        .expect("../shared/lab/mysql-9.7")
}

#[test]
fn every_mode_pair_uses_tls_on_the_hops_it_should() {
    let srv = tls_server();
    let modes_c = ["DISABLED", "PREFERRED", "REQUIRED"];
    let modes_s = ["DISABLED", "PREFERRED", "REQUIRED", "AS_CLIENT"];
    let mut body = String::new();
    let mut ports = Vec::new();
    for c in modes_c {
        for s in modes_s {
            let p = free_port();
            let extra = format!("client_ssl_mode = {c}\nserver_ssl_mode = {s}\n");
            body += &tls_route(&format!("{c}_{s}").to_lowercase(), p, &srv.addr(), &extra);
            ports.push((c, s, p));
        }
    }
    let all: Vec<u16> = ports.iter().map(|x| x.2).collect();
    let r = Router::start(&body, &all);
    for (c, s, port) in ports {
        for client_ssl in [false, true] {
            let got = ciphers(port, client_ssl);
            // The client hop: TLS when the client asks and the router offers it.
            let client_tls = client_ssl && c != "DISABLED";
            if c == "REQUIRED" && !client_ssl {
                let e = got.expect_err("REQUIRED refuses a client without TLS");
                assert!(refused_for_tls(&e), "{c}/{s}: {e}");
                assert!(r.wait_log(
                    "refused: SSL is required from client",
                    Duration::from_secs(5)
                ));
                continue;
            }
            let server_tls = match s {
                "DISABLED" => false,
                "AS_CLIENT" => client_tls,
                _ => true, // the server has TLS
            };
            let (server_view, client_view) =
                got.unwrap_or_else(|e| panic!("{c}/{s} client_ssl={client_ssl}: {e}"));
            assert_eq!(
                !server_view.is_empty(),
                server_tls,
                "{c}/{s} client_ssl={client_ssl}: server hop cipher '{server_view}'"
            );
            assert_eq!(
                client_view.contains("Cipher in use"),
                client_tls,
                "{c}/{s} client_ssl={client_ssl}: client hop '{client_view}'"
            );
        }
    }
}

#[test]
fn the_client_sees_the_servers_greeting_and_auth_verdicts() {
    let srv = tls_server();
    let port = free_port();
    let r = Router::start(
        &tls_route("g", port, &srv.addr(), "max_connect_errors = 2\n"),
        &[port],
    );
    let direct = common::greeting(srv.port).expect("direct greeting");
    let routed = common::greeting(port).expect("greeting through the router");
    let version = |g: &[u8]| {
        let end = g[5..].iter().position(|&b| b == 0).unwrap();
        String::from_utf8_lossy(&g[5..5 + end]).into_owned()
    };
    assert_eq!(version(&routed), version(&direct));
    assert!(version(&routed).starts_with("5.5.5-10.11"));
    // Wrong passwords: the server's 1045, unchanged, never counted as handshake errors.
    for _ in 0..3 {
        let o = Command::new("mariadb")
            .args([
                "--no-defaults",
                "-h127.0.0.1",
                &format!("-P{port}"),
                "-ut",
                "-pwrong",
            ])
            .args(["--ssl", "--ssl-verify-server-cert=0", "-e", "SELECT 1"])
            .output()
            .unwrap();
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(
            e.contains("ERROR 1045") && e.contains("Access denied for user 't'"),
            "{e}"
        );
    }
    let ok = ok_text(&mariadb(
        port,
        &["--ssl", "--ssl-verify-server-cert=0"],
        "SELECT @@port",
    ));
    assert_eq!(ok.trim(), srv.port.to_string());
    assert!(!r.log_text().contains("incrementing error counter"));
}

#[test]
fn large_results_and_compression_pass_through_tls() {
    let srv = tls_server();
    let port = free_port();
    let _r = Router::start(&tls_route("big", port, &srv.addr(), ""), &[port]);
    // 3 MB up (in the statement) and 3 MB down, checked by hash on both ends.
    let payload: String = (0..3_000_000)
        .map(|i| (b'a' + (i % 26) as u8) as char)
        .collect();
    let sql = format!("SELECT MD5('{payload}'), LENGTH('{payload}'), REPEAT('xyz', 1000000)");
    let file = tmp_dir("bigsql").join("q.sql");
    std::fs::write(&file, &sql).unwrap();
    for extra in [
        &["--ssl"][..],
        &["--ssl", "--compress"][..],
        &["--skip-ssl", "--compress"][..],
    ] {
        let mut args = extra.to_vec();
        args.push("--ssl-verify-server-cert=0");
        args.push("--max-allowed-packet=64M");
        let o = Command::new("mariadb")
            .args([
                "--no-defaults",
                "-h127.0.0.1",
                &format!("-P{port}"),
                "-ut",
                "-pt",
                "-N",
                "-B",
            ])
            .args(&args)
            .stdin(std::fs::File::open(&file).unwrap())
            .output()
            .unwrap();
        let out = ok_text(&o);
        let cols: Vec<&str> = out.trim_end().split('\t').collect();
        let md5 = Command::new("md5sum")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                c.stdin.take().unwrap().write_all(payload.as_bytes())?;
                c.wait_with_output()
            })
            .unwrap();
        let expect = String::from_utf8_lossy(&md5.stdout);
        assert_eq!(
            cols[0],
            &expect[..32],
            "{extra:?}: upload hashed by the server"
        );
        assert_eq!(cols[1], "3000000");
        assert_eq!(cols[2], "xyz".repeat(1_000_000), "{extra:?}: 3 MB result");
    }
}

#[test]
fn required_modes_refuse_what_they_cannot_have() {
    let tls = tls_server();
    let plain = plain_server();
    let (a, b) = (free_port(), free_port());
    let body = tls_route(
        "need_server_tls",
        a,
        &plain.addr(),
        "server_ssl_mode = REQUIRED\n",
    ) + &tls_route(
        "need_client_tls",
        b,
        &tls.addr(),
        "client_ssl_mode = REQUIRED\n",
    );
    let r = Router::start(&body, &[a, b]);
    let e = ciphers(a, true).expect_err("no TLS on the server");
    assert!(refused_for_tls(&e), "{e}");
    assert!(r.wait_log(
        "refused: the server does not offer TLS",
        Duration::from_secs(5)
    ));
    let e = ciphers(b, false).expect_err("client without TLS");
    assert!(refused_for_tls(&e), "{e}");
    assert!(r.wait_log(
        "refused: SSL is required from client",
        Duration::from_secs(5)
    ));
    // The 9.7 mysql client shows MySQL Router's error as it is.
    let o = mysql97(b, &["--ssl-mode=DISABLED"], "SELECT 1");
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("ERROR 2026 (HY000): SSL connection error: SSL is required from client"),
        "{e}"
    );
}

#[test]
fn server_certificates_are_verified_when_asked() {
    let srv = tls_server();
    let p = pki();
    let localhost = format!("localhost:{}", srv.port);
    let cases = [
        ("ca_ok", srv.addr(), "VERIFY_CA", "ca.pem", true),
        ("ca_wrong", srv.addr(), "VERIFY_CA", "other-ca.pem", false),
        // The certificate names localhost only.
        (
            "id_ok",
            localhost.clone(),
            "VERIFY_IDENTITY",
            "ca.pem",
            true,
        ),
        ("id_ip", srv.addr(), "VERIFY_IDENTITY", "ca.pem", false),
    ];
    let mut body = String::new();
    let mut ports = Vec::new();
    for (name, dest, verify, ca, _) in &cases {
        let port = free_port();
        let extra = format!(
            "server_ssl_mode = REQUIRED\nserver_ssl_verify = {verify}\nserver_ssl_ca = {}\n",
            p.path(ca)
        );
        body += &tls_route(name, port, dest, &extra);
        ports.push(port);
    }
    let r = Router::start(&body, &ports);
    for ((name, _, _, _, good), port) in cases.iter().zip(ports) {
        let got = ciphers(port, true);
        if *good {
            let (server_view, _) = got.unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(!server_view.is_empty(), "{name}");
        } else {
            let e = got.expect_err(name);
            assert!(refused_for_tls(&e), "{name}: {e}");
            assert!(
                r.wait_log(
                    &format!("[routing:{name}] 127.0.0.1"),
                    Duration::from_secs(5)
                ) && r.log_text().contains("TLS to the server failed"),
                "{name}: {}",
                r.log_text()
            );
        }
    }
}

#[test]
fn bad_tls_options_exit_1_with_the_option_named() {
    let p = pki();
    let run = |extra: &str| {
        let dir = tmp_dir("badtls");
        let conf = dir.join("r.conf");
        std::fs::write(
            &conf,
            format!(
                "[DEFAULT]\nlogging_folder =\n{}",
                route("r", free_port(), "127.0.0.1:3306", extra)
            ),
        )
        .unwrap();
        let o = Command::new(common::router_bin())
            .arg("-c")
            .arg(&conf)
            .output()
            .unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let key = p.path("server-key.pem");
    let cert = p.path("server-cert.pem");
    let cases = [
        (
            format!("client_ssl_cert = /nonexistent.pem\nclient_ssl_key = {key}\n"),
            "Error: routing:r: loading client_ssl_cert '/nonexistent.pem' and client_ssl_key".to_string(),
        ),
        (
            format!("client_ssl_cert = {key}\nclient_ssl_key = {key}\n"),
            format!("loading client_ssl_cert '{key}' and client_ssl_key '{key}' failed"),
        ),
        (
            format!("client_ssl_cert = {cert}\nclient_ssl_key = {key}\nclient_ssl_cipher = BOGUS\n"),
            "Error: routing:r: setting client_ssl_cipher=BOGUS failed: no cipher match".into(),
        ),
        (
            format!("client_ssl_cert = {cert}\nclient_ssl_key = {key}\nclient_ssl_curves = bogus\n"),
            "setting client_ssl_curves=bogus failed".into(),
        ),
        (
            format!("client_ssl_cert = {cert}\nclient_ssl_key = {key}\nserver_ssl_verify = VERIFY_CA\nserver_ssl_ca = /nonexistent\n"),
            "setting server_ssl_ca=/nonexistent and server_ssl_capath= failed".into(),
        ),
        (
            "client_ssl_mode = REQUIRED\n".into(),
            "Error: Configuration error: client_ssl_cert must be set, if client_ssl_mode is 'REQUIRED'.".into(),
        ),
        (
            format!("client_ssl_cert = {cert}\nclient_ssl_key = {key}\nserver_ssl_verify = VERIFY_IDENTITY\n"),
            "server_ssl_ca or server_ssl_capath must be set, if server_ssl_verify is 'VERIFY_IDENTITY'.".into(),
        ),
    ];
    for (extra, want) in cases {
        let (code, err) = run(&extra);
        assert_eq!(code, Some(1), "{extra}: {err}");
        assert!(err.contains(&want), "{extra}\nwant: {want}\ngot: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn many_concurrent_tls_clients() {
    let srv = tls_server();
    let port = free_port();
    let body = format!(
        "[DEFAULT]\nmax_total_connections = 4000\n{}",
        tls_route("many", port, &srv.addr(), "")
    );
    let _r = Router::start(&body, &[port]);
    common::raise_fd_limit();
    let n = 1000;
    let rt = common::rt();
    let results: Vec<Result<u16, String>> = rt.block_on(async {
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..n {
            set.spawn(async move {
                use mysql_async::prelude::Queryable;
                let opts: mysql_async::Opts =
                    mysql_async::OptsBuilder::from_opts(common::opts(port))
                        .ssl_opts(Some(
                            mysql_async::SslOpts::default().with_danger_accept_invalid_certs(true),
                        ))
                        .into();
                let work = async {
                    let mut c = mysql_async::Conn::new(opts).await?;
                    let p: Option<u16> = c.query_first("SELECT @@port").await?;
                    let cipher: Option<(String, String)> = c
                        .query_first("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
                        .await?;
                    c.disconnect().await?;
                    Ok::<_, mysql_async::Error>((p.unwrap_or(0), cipher))
                };
                match tokio::time::timeout(Duration::from_secs(60), work).await {
                    Ok(Ok((p, Some((_, c))))) if !c.is_empty() => Ok(p),
                    Ok(Ok(other)) => Err(format!("no TLS to the server: {other:?}")),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err("timeout".into()),
                }
            });
        }
        let mut v = Vec::new();
        while let Some(r) = set.join_next().await {
            v.push(r.unwrap_or_else(|e| Err(e.to_string())));
        }
        v
    });
    let failed: Vec<_> = results.iter().filter(|r| r.is_err()).take(5).collect();
    assert!(
        failed.is_empty(),
        "{} of {n} failed, e.g. {failed:?}",
        results.iter().filter(|r| r.is_err()).count()
    );
    assert!(results.iter().all(|r| r.as_ref().ok() == Some(&srv.port)));
}

// --- MySQL 9.7: caching_sha2_password through a terminating router ------------------

use common::mysql97;

fn mysql97_routes() -> (Router, u16, u16, u16) {
    let srv = mysql97::shared();
    let (plain_hop, tls_hops, off) = (free_port(), free_port(), free_port());
    let body = tls_route(
        "plain_hop",
        plain_hop,
        &srv.addr(),
        "server_ssl_mode = DISABLED\n",
    ) + &tls_route("tls_hops", tls_hops, &srv.addr(), "")
        + &route(
            "off",
            off,
            &srv.addr(),
            "client_ssl_mode = DISABLED\nserver_ssl_mode = DISABLED\n",
        );
    (
        Router::start(&body, &[plain_hop, tls_hops, off]),
        plain_hop,
        tls_hops,
        off,
    )
}

/// The MySQL 9.7 tests of this binary share one server, whose authentication cache
/// some of them empty and others fill: they take turns.
fn mysql97_turn() -> std::sync::MutexGuard<'static, ()> {
    static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());
    TURN.lock().unwrap_or_else(|e| e.into_inner())
}

fn flush_auth_cache() {
    mysql97::shared().admin("FLUSH PRIVILEGES");
}

#[test]
fn caching_sha2_full_and_fast_authentication_in_every_hop_combination() {
    let _turn = mysql97_turn();
    let (_r, plain_hop, tls_hops, off) = mysql97_routes();
    let q = "SELECT CURRENT_USER(); SHOW SESSION STATUS LIKE 'Ssl_cipher'";
    // TLS client, plain server hop: the client sends its password in clear to the
    // router, which must send it RSA-encrypted with the server's key (Oracle: 1045).
    for (port, server_tls) in [(plain_hop, false), (tls_hops, true)] {
        flush_auth_cache();
        for round in ["full", "fast"] {
            let out = mysql97::cli_result(&mysql97::cli(port, &["--ssl-mode=REQUIRED"], q))
                .unwrap_or_else(|e| panic!("{round} auth via {port}: {e}"));
            assert!(out.contains("sha2@%"), "{out}");
            let cipher = out
                .lines()
                .find_map(|l| l.strip_prefix("Ssl_cipher\t"))
                .unwrap_or("");
            assert_eq!(!cipher.is_empty(), server_tls, "{round} via {port}: {out}");
        }
    }
    // Plain both ways: full authentication with the server's RSA key, asked for by
    // the client; without it the server's own refusal (2061) reaches the client.
    flush_auth_cache();
    let e = mysql97::cli_result(&mysql97::cli(off, &["--ssl-mode=DISABLED"], "SELECT 1"))
        .expect_err("full auth without TLS or key");
    assert!(e.contains("ERROR 2061"), "{e}");
    let ok = mysql97::cli_result(&mysql97::cli(
        off,
        &["--ssl-mode=DISABLED", "--get-server-public-key"],
        "SELECT 7",
    ));
    assert_eq!(ok.map(|s| s.trim().to_string()), Ok("7".to_string()));
    // Wrong password: the server's 1045, unchanged.
    let o = mysql97::client(&[
        "-h127.0.0.1",
        &format!("-P{tls_hops}"),
        "-usha2",
        "-pwrong",
        "--ssl-mode=REQUIRED",
        "-e",
        "SELECT 1",
    ]);
    let e = mysql97::cli_result(&o).expect_err("wrong password");
    assert!(
        e.contains("ERROR 1045 (28000): Access denied for user 'sha2'"),
        "{e}"
    );
}

#[test]
fn compression_works_while_the_router_terminates_tls() {
    let _turn = mysql97_turn();
    let (_r, plain_hop, tls_hops, _) = mysql97_routes();
    for port in [plain_hop, tls_hops] {
        for algo in ["zlib", "zstd"] {
            let out = mysql97::cli_result(&mysql97::cli(
                port,
                &[
                    "--ssl-mode=REQUIRED",
                    &format!("--compression-algorithms={algo}"),
                ],
                &format!(
                    "SELECT REPEAT('abc', 350000); SELECT LENGTH('{}'); SHOW SESSION STATUS LIKE 'Compression_algorithm'",
                    "xyz".repeat(30_000)
                ),
            ))
            .unwrap_or_else(|e| panic!("{algo} via {port}: {e}"));
            assert_eq!(out.lines().next(), Some("abc".repeat(350_000).as_str()));
            assert_eq!(out.lines().nth(1), Some("90000"), "{algo} via {port}");
            // TLS on both hops: compression is end to end. A plain server hop: the
            // router speaks it with the client and none with the server (so that it
            // sees COM_CHANGE_USER, see session::compress).
            let server_sees = if port == tls_hops { algo } else { "" };
            assert!(
                out.lines()
                    .any(|l| l == format!("Compression_algorithm\t{server_sees}")),
                "{algo} via {port}: {out}"
            );
        }
    }
}

#[test]
fn prepared_statements_and_rows_over_16_mib_through_tls() {
    let srv = tls_server();
    let port = free_port();
    let _r = Router::start(&tls_route("ps", port, &srv.addr(), ""), &[port]);
    common::rt().block_on(async {
        use mysql_async::prelude::Queryable;
        let opts: mysql_async::Opts = mysql_async::OptsBuilder::from_opts(common::opts(port))
            .ssl_opts(Some(
                mysql_async::SslOpts::default().with_danger_accept_invalid_certs(true),
            ))
            .max_allowed_packet(Some(64 << 20))
            .into();
        let mut c = mysql_async::Conn::new(opts).await.unwrap();
        let stmt = c.prep("SELECT ?, REPEAT(?, ?)").await.unwrap();
        let row: Option<(i64, Vec<u8>)> = c.exec_first(&stmt, (5, "q", 17_000_000)).await.unwrap();
        let (n, big) = row.unwrap();
        assert_eq!(n, 5);
        assert_eq!(big.len(), 17_000_000);
        assert!(big.iter().all(|&b| b == b'q'));
        // And up: a 17 MB parameter hashed by the server.
        let up = vec![b'u'; 17_000_000];
        let len: Option<i64> = c.exec_first("SELECT LENGTH(?)", (up,)).await.unwrap();
        assert_eq!(len, Some(17_000_000));
        c.disconnect().await.unwrap();
    });
}

/// A TLS client asking for compression over a plain server hop: the router speaks
/// the compressed protocol with the client and none with the server. 17 MB of text-like
/// bytes go up and come back byte for byte (frames of 16 MiB - 1 and
/// more), a 17 MB row comes down, and the server's session is not compressed.
#[test]
fn rows_over_16_mib_through_compression_the_router_terminates() {
    let srv = tls_server();
    let port = free_port();
    let _r = Router::start_with(
        &tls_route("cz", port, &srv.addr(), "server_ssl_mode = DISABLED\n"),
        &[port],
        "debug",
        &[],
    );
    common::rt().block_on(async {
        use mysql_async::prelude::Queryable;
        let opts: mysql_async::Opts = mysql_async::OptsBuilder::from_opts(common::opts(port))
            .ssl_opts(Some(
                mysql_async::SslOpts::default().with_danger_accept_invalid_certs(true),
            ))
            .compression(Some(mysql_async::Compression::fast()))
            .max_allowed_packet(Some(64 << 20))
            .into();
        let mut c = mysql_async::Conn::new(opts).await.unwrap();
        // Text-like bytes (a 4 KiB pseudo-random block over and over: zlib shrinks it).
        // Bytes that do not compress at all are sent truncated by mysql_common 0.37's
        // compressor (its output buffer stops at the input's length), which the server
        // refuses as well when no router is in between.
        let mut x: u32 = 12345;
        let block: Vec<u8> = (0..4096)
            .map(|_| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                b'a' + ((x >> 16) % 26) as u8
            })
            .collect();
        let up: Vec<u8> = block.iter().copied().cycle().take(17_000_000).collect();
        let back: Option<Vec<u8>> = c.exec_first("SELECT ?", (up.clone(),)).await.unwrap();
        assert!(
            back.as_deref() == Some(&up[..]),
            "the 17 MB value came back changed"
        );
        let row: Option<Vec<u8>> = c.query_first("SELECT REPEAT('z', 17000000)").await.unwrap();
        assert_eq!(
            row.map(|r| (r.len(), r.iter().all(|&b| b == b'z'))),
            Some((17_000_000, true))
        );
        let comp: Option<(String, String)> = c
            .query_first("SHOW SESSION STATUS LIKE 'Compression'")
            .await
            .unwrap();
        assert_eq!(comp.map(|c| c.1), Some("OFF".to_string()), "the server hop");
        c.disconnect().await.unwrap();
    });
}

// --- bad input on a terminating route, other clients and auth methods ---------------

/// Connects, reads the greeting, sends `bytes`, returns what came back (bounded).
fn raw(port: u16, bytes: &[u8]) -> Vec<u8> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut hdr = [0u8; 4];
    s.read_exact(&mut hdr).unwrap();
    let len = u32::from_le_bytes([hdr[0], hdr[1], hdr[2], 0]) as usize;
    let mut g = vec![0u8; len];
    s.read_exact(&mut g).unwrap();
    let _ = s.write_all(bytes);
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

#[test]
fn bad_handshakes_get_1043_are_counted_and_harm_no_one() {
    let srv = tls_server();
    let port = free_port();
    let r = Router::start(
        &tls_route("bad", port, &srv.addr(), "max_connect_errors = 4\n"),
        &[port],
    );
    // MySQL Router's answer: sequence id 2, 1043, no SQL state.
    let bad_handshake = [&[16u8, 0, 0, 2, 0xff, 0x13, 0x04][..], b"Bad handshake"].concat();
    // Garbage where the response belongs.
    let got = raw(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(got, bad_handshake);
    // A response with the wrong sequence id; a length that claims 16 MiB.
    let mut wrong_seq = vec![32, 0, 0, 5];
    wrong_seq.extend([0x00, 0x82, 0x08, 0x00]);
    wrong_seq.resize(36, 0);
    assert_eq!(raw(port, &wrong_seq), bad_handshake);
    assert_eq!(raw(port, &[0xff, 0xff, 0xff, 1, 0, 0]), bad_handshake);
    // An SSLRequest followed by bytes that are not TLS.
    let mut ssl_req = vec![32, 0, 0, 1];
    ssl_req.extend(0x0000_8a00u32.to_le_bytes()); // PROTOCOL_41 | SSL | SECURE_CONNECTION
    ssl_req.resize(36, 0);
    ssl_req.extend(b"\x16\x03\x01\x00\x05not tls at all");
    let _ = raw(port, &ssl_req);
    assert!(
        r.wait_log("(now 4)", Duration::from_secs(5)),
        "{}",
        r.log_text()
    );
    // The host is blocked now; a good client is refused with 1129 ...
    let e = ciphers(port, true).expect_err("blocked");
    assert!(
        e.contains("1129") || e.contains("Too many connection errors"),
        "{e}"
    );
    // ... and a fresh route on the same server serves at once (nothing else was hurt).
    let other = free_port();
    let _r2 = Router::start(&tls_route("good", other, &srv.addr(), ""), &[other]);
    assert!(ciphers(other, true).is_ok());
}

#[test]
fn python_clients_over_terminated_tls() {
    let srv = tls_server();
    let port = free_port();
    let _r = Router::start(&tls_route("py", port, &srv.addr(), ""), &[port]);
    let script = format!(
        r#"
import ssl, pymysql, mysql.connector
c = pymysql.connect(host="127.0.0.1", port={port}, user="t", password="t",
                    ssl={{"check_hostname": False, "verify_mode": ssl.CERT_NONE}})
cur = c.cursor()
cur.execute("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
print("pymysql", cur.fetchone()[1] != "", c.get_server_info())
c.close()
c = mysql.connector.connect(host="127.0.0.1", port={port}, user="t", password="t",
                            ssl_verify_cert=False, use_pure=True)
cur = c.cursor()
cur.execute("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
print("connector", cur.fetchone()[1] != "", c.get_server_info())
cur.execute("SELECT REPEAT('p', 100000)")
print("rows", len(cur.fetchone()[0]))
c.close()
"#
    );
    let o = Command::new("/usr/bin/python3")
        .args(["-c", &script])
        .output()
        .expect("python3");
    let out = ok_text(&o);
    assert!(
        out.contains("pymysql True 5.5.5-10.11") || out.contains("pymysql True 10.11"),
        "{out}"
    );
    assert!(out.contains("connector True"), "{out}");
    assert!(out.contains("rows 100000"), "{out}");
}

/// mysql-connector-python (pure) with compression over a plain server hop, where the
/// router frames the compressed protocol itself: that client reads a packet across two
/// compressed frames at most (as servers frame them), so the router must not spread one
/// over more. Prepared statements with a 100 KB value both ways, a 300 KB row.
#[test]
fn mysql_connector_with_compression_the_router_terminates() {
    let srv = tls_server();
    let port = free_port();
    let _r = Router::start(
        &tls_route("pyz", port, &srv.addr(), "server_ssl_mode = DISABLED\n"),
        &[port],
    );
    let script = format!(
        r#"
import mysql.connector
c = mysql.connector.connect(host="127.0.0.1", port={port}, user="t", password="t",
                            ssl_verify_cert=False, use_pure=True, compress=True,
                            connection_timeout=20, read_timeout=20)
cur = c.cursor(prepared=True)
cur.execute("SELECT ?, LENGTH(?)", (b"x" * 100000, b"y" * 100000))
v, n = cur.fetchone()
print("prepared", len(v), n)
cur = c.cursor()
cur.execute("SELECT REPEAT('p', 300000), 7")
r = cur.fetchone()
print("rows", len(r[0]), r[1])
cur.execute("SHOW SESSION STATUS LIKE 'Compression'")
print("server", cur.fetchone()[1])
c.close()
"#
    );
    let o = Command::new("/usr/bin/python3")
        .args(["-c", &script])
        .output()
        .expect("python3");
    let out = ok_text(&o);
    assert!(out.contains("prepared 100000 100000"), "{out}");
    assert!(out.contains("rows 300000 7"), "{out}");
    assert!(out.contains("server OFF"), "{out}");
}

#[test]
fn auth_switch_ed25519_and_empty_passwords_pass_through() {
    let _turn = mysql97_turn();
    let srv = tls_server();
    let port = free_port();
    let _r = Router::start(&tls_route("auth", port, &srv.addr(), ""), &[port]);
    let root = |sql: &str| {
        let o = Command::new("mariadb")
            .args([
                "--no-defaults",
                "-S",
                srv.socket.to_str().unwrap(),
                "-uroot",
                "-e",
                sql,
            ])
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    root("INSTALL SONAME 'auth_ed25519'");
    root("CREATE OR REPLACE USER ed@'%' IDENTIFIED VIA ed25519 USING PASSWORD('edpw'); CREATE OR REPLACE USER nopw@'%' IDENTIFIED BY ''");
    for (user, pw) in [("ed", "edpw"), ("nopw", "")] {
        for ssl in ["--ssl", "--skip-ssl"] {
            let o = Command::new("mariadb")
                .args([
                    "--no-defaults",
                    "-h127.0.0.1",
                    &format!("-P{port}"),
                    &format!("-u{user}"),
                ])
                .arg(format!("-p{pw}"))
                .args([
                    ssl,
                    "--ssl-verify-server-cert=0",
                    "-N",
                    "-B",
                    "-e",
                    "SELECT CURRENT_USER()",
                ])
                .output()
                .unwrap();
            let out = ok_text(&o);
            assert_eq!(out.trim(), format!("{user}@%"), "{user} {ssl}");
        }
    }
    // The mariadb CLI starts with mysql_native_password; MySQL 9.7's sha2 account
    // makes the server switch it to caching_sha2_password (an auth switch through
    // the router), full authentication over TLS.
    let m = mysql97::shared();
    let p97 = free_port();
    let _r97 = Router::start(&tls_route("sw", p97, &m.addr(), ""), &[p97]);
    flush_auth_cache();
    let o = Command::new("mariadb")
        .args([
            "--no-defaults",
            "-h127.0.0.1",
            &format!("-P{p97}"),
            "-usha2",
            "-psha2pw",
        ])
        .args([
            "--ssl",
            "--ssl-verify-server-cert=0",
            "-N",
            "-B",
            "-e",
            "SELECT CURRENT_USER()",
        ])
        .output()
        .unwrap();
    assert_eq!(ok_text(&o).trim(), "sha2@%");
}

/// A TCP forwarder that records every byte sent towards `upstream`.
fn recording_proxy(upstream: u16) -> (u16, std::sync::Arc<std::sync::Mutex<Vec<u8>>>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let rec = seen.clone();
    std::thread::spawn(move || {
        for c in listener.incoming().flatten() {
            let Ok(s) = std::net::TcpStream::connect(("127.0.0.1", upstream)) else {
                continue;
            };
            let (mut c2, mut s2) = (c.try_clone().unwrap(), s.try_clone().unwrap());
            let rec = rec.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 16384];
                while let Ok(n) = c2.read(&mut buf) {
                    if n == 0 || s2.write_all(&buf[..n]).is_err() {
                        break;
                    }
                    rec.lock().unwrap().extend_from_slice(&buf[..n]);
                }
                let _ = s2.shutdown(std::net::Shutdown::Write);
            });
            let (mut s3, mut c3) = (s, c);
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut s3, &mut c3);
                let _ = c3.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    (port, seen)
}

#[test]
fn passwords_sent_in_clear_by_tls_clients_never_cross_a_plain_server_hop_in_clear() {
    let _turn = mysql97_turn();
    let srv = mysql97::shared();
    srv.admin(
        "CREATE USER IF NOT EXISTS s256@'%' IDENTIFIED WITH sha256_password BY 's256-secret'; GRANT ALL ON *.* TO s256@'%'",
    );
    let (hop, seen) = recording_proxy(srv.port);
    let port = free_port();
    let _r = Router::start(
        &tls_route(
            "hop",
            port,
            &format!("127.0.0.1:{hop}"),
            "server_ssl_mode = DISABLED\n",
        ),
        &[port],
    );
    let login = |user: &str, pw: &str, extra: &[&str]| {
        let mut args = vec![
            "-h127.0.0.1".to_string(),
            format!("-P{port}"),
            format!("-u{user}"),
            format!("-p{pw}"),
            "--ssl-mode=REQUIRED".into(),
            "-N".into(),
            "-B".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        args.extend(["-e".into(), "SELECT CURRENT_USER()".into()]);
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        mysql97::cli_result(&mysql97::client(&a))
    };
    // sha256_password after an auth switch, and named in the response itself; then
    // caching_sha2 full authentication (empty cache).
    assert_eq!(
        login("s256", "s256-secret", &[]).map(|s| s.trim().to_string()),
        Ok("s256@%".into())
    );
    assert_eq!(
        login("s256", "s256-secret", &["--default-auth=sha256_password"])
            .map(|s| s.trim().to_string()),
        Ok("s256@%".into())
    );
    flush_auth_cache();
    assert_eq!(
        login("sha2", "sha2pw", &[]).map(|s| s.trim().to_string()),
        Ok("sha2@%".into())
    );
    let e = login("s256", "wrong-secret", &[]).expect_err("wrong password");
    assert!(e.contains("ERROR 1045"), "{e}");
    let bytes = seen.lock().unwrap().clone();
    assert!(
        bytes.len() > 200,
        "the hop carried the logins ({} bytes)",
        bytes.len()
    );
    for secret in [&b"s256-secret"[..], b"sha2pw", b"wrong-secret"] {
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret),
            "{} crossed the plain server hop in clear",
            String::from_utf8_lossy(secret)
        );
    }
}

#[test]
fn change_user_full_authentication_never_crosses_a_plain_server_hop_in_clear() {
    // A TLS client (mysql_async over rustls) logged in through a router whose server
    // hop is plain TCP changes user with COM_CHANGE_USER while the server's
    // authentication cache is empty: caching_sha2 full authentication inside the
    // change-user exchange. The client sends its password in clear (its hop is TLS);
    // the router must send it RSA-encrypted, as at login.
    change_user_through("", "", false);
}

#[test]
fn change_user_in_a_compressed_session_never_crosses_a_plain_server_hop_in_clear() {
    // The same with protocol compression (zlib): compressed frames would hide the
    // exchange, so the router speaks compression with the client itself and none with
    // the plain server hop, where the change-user guard sees every packet.
    change_user_through("", "", true);
}

#[test]
fn change_user_in_a_shared_session_never_crosses_a_plain_server_hop_in_clear() {
    // The same on a route with connection sharing: the session has been unlinked and
    // relinked before its COM_CHANGE_USER, which ends sharing and hands the session to
    // the change-user guard.
    change_user_through(
        "[connection_pool]\nmax_idle_server_connections = 4\n\n",
        "connection_sharing = 1\nconnection_sharing_delay = 0\n",
        false,
    );
}

fn change_user_through(pool: &str, sharing: &str, compress: bool) {
    use mysql_async::prelude::Queryable;
    let _turn = mysql97_turn();
    let srv = mysql97::shared();
    srv.admin(
        "CREATE USER IF NOT EXISTS cu2@'%' IDENTIFIED WITH caching_sha2_password BY 'cu2-secret'; GRANT ALL ON *.* TO cu2@'%'",
    );
    let (hop, seen) = recording_proxy(srv.port);
    let port = free_port();
    let _r = Router::start(
        &(pool.to_string()
            + &tls_route(
                "hop",
                port,
                &format!("127.0.0.1:{hop}"),
                &format!("server_ssl_mode = DISABLED\n{sharing}"),
            )),
        &[port],
    );
    let opts: mysql_async::Opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(port)
        .prefer_socket(false)
        .user(Some("sha2"))
        .pass(Some("sha2pw"))
        .ssl_opts(Some(
            mysql_async::SslOpts::default().with_danger_accept_invalid_certs(true),
        ))
        .compression(compress.then(mysql_async::Compression::fast))
        .into();
    let change = |user: &str, pw: &str| {
        mysql_async::ChangeUserOpts::default()
            .with_user(Some(user.to_string()))
            .with_pass(Some(pw.to_string()))
    };
    let rt = common::rt();
    let users: Vec<String> = rt.block_on(async {
        let mut c = mysql_async::Conn::new(opts.clone()).await.expect("login");
        // A first statement (a shared session unlinks after it and relinks for the
        // next command).
        let one: Option<u8> = c.query_first("SELECT 1").await.expect("first query");
        assert_eq!(one, Some(1));
        let mut users = Vec::new();
        for (user, pw) in [
            ("cu2", "cu2-secret"),
            ("sha2", "sha2pw"),
            ("cu2", "cu2-secret"),
        ] {
            flush_auth_cache();
            tokio::time::timeout(Duration::from_secs(30), c.change_user(change(user, pw)))
                .await
                .expect("change user in time")
                .unwrap_or_else(|e| panic!("change user to {user}: {e}"));
            let u: Option<String> = c.query_first("SELECT CURRENT_USER()").await.expect("query");
            users.push(u.unwrap_or_default());
        }
        // The fast path (the cache now knows cu2) and a wrong password.
        c.change_user(change("cu2", "cu2-secret"))
            .await
            .expect("fast change user");
        let e = c
            .change_user(change("cu2", "wrong-secret"))
            .await
            .expect_err("wrong password");
        users.push(format!("{e}"));
        users
    });
    assert_eq!(users[..3], ["cu2@%", "sha2@%", "cu2@%"], "{users:?}");
    assert!(users[3].contains("1045"), "{users:?}");
    let bytes = seen.lock().unwrap().clone();
    assert!(
        bytes.windows(4).any(|w| w == b"cu2\0"),
        "the hop carried the change-user"
    );
    for secret in [&b"cu2-secret"[..], b"sha2pw", b"wrong-secret"] {
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret),
            "{} crossed the plain server hop in clear",
            String::from_utf8_lossy(secret)
        );
    }
}

#[test]
fn clients_without_tls_do_full_authentication_over_a_tls_server_hop_with_the_routers_key() {
    // A client without TLS, caching_sha2 full authentication, a TLS server hop: the
    // server wants the password in clear over its TLS. The client asks for "the
    // server's" public key and gets the router's (that of client_ssl_key, as MySQL
    // Router does); the router decrypts and sends the password over TLS.
    let _turn = mysql97_turn();
    let srv = mysql97::shared();
    let (required, preferred) = (free_port(), free_port());
    let body = tls_route(
        "required",
        required,
        &srv.addr(),
        "server_ssl_mode = REQUIRED\n",
    ) + &tls_route(
        "preferred",
        preferred,
        &srv.addr(),
        "server_ssl_mode = PREFERRED\n",
    );
    let _r = Router::start(&body, &[required, preferred]);
    let q = "SELECT CURRENT_USER(); SHOW SESSION STATUS LIKE 'Ssl_cipher'";
    for port in [required, preferred] {
        flush_auth_cache();
        let out = mysql97::cli_result(&mysql97::cli(
            port,
            &["--ssl-mode=DISABLED", "--get-server-public-key"],
            q,
        ))
        .unwrap_or_else(|e| panic!("full auth via {port}: {e}"));
        assert!(out.contains("sha2@%"), "{out}");
        let cipher = out
            .lines()
            .find_map(|l| l.strip_prefix("Ssl_cipher\t"))
            .unwrap_or("");
        assert!(!cipher.is_empty(), "the server hop is TLS: {out}");
        // Without a key to encrypt with, the client refuses by itself (2061).
        flush_auth_cache();
        let e = mysql97::cli_result(&mysql97::cli(port, &["--ssl-mode=DISABLED"], q))
            .expect_err("full auth without TLS or key");
        assert!(e.contains("ERROR 2061"), "{e}");
    }
    // sha256_password: named in the response (the client asks for the key in it), and
    // after an auth switch.
    srv.admin(
        "CREATE USER IF NOT EXISTS s256@'%' IDENTIFIED WITH sha256_password BY 's256-secret'; GRANT ALL ON *.* TO s256@'%'",
    );
    for extra in [&["--default-auth=sha256_password"][..], &[]] {
        let mut args = vec![
            "-h127.0.0.1".to_string(),
            format!("-P{required}"),
            "-us256".into(),
            "-ps256-secret".into(),
            "--ssl-mode=DISABLED".into(),
            "--get-server-public-key".into(),
            "-N".into(),
            "-B".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        args.extend(["-e".into(), q.into()]);
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = mysql97::cli_result(&mysql97::client(&a))
            .unwrap_or_else(|e| panic!("sha256_password {extra:?}: {e}"));
        assert!(out.contains("s256@%"), "{out}");
    }
    // A wrong password: the server's 1045.
    flush_auth_cache();
    let o = mysql97::client(&[
        "-h127.0.0.1",
        &format!("-P{required}"),
        "-usha2",
        "-pwrong",
        "--ssl-mode=DISABLED",
        "--get-server-public-key",
        "-e",
        "SELECT 1",
    ]);
    let e = mysql97::cli_result(&o).expect_err("wrong password");
    assert!(
        e.contains("ERROR 1045 (28000): Access denied for user 'sha2'"),
        "{e}"
    );
}

/// A TCP forwarder that counts, per connection, the bytes `upstream` sends back.
fn counting_proxy(upstream: u16) -> (u16, std::sync::Arc<std::sync::Mutex<Vec<u64>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let counts = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let rec = counts.clone();
    std::thread::spawn(move || {
        for c in listener.incoming().flatten() {
            let Ok(s) = std::net::TcpStream::connect(("127.0.0.1", upstream)) else {
                continue;
            };
            let (mut c2, mut s2) = (c.try_clone().unwrap(), s.try_clone().unwrap());
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut c2, &mut s2);
                let _ = s2.shutdown(std::net::Shutdown::Write);
            });
            let rec = rec.clone();
            let (mut s3, mut c3) = (s, c);
            std::thread::spawn(move || {
                use std::io::{Read, Write};
                // Counted by hand: io::copy's count is lost when a side resets.
                let (mut n, mut buf) = (0u64, [0u8; 16384]);
                while let Ok(k) = s3.read(&mut buf) {
                    if k == 0 || c3.write_all(&buf[..k]).is_err() {
                        break;
                    }
                    n += k as u64;
                }
                let _ = c3.shutdown(std::net::Shutdown::Write);
                rec.lock().unwrap().push(n);
            });
        }
    });
    (port, counts)
}

#[test]
fn the_server_hop_resumes_tls_sessions_as_the_session_cache_options_say() {
    // MariaDB resumes TLS 1.3 sessions from tickets. A resumed handshake spares the
    // server its certificate and signature (over 1 KB with the test's RSA-2048
    // certificate), so each server connection's bytes from the server tell full from
    // resumed. The router's session cache for a destination: on by default; off with
    // server_ssl_session_cache_mode = 0; a session older than
    // server_ssl_session_cache_timeout (here 0 s: every one) is not resumed.
    let srv = tls_server();
    let opts = [
        "",
        "server_ssl_session_cache_mode = 0\n",
        "server_ssl_session_cache_timeout = 0\n",
    ];
    let mut body = String::new();
    let mut ports = Vec::new();
    let mut seen = Vec::new();
    for (i, extra) in opts.iter().enumerate() {
        let (hop, counts) = counting_proxy(srv.port);
        let port = free_port();
        body += &tls_route(&format!("r{i}"), port, &format!("127.0.0.1:{hop}"), extra);
        ports.push(port);
        seen.push(counts);
    }
    let _r = Router::start(&body, &ports);
    let mut bytes = Vec::new();
    for (port, counts) in ports.iter().zip(&seen) {
        for _ in 0..3 {
            let o = mariadb(*port, &["--ssl", "--ssl-verify-server-cert=0"], "SELECT 1");
            assert_eq!(ok_text(&o).trim(), "1");
        }
        // Connections that carried nothing are the router's destination probes.
        let sessions = || -> Vec<u64> {
            counts
                .lock()
                .unwrap()
                .iter()
                .copied()
                .filter(|&n| n > 0)
                .collect()
        };
        let done = common::eventually(Duration::from_secs(30), || sessions().len() == 3);
        assert!(
            done,
            "server connections of {port}: {:?}",
            counts.lock().unwrap()
        );
        bytes.push(sessions());
    }
    let resumed = |b: &[u64]| b.iter().map(|&n| n + 1000 < b[0]).collect::<Vec<_>>();
    assert_eq!(
        resumed(&bytes[0]),
        [false, true, true],
        "cache on: {bytes:?}"
    );
    assert_eq!(
        resumed(&bytes[1]),
        [false, false, false],
        "cache off: {bytes:?}"
    );
    assert_eq!(
        resumed(&bytes[2]),
        [false, false, false],
        "timeout 0: {bytes:?}"
    );
}

#[test]
fn clients_resume_tls_sessions_as_the_client_session_cache_options_say() {
    // Python's ssl module resumes a TLS session when given the previous one; the script
    // speaks the classic handshake itself (SSLRequest, native password) and prints,
    // per connection, whether its TLS session was resumed. The router's cache of client
    // sessions: on by default; off with client_ssl_session_cache_mode = 0; a session
    // older than client_ssl_session_cache_timeout (here 0 s: every one) is not resumed.
    let srv = tls_server();
    let opts = [
        "",
        "client_ssl_session_cache_mode = 0\n",
        "client_ssl_session_cache_timeout = 0\n",
    ];
    let ports: Vec<u16> = opts.iter().map(|_| free_port()).collect();
    let body: String = opts
        .iter()
        .zip(&ports)
        .enumerate()
        .map(|(i, (o, p))| tls_route(&format!("c{i}"), *p, &srv.addr(), o))
        .collect();
    let _r = Router::start(&body, &ports);
    let script = r#"
import hashlib, socket, ssl, struct, sys

def packet(s, seq, payload):
    s.sendall(struct.pack("<I", len(payload))[:3] + bytes([seq]) + payload)

def read(s):
    h = b""
    while len(h) < 4:
        h += s.recv(4 - len(h))
    n = int.from_bytes(h[:3], "little")
    p = b""
    while len(p) < n:
        p += s.recv(n - len(p))
    return p

ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
out = []
for port in map(int, sys.argv[1:]):
    session, seen = None, []
    for _ in range(3):
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        g = read(raw)
        v = g.index(b"\0", 1)
        nonce = g[v + 5:v + 13] + g[v + 32:v + 44]
        caps = 0x1 | 0x200 | 0x800 | 0x2000 | 0x8000 | 0x80000
        head = struct.pack("<IIB", caps, 1 << 24, 33) + bytes(23)
        packet(raw, 1, head)
        s = ctx.wrap_socket(raw, session=session)
        h1 = hashlib.sha1(b"t").digest()
        h2 = hashlib.sha1(nonce + hashlib.sha1(h1).digest()).digest()
        token = bytes(a ^ b for a, b in zip(h1, h2))
        packet(s, 2, head + b"t\0" + bytes([len(token)]) + token + b"mysql_native_password\0")
        ok = read(s)
        assert ok[0] == 0, ok
        packet(s, 0, b"\x01")
        seen.append("1" if s.session_reused else "0")
        session = s.session
        s.close()
    out.append("".join(seen))
print(" ".join(out))
"#;
    let mut args = vec!["-c".to_string(), script.to_string()];
    args.extend(ports.iter().map(|p| p.to_string()));
    let o = Command::new("/usr/bin/python3")
        .args(&args)
        .output()
        .expect("python3");
    assert_eq!(ok_text(&o).trim(), "011 000 000");
}
