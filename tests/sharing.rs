//! Connection sharing (`connection_sharing = 1`, `connection_sharing_delay = 0`) through
//! the binary, against a real MariaDB, with real clients (PyMySQL and
//! mysql-connector-python over TLS, driven by `tests/sharing/clients.py`): many
//! sessions over few server connections, each session's state kept and checked after
//! every statement; the diagnostics of a client's own last statement across a sharing
//! gap; the pin list; large results; KILL of shared connections.

mod common;

use common::{free_port, tmp_dir, MariaDb, Router};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

fn cert() -> &'static (String, String) {
    static C: OnceLock<(String, String)> = OnceLock::new();
    C.get_or_init(|| {
        common::pki::self_signed(
            "sharing-pki",
            &["ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"],
        )
    })
}

fn server() -> &'static MariaDb {
    static S: OnceLock<MariaDb> = OnceLock::new();
    S.get_or_init(|| {
        let s = MariaDb::start_with(&[
            "--max-allowed-packet=256M".into(),
            "--max-connections=600".into(),
        ]);
        let mut sql = String::from(
            "CREATE USER IF NOT EXISTS 'sh'@'%' IDENTIFIED BY 'sh'; GRANT ALL ON *.* TO 'sh'@'%';",
        );
        for i in 0..10 {
            sql.push_str(&format!(
                "CREATE DATABASE IF NOT EXISTS sh{i}; CREATE TABLE IF NOT EXISTS sh{i}.t (client INT, n INT, KEY (client, n)) ENGINE=InnoDB;"
            ));
        }
        sql.push_str("CREATE TABLE IF NOT EXISTS sh0.d (v INT); INSERT INTO sh0.d VALUES (1),(2),(3); CREATE TABLE IF NOT EXISTS sh0.ai (id INT AUTO_INCREMENT PRIMARY KEY, v INT); CREATE TABLE IF NOT EXISTS sh1.d2 (v INT); \
             CREATE USER IF NOT EXISTS 'shk'@'%' IDENTIFIED BY 'shk'; GRANT ALL ON *.* TO 'shk'@'%'; \
             CREATE USER IF NOT EXISTS 'shl'@'%' IDENTIFIED BY 'shl'; GRANT ALL ON *.* TO 'shl'@'%';");
        admin(&s, &sql);
        s
    })
}

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

/// A sharing route (TLS on the client hop, plain server hop, one I/O thread so that
/// every session meets the same pool).
fn router(max_idle: u32, extra: &str) -> (Router, u16) {
    router_with(
        &format!("max_idle_server_connections = {max_idle}\nidle_timeout = 5"),
        extra,
    )
}

fn router_with(pool: &str, extra: &str) -> (Router, u16) {
    let (c, k) = cert();
    let port = free_port();
    let body = format!(
        "[io]\nthreads = 1\n\n[connection_pool]\n{pool}\n\n[routing:share]\nbind_port = {port}\ndestinations = {}\nrouting_strategy = first-available\nclient_ssl_mode = REQUIRED\nclient_ssl_cert = {c}\nclient_ssl_key = {k}\nserver_ssl_mode = DISABLED\nconnection_sharing = 1\nconnection_sharing_delay = 0\nconnect_timeout = 10\n{extra}",
        server().addr()
    );
    (Router::start_with(&body, &[port], "debug", &[]), port)
}

/// Runs a scenario of clients.py; its one JSON line.
fn clients(args: &[&str]) -> serde_json::Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sharing/clients.py");
    let o = Command::new("/usr/bin/python3")
        .arg(script)
        .args(args)
        .output()
        .expect("/usr/bin/python3 with PyMySQL (apt-get install python3-pymysql)");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "clients.py {args:?} failed:\n{out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let line = out.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| panic!("clients.py {args:?}: {e}: {out}"))
}

/// 200 sessions of one account over a pool of 10: each keeps its own schema, time
/// zone and sql_mode (restored when it moves), one in ten a user variable and a
/// temporary table (pinned), two in ten a transaction per round (its rows seen only by
/// itself, never moved inside it); all checked after every statement while the server
/// sees far fewer connections than clients and unpinned sessions change connections.
#[test]
fn two_hundred_sessions_over_few_server_connections() {
    let s = server();
    let (_r, port) = router(10, "");
    let sock = s.socket.display().to_string();
    let v = clients(&["load", &port.to_string(), &sock, "200", "15"]);
    let fails = v["fails"].as_array().map(|a| a.len()).unwrap_or(99);
    assert_eq!(fails, 0, "{v}");
    assert_eq!(v["finished"], 200, "{v}");
    let max = v["threads_connected_max"].as_u64().unwrap_or(999);
    // 20 pinned sessions hold their own; the rest share what the pool keeps (10) plus
    // the few linked at any moment (about 45 in all when alone); the bound leaves room
    // for the other tests of this binary, which use the same server meanwhile.
    assert!(
        max <= 100,
        "server connections after the logins: {max} for 200 clients: {v}"
    );
    let moved = v["free_clients_moved"].as_u64().unwrap_or(0);
    assert!(
        moved >= 100,
        "unpinned sessions should change server connections: {v}"
    );
    assert_eq!(v["pinned_clients_moved"], 0, "{v}");
    assert!(v["statements"].as_u64().unwrap_or(0) > 2000, "{v}");
    eprintln!("{v}");
}

/// Two sessions over one server connection (`max_idle_server_connections = 1`): each
/// one's SHOW WARNINGS, ROW_COUNT(), FOUND_ROWS(), LAST_INSERT_ID(), schema and
/// sql_mode answer for its own statements although the other ran in between.
#[test]
fn diagnostics_answer_for_the_clients_own_last_statement() {
    let (r, port) = router(1, "");
    let v = clients(&["diag", &port.to_string()]);
    let w = |k: &str| v[k].to_string();
    assert!(
        w("a_warnings").contains("x1") && !w("a_warnings").contains("zz"),
        "{v}"
    );
    assert!(
        w("b_warnings").contains("zz") && !w("b_warnings").contains("x1"),
        "{v}"
    );
    assert_eq!(v["a_row_count"], 3, "{v}");
    assert_eq!(v["a_found_rows"], 3, "{v}");
    assert_eq!(v["a_row_count_after_select"], -1, "{v}");
    assert_eq!(v["a_row_count_after_set"], 0, "{v}");
    assert_eq!(v["a_db"][0], "sh0", "{v}");
    assert!(w("a_db").contains("ANSI_QUOTES"), "{v}");
    assert_eq!(v["b_db"][0], "sh1", "{v}");
    assert!(!w("b_db").contains("ANSI_QUOTES"), "{v}");
    assert_eq!(v["a_last_insert_id"], v["a_last_insert_id_expected"], "{v}");
    // The sessions really moved: restored on a connection the other had used.
    assert!(
        r.wait_log(
            "moved to another server connection",
            std::time::Duration::from_secs(5)
        ),
        "no session moved: {}",
        r.log_text()
    );
}

/// Each item of the pin list keeps its session on its server connection, with its
/// state, while another session of the same account keeps working on another.
#[test]
fn the_pin_list_keeps_sessions_on_their_connection() {
    let (_r, port) = router(2, "");
    for item in [
        "user_variable",
        "temporary_table",
        "get_lock",
        "lock_tables",
        "sql_prepare",
        "transaction",
        "autocommit_off",
        "calc_found_rows",
        "xa",
    ] {
        let v = clients(&["pin", &port.to_string(), item]);
        assert_eq!(v["got"], v["want"], "{item}: {v}");
        assert_eq!(v["a_same"], true, "{item}: {v}");
        assert_eq!(v["b_never_on_a"], true, "{item}: {v}");
    }
    // Prepared statements over the binary protocol (COM_STMT_PREPARE / EXECUTE).
    let v = clients(&["prepared", &port.to_string()]);
    assert_eq!(v["same"], true, "{v}");
    assert_eq!(v["values"], serde_json::json!([5, 6]), "{v}");
}

/// Results of 1 byte to 100 MiB (a row over 16 MiB spans packets) and 100,000 rows
/// reach the client whole through a shared session that another session interleaves
/// with on one server connection.
#[test]
fn results_from_one_row_to_100_mib_are_never_cut() {
    let (_r, port) = router(1, "");
    let v = clients(&["big", &port.to_string(), "100"]);
    for item in v.as_array().expect("a list") {
        assert_eq!(item[1], true, "{v}");
    }
}

/// KILL of a stashed connection: its owner goes on on another connection with its
/// state; KILL of a pinned session's connection ends that session only.
#[test]
fn kill_costs_only_the_session_on_the_connection() {
    let s = server();
    let (_r, port) = router(2, "");
    let v = clients(&["kill", &port.to_string(), &s.socket.display().to_string()]);
    assert_eq!(v["distinct"], true, "{v}");
    assert_eq!(v["a_after_kill"][0][0], "+03:00", "{v}");
    assert_eq!(v["a_after_kill"][0][1], "sh0", "{v}");
    assert_eq!(v["a_after_kill"][0][2], v["b_id"], "{v}");
    assert_eq!(v["b_after"][0][0], "sh1", "{v}");
    assert!(
        v["c_after_kill"].is_string(),
        "the killed session should fail: {v}"
    );
    assert_eq!(v["a_after_c"][0][0], "+03:00", "{v}");
    assert_eq!(v["b_after_c"][0][0], "sh1", "{v}");
}

/// MySQL 9.7 (caching_sha2_password over TLS, COM_RESET_CONNECTION and the restore
/// statements on MySQL): two PyMySQL sessions over one server connection keep their
/// own schema, time zone, sql_mode, character set and FOUND_ROWS(); the 9.7 CLI (query
/// attributes) works through a sharing route.
#[test]
fn mysql97_sessions_share_and_keep_their_state() {
    use common::mysql97;
    let srv = mysql97::shared();
    srv.admin("CREATE DATABASE IF NOT EXISTS sh97a; CREATE DATABASE IF NOT EXISTS sh97b;");
    let (c, k) = cert();
    let port = free_port();
    let body = format!(
        "[io]\nthreads = 1\n\n[connection_pool]\nmax_idle_server_connections = 1\n\n[routing:share]\nbind_port = {port}\ndestinations = {}\nrouting_strategy = first-available\nclient_ssl_mode = PREFERRED\nclient_ssl_cert = {c}\nclient_ssl_key = {k}\nserver_ssl_mode = PREFERRED\nconnection_sharing = 1\nconnection_sharing_delay = 0\n",
        srv.addr()
    );
    let r = Router::start_with(&body, &[port], "debug", &[]);
    let v = clients(&["mysql97", &port.to_string()]);
    for round in v["rounds"].as_array().expect("rounds") {
        assert_eq!(
            round[0],
            serde_json::json!([3, "sh97a", "+05:00", "ANSI_QUOTES", "utf8mb4"]),
            "{v}"
        );
        assert_eq!(
            round[1],
            serde_json::json!(["sh97b", "SYSTEM", "latin1"]),
            "{v}"
        );
    }
    assert!(
        r.wait_log(
            "moved to another server connection",
            std::time::Duration::from_secs(5)
        ),
        "no session moved: {}",
        r.log_text()
    );
    let out = mysql97::cli(
        port,
        &["--ssl-mode=REQUIRED"],
        "USE sh97a; SET time_zone = '+06:00'; SELECT DATABASE(), @@time_zone; SELECT 1 UNION SELECT 2; SELECT FOUND_ROWS()",
    );
    let text = mysql97::cli_result(&out).expect("the 9.7 CLI through a sharing route");
    assert_eq!(text, "sh97a\t+06:00\n1\n2\n2\n", "{text}");
}

/// Clients without TLS are shared where the server gives every COM_CHANGE_USER a new
/// nonce (MySQL; see `plain_clients_are_not_shared` for MariaDB): two mysql_async
/// sessions over plain TCP (caching_sha2 full authentication with the server's RSA key
/// on the first login), one server connection kept idle, keep their own schema and
/// time zone while they move between server connections.
#[test]
fn mysql97_plain_clients_are_shared_and_keep_their_state() {
    use common::mysql97;
    let srv = mysql97::shared();
    srv.admin("CREATE DATABASE IF NOT EXISTS sh97a; CREATE DATABASE IF NOT EXISTS sh97b;");
    two_sessions_share(&srv.addr(), "sha2", "sha2pw", ("sh97a", "sh97b"), None);
}

/// TLS clients with protocol compression over a plain server hop (the router speaks
/// the compression, the server hop has none) are shared like any other: MariaDB,
/// mysql_async with zlib.
#[test]
fn compressed_tls_sessions_are_shared_and_keep_their_state() {
    let srv = server();
    two_sessions_share(
        &srv.addr(),
        "sh",
        "sh",
        ("sh1", "sh2"),
        Some(mysql_async::Compression::default()),
    );
}

/// Two sessions of `user` on a sharing route to `dest` (plain server hop, one idle
/// connection kept), TLS and compressed when `compression` is given: each keeps its
/// schema and time zone through ten rounds, both use one server connection in turn,
/// and a COM_CHANGE_USER afterwards works (sharing ends for that session).
fn two_sessions_share(
    dest: &str,
    user: &str,
    pass: &str,
    dbs: (&str, &str),
    compression: Option<mysql_async::Compression>,
) {
    use mysql_async::prelude::Queryable;
    let (c, k) = cert();
    let port = free_port();
    let body = format!(
        "[io]\nthreads = 1\n\n[connection_pool]\nmax_idle_server_connections = 1\n\n[routing:share]\nbind_port = {port}\ndestinations = {dest}\nrouting_strategy = first-available\nclient_ssl_mode = PREFERRED\nclient_ssl_cert = {c}\nclient_ssl_key = {k}\nserver_ssl_mode = DISABLED\nconnection_sharing = 1\nconnection_sharing_delay = 0\n"
    );
    let r = Router::start_with(&body, &[port], "debug", &[]);
    let mut b = mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(port)
        .prefer_socket(false)
        .user(Some(user))
        .pass(Some(pass));
    if compression.is_some() {
        b = b
            .ssl_opts(Some(
                mysql_async::SslOpts::default().with_danger_accept_invalid_certs(true),
            ))
            .compression(compression);
    }
    let opts: mysql_async::Opts = b.into();
    let rt = common::rt();
    let (seen, ids) = rt.block_on(async {
        let mut a = mysql_async::Conn::new(opts.clone()).await.expect("login a");
        let mut b = mysql_async::Conn::new(opts.clone()).await.expect("login b");
        a.query_drop(format!("USE {}", dbs.0)).await.unwrap();
        a.query_drop("SET time_zone = '+05:00'").await.unwrap();
        b.query_drop(format!("USE {}", dbs.1)).await.unwrap();
        b.query_drop("SET time_zone = '+03:00'").await.unwrap();
        let mut seen = Vec::new();
        let mut ids = std::collections::HashSet::new();
        for _ in 0..10 {
            for (c, name) in [(&mut a, "a"), (&mut b, "b")] {
                let row: Option<(String, String, u64)> = c
                    .query_first("SELECT DATABASE(), @@time_zone, CONNECTION_ID()")
                    .await
                    .unwrap();
                let (db, tz, id) = row.expect("a row");
                ids.insert((name, id));
                seen.push((name, db, tz));
            }
        }
        // COM_CHANGE_USER ends sharing for that session; the rest of it is relayed
        // (with the change-user guard for a TLS client).
        a.change_user(
            mysql_async::ChangeUserOpts::default()
                .with_user(Some(user.into()))
                .with_pass(Some(pass.into())),
        )
        .await
        .expect("change user");
        let who: Option<String> = a.query_first("SELECT CURRENT_USER()").await.unwrap();
        assert_eq!(who, Some(format!("{user}@%")));
        a.disconnect().await.unwrap();
        b.disconnect().await.unwrap();
        (seen, ids)
    });
    for (name, db, tz) in &seen {
        let want = if *name == "a" {
            (dbs.0, "+05:00")
        } else {
            (dbs.1, "+03:00")
        };
        assert_eq!((db.as_str(), tz.as_str()), want, "{name}: {seen:?}");
    }
    let on = |who: &str| -> std::collections::HashSet<u64> {
        ids.iter()
            .filter(|(n, _)| *n == who)
            .map(|(_, id)| *id)
            .collect()
    };
    assert!(
        on("a").intersection(&on("b")).count() > 0,
        "the two sessions never used the same server connection: {ids:?}"
    );
    assert!(
        r.log_text().contains("moved to another server connection"),
        "no session moved: {}",
        r.log_text()
    );
}

/// SIGKILL of a whole server: the sessions on it get an error at their next statement
/// (no hang), the sessions of another route's server keep their state, the router lives.
#[test]
fn a_killed_server_costs_only_its_sessions() {
    use std::io::{BufRead, BufReader, Write};
    let mut dead = MariaDb::start();
    let setup = "CREATE USER IF NOT EXISTS 'sh'@'%' IDENTIFIED BY 'sh'; GRANT ALL ON *.* TO 'sh'@'%'; CREATE DATABASE IF NOT EXISTS sh0;";
    admin(&dead, setup);
    let live = server();
    let (c, k) = cert();
    let (pa, pb) = (free_port(), free_port());
    let route = |name: &str, port: u16, dest: String| {
        format!("[routing:{name}]\nbind_port = {port}\ndestinations = {dest}\nrouting_strategy = first-available\nclient_ssl_mode = REQUIRED\nclient_ssl_cert = {c}\nclient_ssl_key = {k}\nserver_ssl_mode = DISABLED\nconnection_sharing = 1\nconnection_sharing_delay = 0\nconnect_timeout = 3\n\n")
    };
    let body = format!(
        "[io]\nthreads = 1\n\n[connection_pool]\nmax_idle_server_connections = 2\n\n{}{}",
        route("a", pa, dead.addr()),
        route("b", pb, live.addr())
    );
    let mut r = Router::start_with(&body, &[pa, pb], "debug", &[]);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sharing/clients.py");
    let mut child = Command::new("/usr/bin/python3")
        .args([script, "servers", &pa.to_string(), &pb.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("/usr/bin/python3");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let ready = lines.next().and_then(|l| l.ok()).unwrap_or_default();
    assert_eq!(ready, "ready");
    dead.kill();
    let _ = writeln!(child.stdin.as_mut().expect("stdin"));
    let line = lines.next().and_then(|l| l.ok()).unwrap_or_default();
    let _ = child.wait();
    let v: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    for a in v["a"].as_array().expect("a") {
        assert!(
            a.is_string(),
            "a session on the killed server answered: {v}"
        );
    }
    assert!(v["a_seconds"].as_f64().unwrap_or(99.0) < 15.0, "{v}");
    for (i, b) in v["b"].as_array().expect("b").iter().enumerate() {
        assert_eq!(b[0][0], format!("+0{}:00", i + 3), "{v}\n{}", r.log_text());
        assert_eq!(b[0][1], "sh1", "{v}");
    }
    assert_eq!(v["b_pinned"][0][0], 7, "{v}");
    assert!(v["new_a"].is_string() && v["new_a"] != "connected", "{v}");
    assert!(r.is_running(), "the router died");
}

/// Pool bound, idle_timeout and the route's max_connections together: 30 sessions (the
/// route's limit; the 31st gets MySQL Router's 1040) settle on at most 3 server
/// connections; idle_timeout does not take the connections unlinked sessions need; every
/// session then works with its own state; when they quit, the idle connections time out.
#[test]
fn pool_limit_idle_timeout_and_max_connections() {
    let s = server();
    let (_r, port) = router_with(
        "max_idle_server_connections = 3\nidle_timeout = 2",
        "max_connections = 30\n",
    );
    let v = clients(&["limits", &port.to_string(), &s.socket.display().to_string()]);
    assert_eq!(v["accepted"], 30, "{v}");
    let over = v["over_limit"].as_str().unwrap_or_default();
    // MySQL Router's packet has no SQL state; PyMySQL cuts 5 characters as if it had.
    assert!(
        over.contains("1040") && over.contains("connections to MySQL Router"),
        "{v}"
    );
    let idle = v["idle"].as_u64().unwrap_or(99);
    assert!((1..=3).contains(&idle), "{v}");
    let kept = v["idle_after_timeout"].as_u64().unwrap_or(99);
    assert!((1..=3).contains(&kept), "{v}");
    assert_eq!(v["states_ok"], 30, "{v}");
    assert!(v["busy_max"].as_u64().unwrap_or(99) <= 3, "{v}");
    assert_eq!(v["after_quit_and_timeout"], 0, "{v}");
    assert_eq!(v["reconnect"], 1, "{v}");
}

/// COM_CHANGE_USER on a shared route: the session is never shared again and its
/// connection, logged in as the other account, never serves a session of the first
/// account (sessions check CURRENT_USER() before and after it quits).
#[test]
fn a_changed_user_never_leaks_to_the_first_account() {
    let (_r, port) = router(1, "");
    let v = clients(&["change_user", &port.to_string()]);
    assert_eq!(v["changed"], serde_json::json!(["sh@%", "shk@%"]), "{v}");
    assert_eq!(v["after"], serde_json::json!(["sh@%"]), "{v}");
}

/// A session whose schema was dropped while it was unlinked cannot be restored on
/// another connection: it gets a clear error (2013 naming the server's answer) and ends;
/// the connection goes back to the pool and the other session goes on on it.
#[test]
fn a_session_that_cannot_be_restored_fails_alone() {
    let s = server();
    let (_r, port) = router(1, "");
    let v = clients(&[
        "dropped_schema",
        &port.to_string(),
        &s.socket.display().to_string(),
    ]);
    let a = v["a"].as_str().unwrap_or_default();
    assert!(
        a.contains("2013") && a.contains("could not be restored") && a.contains("shdrop"),
        "{v}"
    );
    assert_eq!(v["b"][0][0], "sh1", "{v}");
    assert_eq!(v["b_same_connection"], true, "{v}");
}

/// On a PREFERRED route a plain-TCP client is not shared: it keeps its server
/// connection, which the TLS sessions of the same account (sharing one connection
/// between them) never get.
#[test]
fn plain_clients_are_not_shared() {
    let (c, k) = cert();
    let port2 = free_port();
    let body = format!(
        "[io]\nthreads = 1\n\n[connection_pool]\nmax_idle_server_connections = 1\n\n[routing:share]\nbind_port = {port2}\ndestinations = {}\nrouting_strategy = first-available\nclient_ssl_mode = PREFERRED\nclient_ssl_cert = {c}\nclient_ssl_key = {k}\nserver_ssl_mode = DISABLED\nconnection_sharing = 1\nconnection_sharing_delay = 0\n",
        server().addr()
    );
    let _r = Router::start_with(&body, &[port2], "debug", &[]);
    let v = clients(&["plain", &port2.to_string()]);
    assert_eq!(v["plain_ids"], 1, "{v}");
    assert_eq!(v["tls_on_plain"], false, "{v}");
    assert_eq!(
        v["plain_state"],
        serde_json::json!(["+07:00", "sh0"]),
        "{v}"
    );
}

/// mysql_async (CLIENT_DEPRECATE_EOF: result sets end in an OK-as-EOF whose warning
/// count the router must read): a session whose result set left a warning keeps its
/// connection until a clean statement, so another session of the account waits for it
/// instead of taking it, and SHOW WARNINGS answers for the right statement.
#[test]
fn warnings_of_a_result_set_hold_the_connection_with_deprecate_eof() {
    use mysql_async::prelude::Queryable;
    let (_r, port) = router(1, "");
    let rt = common::rt();
    let opts = |db: &str| -> mysql_async::Opts {
        mysql_async::OptsBuilder::default()
            .ip_or_hostname("127.0.0.1")
            .tcp_port(port)
            .user(Some("sh"))
            .pass(Some("sh"))
            .db_name(Some(db))
            .prefer_socket(false)
            .ssl_opts(Some(
                mysql_async::SslOpts::default()
                    .with_danger_accept_invalid_certs(true)
                    .with_danger_skip_domain_validation(true),
            ))
            .into()
    };
    let (warnings, b_db) = rt.block_on(async {
        let mut a = mysql_async::Conn::new(opts("sh0")).await.expect("a");
        let mut b = mysql_async::Conn::new(opts("sh1")).await.expect("b");
        a.query_drop("SELECT 1").await.expect("a 1");
        b.query_drop("SELECT 1").await.expect("b 1");
        let _: Vec<i64> = a
            .query("SELECT CAST('x1' AS SIGNED)")
            .await
            .expect("a warn");
        // B wants a connection now; the only one is A's, held by its warning.
        let bq = tokio::spawn(async move {
            let db: Option<String> = b.query_first("SELECT DATABASE()").await.expect("b db");
            (b, db)
        });
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let w: Vec<(String, u32, String)> = a.query("SHOW WARNINGS").await.expect("show");
        a.query_drop("SELECT 1").await.expect("a clean");
        let (b, db) = bq.await.expect("b task");
        let _ = a.disconnect().await;
        let _ = b.disconnect().await;
        (w, db)
    });
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].2.contains("x1"), "{warnings:?}");
    assert_eq!(b_db.as_deref(), Some("sh1"));
}

/// MySQL Router's `/connection_pool/main/status` while sessions are unlinked: their
/// connections count as stashed (not idle), and once the sessions are back and gone
/// nothing is stashed any more; `/metrics` agrees.
#[test]
fn rest_api_counts_stashed_connections() {
    use common::eventually;
    use common::http::{curl, monitoring_sections, passwd_file};
    use std::time::Duration;
    let dir = tmp_dir("sharing-rest");
    let passwd = passwd_file(&dir, "alice", "secret");
    let http = free_port();
    let extra = format!(
        "\n{}\n[rest_connection_pool]\nrequire_realm=r\n\n[metrics]\n",
        monitoring_sections(http, &passwd)
    );
    let (_r, port) = router(8, &extra);
    let status = || -> serde_json::Value {
        let a = curl(
            &["-u", "alice:secret"],
            &format!("http://127.0.0.1:{http}/api/20190715/connection_pool/main/status"),
        )
        .expect("curl");
        assert_eq!(a.status, 200, "{}", a.body);
        serde_json::from_str(&a.body).expect("status JSON")
    };
    let metric = |name: &str| -> Option<u64> {
        let a = curl(&[], &format!("http://127.0.0.1:{http}/metrics"))?;
        a.body
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse().ok())
    };
    let (ready, go) = (dir.join("ready"), dir.join("go"));
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sharing/clients.py");
    let child = Command::new("/usr/bin/python3")
        .arg(script)
        .args(["hold", &port.to_string(), "4"])
        .arg(&ready)
        .arg(&go)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("/usr/bin/python3");
    assert!(
        eventually(Duration::from_secs(20), || ready.exists()),
        "the 4 sessions did not log in"
    );
    // Idle sessions with connection_sharing_delay = 0: their connections are stashed.
    let mut seen = serde_json::Value::Null;
    let stashed = eventually(Duration::from_secs(10), || {
        seen = status();
        seen["stashedServerConnections"].as_u64().unwrap_or(0) >= 1
    });
    assert!(
        stashed,
        "no stashed connection while 4 sessions idle: {seen}"
    );
    let in_pool = seen["stashedServerConnections"].as_u64().unwrap_or(0)
        + seen["idleServerConnections"].as_u64().unwrap_or(0);
    assert!(in_pool <= 8, "over max_idle_server_connections: {seen}");
    assert!(
        metric("mysqlrouter_connection_pool_stashed_server_connections").unwrap_or(0) >= 1,
        "metrics disagree with {seen}"
    );
    std::fs::write(&go, b"").expect("go file");
    let out = child.wait_with_output().expect("clients.py");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains(r#""ok": 4"#),
        "sessions after the gap: {text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The sessions quit: nothing is owned by a session any more; what the pool keeps is
    // idle (reset and parked).
    let back = eventually(Duration::from_secs(10), || {
        seen = status();
        seen["stashedServerConnections"] == 0 && seen["idleServerConnections"].as_u64() >= Some(1)
    });
    assert!(back, "after the sessions quit: {seen}");
    assert_eq!(
        metric("mysqlrouter_connection_pool_stashed_server_connections"),
        Some(0)
    );
}

/// Responses that end in unusual places reach the client as the server sent them, in a
/// shared session as on a direct connection: an ERR after 1,999 rows (text and binary
/// protocol), multi-statements with an error in the middle, CALLs with two result sets
/// and with an error after the first. Two sessions take turns on one idle server
/// connection, and after every response each answers its own next statement.
/// PyMySQL (CLIENT_DEPRECATE_EOF off) compares its whole transcript with the same
/// scenario run directly, through the sharing route and through a pooled one with
/// sharing off; mysql_async (DEPRECATE_EOF on) counts the rows that arrive
/// before the ERR, over the text and the binary protocol.
#[test]
fn responses_that_end_early_or_in_several_results_arrive_as_sent() {
    use mysql_async::prelude::Queryable;
    let s = server();
    let (r, port) = router(1, "");
    let sock = s.socket.display().to_string();
    let direct = clients(&["midstream", "0", &sock]);
    // What the scenario means to produce, so that a comparison of two wrong transcripts
    // cannot pass: the ERR after the rows, the multi-statement results up to the error.
    let got = |i: usize| direct["steps"][i][1].clone();
    let ab = serde_json::json!([["sh0", "a"], ["sh1", "b"]]);
    assert_eq!(got(0), serde_json::json!([["error", 1242]]), "{direct}");
    assert_eq!(got(1), got(0), "{direct}");
    assert_eq!(
        got(2),
        serde_json::json!([[[1]], 0, ["error", 1054]]),
        "{direct}"
    );
    assert_eq!(got(3), serde_json::json!([[[4]], 0, [[5, 6]]]), "{direct}");
    assert_eq!(got(4), serde_json::json!([[[1]], [[2, 3]], 0]), "{direct}");
    assert_eq!(
        got(5),
        serde_json::json!([[[1]], ["error", 1054]]),
        "{direct}"
    );
    for step in direct["steps"].as_array().expect("steps") {
        assert_eq!(step[2], ab, "{direct}");
    }
    let routed = clients(&["midstream", &port.to_string(), &sock]);
    assert_eq!(routed, direct, "through the router vs direct");
    assert!(
        r.log_text().contains("moved to another server connection"),
        "the sessions never took turns on one connection: {}",
        r.log_text()
    );
    // The same with sharing off: a pooled route's tracking relay.
    let (c, k) = cert();
    let pool_port = free_port();
    let pooled = Router::start_with(
        &format!(
            "[connection_pool]\nmax_idle_server_connections = 2\n\n[routing:pooled]\nbind_port = {pool_port}\ndestinations = {}\nrouting_strategy = first-available\nclient_ssl_mode = REQUIRED\nclient_ssl_cert = {c}\nclient_ssl_key = {k}\nserver_ssl_mode = DISABLED\n",
            s.addr()
        ),
        &[pool_port],
        "info",
        &[],
    );
    let routed = clients(&["midstream", &pool_port.to_string(), &sock]);
    assert_eq!(
        routed, direct,
        "through a pooled route (sharing off) vs direct"
    );
    drop(pooled);

    // DEPRECATE_EOF on (mysql_async): the rows before the ERR, text and binary.
    const ERR_MID_ROWS: &str =
        "SELECT seq, (SELECT v FROM sh0.d WHERE seq >= 2000) FROM seq_1_to_3000";
    async fn drain<P: mysql_async::prelude::Protocol>(
        r: mysql_async::Result<mysql_async::QueryResult<'_, '_, P>>,
    ) -> (usize, Option<u16>) {
        let code = |e: mysql_async::Error| match e {
            mysql_async::Error::Server(s) => Some(s.code),
            other => panic!("not a server error: {other}"),
        };
        let mut r = match r {
            Ok(r) => r,
            Err(e) => return (0, code(e)),
        };
        let mut n = 0;
        loop {
            match r.next().await {
                Ok(Some(_)) => n += 1,
                Ok(None) => return (n, None),
                Err(e) => return (n, code(e)),
            }
        }
    }
    // Bounded: a router that lost track of a response would leave the client waiting.
    let run = |opts: mysql_async::Opts| {
        let within = std::time::Duration::from_secs(60);
        common::rt()
            .block_on(async move {
                tokio::time::timeout(within, async move {
                    let mut a = mysql_async::Conn::new(opts.clone()).await.expect("a");
                    let mut b = Some(mysql_async::Conn::new(opts).await.expect("b"));
                    if let Some(b) = b.as_mut() {
                        b.query_drop("USE sh1").await.expect("b use");
                    }
                    let mut seen = Vec::new();
                    // Text first, both sessions taking turns on the one connection; then binary,
                    // which pins A for good (every COM_STMT_* pins), so B, which could only wait
                    // for a connection of its account, leaves first.
                    for binary in [false, false, true, true] {
                        if binary {
                            if let Some(b) = b.take() {
                                b.disconnect().await.expect("b quits");
                            }
                        }
                        let got = if binary {
                            drain(a.exec_iter(ERR_MID_ROWS, ()).await).await
                        } else {
                            drain(a.query_iter(ERR_MID_ROWS).await).await
                        };
                        let mine: Option<String> =
                            a.query_first("SELECT DATABASE()").await.expect("a");
                        let theirs: Option<String> = match b.as_mut() {
                            Some(b) => b.query_first("SELECT DATABASE()").await.expect("b"),
                            None => None,
                        };
                        seen.push((binary, got, mine, theirs));
                    }
                    let _ = a.disconnect().await;
                    seen
                })
                .await
            })
            .expect("mysql_async's part within 60 s")
    };
    let direct = run(sh0_opts(
        mysql_async::OptsBuilder::default().socket(Some(sock.clone())),
    ));
    let routed = run(sh0_opts(routed_builder(port)));
    for (binary, got, mine, theirs) in &direct {
        let b_db = if *binary { None } else { Some("sh1") };
        assert_eq!(
            (*got, mine.as_deref(), theirs.as_deref()),
            ((1999, Some(1242)), Some("sh0"), b_db),
            "direct, binary {binary}"
        );
    }
    assert_eq!(routed, direct, "mysql_async through the router vs direct");
}

/// A client's own COM_RESET_CONNECTION (mysql_async `Conn::reset`) ends its pin and
/// puts the session back where the server puts it: after a pinning user variable, a
/// changed schema, time zone and character set, the session answers as a direct
/// connection does after the same reset, both at once and after it has moved to the
/// other session's connection, and it is shared again. (`@v` is read only at the end:
/// reading a user variable pins.)
#[test]
fn the_clients_own_reset_ends_its_pin_and_its_state() {
    use mysql_async::prelude::Queryable;
    let s = server();
    let (_r, port) = router(1, "");
    type Answer = (Option<String>, String, String);
    let run = |opts: mysql_async::Opts| {
        common::rt().block_on(async move {
            tokio::time::timeout(std::time::Duration::from_secs(60), async move {
                let mut a = mysql_async::Conn::new(opts.clone()).await.expect("a");
                let mut b = mysql_async::Conn::new(opts).await.expect("b");
                b.query_drop("USE sh1").await.expect("b use");
                a.query_drop("USE sh2").await.expect("a use");
                a.query_drop("SET time_zone = '+05:00'")
                    .await
                    .expect("a tz");
                a.query_drop("SET NAMES latin1").await.expect("a names");
                a.query_drop("SET @v = 7").await.expect("a var");
                let ask = "SELECT DATABASE(), @@time_zone, @@character_set_client, CONNECTION_ID()";
                let mut answers: Vec<Answer> = Vec::new();
                let row: (Option<String>, String, String, u64) =
                    a.query_first(ask).await.expect("a before").expect("a row");
                answers.push((row.0, row.1, row.2));
                let v_before: Option<Option<i64>> = a.query_first("SELECT @v").await.expect("a @v");
                a.reset().await.expect("COM_RESET_CONNECTION");
                let (mut a_ids, mut b_ids) = (Vec::new(), Vec::new());
                for _ in 0..4 {
                    let row: (Option<String>, String, String, u64) =
                        a.query_first(ask).await.expect("a after").expect("a row");
                    answers.push((row.0, row.1, row.2));
                    a_ids.push(row.3);
                    let (db, id): (Option<String>, u64) = b
                        .query_first("SELECT DATABASE(), CONNECTION_ID()")
                        .await
                        .expect("b")
                        .expect("b row");
                    assert_eq!(db.as_deref(), Some("sh1"));
                    b_ids.push(id);
                }
                let v_after: Option<Option<i64>> =
                    a.query_first("SELECT @v").await.expect("a @v after");
                let _ = a.disconnect().await;
                let _ = b.disconnect().await;
                ((v_before, v_after), answers, a_ids, b_ids)
            })
            .await
            .expect("within 60 s")
        })
    };
    let sock = s.socket.display().to_string();
    let (vars, direct, _, _) = run(sh0_opts(
        mysql_async::OptsBuilder::default().socket(Some(sock)),
    ));
    // The direct answers are the reference: the state set before the reset was there
    // and the reset took the variable and the time zone away.
    assert_eq!(vars, (Some(Some(7)), Some(None)), "direct");
    assert_eq!(
        (
            direct[0].0.as_deref(),
            direct[0].1.as_str(),
            direct[0].2.as_str()
        ),
        (Some("sh2"), "+05:00", "latin1"),
        "{direct:?}"
    );
    assert!(direct[1..].iter().all(|a| a.1 != "+05:00"), "{direct:?}");
    let (routed_vars, routed, a_ids, b_ids) = run(sh0_opts(routed_builder(port)));
    assert_eq!(routed_vars, vars, "@v through the router vs direct");
    assert_eq!(
        routed, direct,
        "through the router vs direct, after the reset"
    );
    assert!(
        a_ids.iter().any(|id| b_ids.contains(id)),
        "after its reset the session never shared a connection: a {a_ids:?}, b {b_ids:?}"
    );
}

/// A session without a default schema never gets another session's: COM_RESET_CONNECTION
/// keeps the connection's schema and no statement clears it, so such a session is not
/// moved to a connection another session used (README, "Connection sharing"), while a
/// session with a schema still shares.
#[test]
fn a_session_without_a_schema_never_sees_another_sessions_schema() {
    use mysql_async::prelude::Queryable;
    let (_r, port) = router(1, "");
    let opts = |db: Option<&str>| -> mysql_async::Opts {
        mysql_async::OptsBuilder::default()
            .ip_or_hostname("127.0.0.1")
            .tcp_port(port)
            .prefer_socket(false)
            .user(Some("sh"))
            .pass(Some("sh"))
            .db_name(db)
            .ssl_opts(Some(
                mysql_async::SslOpts::default()
                    .with_danger_accept_invalid_certs(true)
                    .with_danger_skip_domain_validation(true),
            ))
            .into()
    };
    let seen = common::rt().block_on(async move {
        tokio::time::timeout(std::time::Duration::from_secs(60), async move {
            let mut x = mysql_async::Conn::new(opts(Some("sh1"))).await.expect("x");
            let mut y = mysql_async::Conn::new(opts(None)).await.expect("y");
            let mut seen = Vec::new();
            for _ in 0..6 {
                let xs: Option<Option<String>> =
                    x.query_first("SELECT DATABASE()").await.expect("x");
                let ys: Option<Option<String>> =
                    y.query_first("SELECT DATABASE()").await.expect("y");
                seen.push((xs.flatten(), ys.flatten()));
            }
            let _ = x.disconnect().await;
            let _ = y.disconnect().await;
            seen
        })
        .await
        .expect("within 60 s")
    });
    for (xs, ys) in &seen {
        assert_eq!(
            (xs.as_deref(), ys.as_deref()),
            (Some("sh1"), None),
            "{seen:?}"
        );
    }
}

/// LOAD DATA LOCAL INFILE through a sharing route, as on a direct connection: with
/// the `mariadb` CLI over TLS (`--local-infile`), a 5,000-line file loads whole and a
/// missing file (the client answers the server's request with an empty packet) gets the
/// CLI's error; with PyMySQL, the same session goes on after the missing file and loads
/// again.
#[test]
fn local_infile_loads_and_a_missing_file_leaves_the_session_usable() {
    let s = server();
    let (_r, port) = router(1, "");
    let dir = tmp_dir("infile");
    let file = dir.join("rows.csv");
    let rows: String = (1..=5000).map(|i| format!("{i},{}\n", i * 2)).collect();
    std::fs::write(&file, rows).expect("write the file");
    admin(s, "CREATE TABLE IF NOT EXISTS sh2.li (a INT, b INT)");
    let f = file.display().to_string();
    let sql = format!(
        "DELETE FROM sh2.li; \
         LOAD DATA LOCAL INFILE '{f}' INTO TABLE sh2.li FIELDS TERMINATED BY ','; \
         SELECT COUNT(*), SUM(b) FROM sh2.li; \
         LOAD DATA LOCAL INFILE '{f}.missing' INTO TABLE sh2.li FIELDS TERMINATED BY ','"
    );
    let run = |target: &[&str]| -> (String, String) {
        let o = Command::new("mariadb")
            .arg("--no-defaults")
            .args(target)
            .args([
                "-ush",
                "-psh",
                "-Dsh0",
                "--local-infile=1",
                "-N",
                "-B",
                "-e",
            ])
            .arg(&sql)
            .stdin(Stdio::null())
            .output()
            .expect("mariadb client");
        (
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let sock = s.socket.display().to_string();
    let direct = run(&["-S", &sock]);
    // What the script means to produce, so that two wrong transcripts cannot agree.
    assert_eq!(direct.0, "5000\t25005000\n", "direct: {direct:?}");
    assert!(
        direct.1.contains("ERROR 2 ") && direct.1.contains(".missing"),
        "direct: {direct:?}"
    );
    let p = port.to_string();
    let routed = run(&["-h127.0.0.1", "-P", &p, "--protocol=TCP", "--ssl"]);
    assert_eq!(
        routed, direct,
        "the CLI through the sharing route vs direct"
    );

    let direct = clients(&["infile", "0", &sock, &f]);
    assert_eq!(
        direct,
        serde_json::json!([
            [5000],
            [[[5000, 25005000, "sh0"]]],
            [["error", 1017]],
            [[[42]]],
            [5000],
            [[[10000, 50010000, "sh0"]]]
        ]),
        "direct"
    );
    let routed = clients(&["infile", &p, &sock, &f]);
    assert_eq!(
        routed, direct,
        "PyMySQL through the sharing route vs direct"
    );
}

/// Account `sh`, schema `sh0`, on `builder`'s target (mysql_async).
fn sh0_opts(builder: mysql_async::OptsBuilder) -> mysql_async::Opts {
    builder
        .user(Some("sh"))
        .pass(Some("sh"))
        .db_name(Some("sh0"))
        .into()
}

/// mysql_async to the router's `port` over TLS (the test certificate accepted).
fn routed_builder(port: u16) -> mysql_async::OptsBuilder {
    mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(port)
        .prefer_socket(false)
        .ssl_opts(Some(
            mysql_async::SslOpts::default()
                .with_danger_accept_invalid_certs(true)
                .with_danger_skip_domain_validation(true),
        ))
}
