//! Routing against real MariaDB servers, through the router binary, with real clients.

mod common;

use std::time::{Duration, Instant};

use common::*;

fn dests(s: &[&MariaDb]) -> String {
    s.iter().map(|m| m.addr()).collect::<Vec<_>>().join(",")
}

fn route(name: &str, port: u16, strategy: &str, servers: &[&MariaDb]) -> String {
    format!(
        "[routing:{name}]\nbind_port = {port}\ndestinations = {}\nrouting_strategy = {strategy}\n",
        dests(servers)
    )
}

/// Restarts a stopped server and waits until the router's quarantine has let it back.
fn bring_back(r: &Router, s: &mut MariaDb) {
    s.restart();
    r.expect_log(&format!("destination '{}' is reachable again", s.addr()));
}

#[test]
fn round_robin_rotates_over_servers() {
    let (s1, s2, s3) = (MariaDb::start(), MariaDb::start(), MariaDb::start());
    let port = free_port();
    let _r = Router::start(&route("rr", port, "round-robin", &[&s1, &s2, &s3]), &[port]);
    let got: Vec<u16> = (0..4).map(|_| cli_port_tcp(port).unwrap()).collect();
    assert_eq!(got, vec![s1.port, s2.port, s3.port, s1.port]);
}

#[test]
fn legacy_mode_read_write_and_read_only() {
    let (s1, s2) = (MariaDb::start(), MariaDb::start());
    let (rw, ro) = (free_port(), free_port());
    let body = format!(
        "[routing:rw]\nbind_port = {rw}\ndestinations = {d}\nmode = read-write\n[routing:ro]\nbind_port = {ro}\ndestinations = {d}\nmode = read-only\n",
        d = dests(&[&s1, &s2])
    );
    let _r = Router::start(&body, &[rw, ro]);
    assert_eq!(cli_port_tcp(rw).unwrap(), s1.port);
    assert_eq!(cli_port_tcp(rw).unwrap(), s1.port);
    assert_eq!(cli_port_tcp(ro).unwrap(), s1.port);
    assert_eq!(cli_port_tcp(ro).unwrap(), s2.port);
}

#[test]
fn first_available_sticks_to_the_remembered_server() {
    let (mut s1, mut s2, s3) = (MariaDb::start(), MariaDb::start(), MariaDb::start());
    let port = free_port();
    let r = Router::start(
        &route("fa", port, "first-available", &[&s1, &s2, &s3]),
        &[port],
    );
    assert_eq!(cli_port_tcp(port).unwrap(), s1.port);
    s1.stop();
    assert_eq!(cli_port_tcp(port).unwrap(), s2.port);
    // s1 comes back and leaves quarantine; the route stays on s2.
    bring_back(&r, &mut s1);
    for _ in 0..3 {
        assert_eq!(cli_port_tcp(port).unwrap(), s2.port);
    }
    // s2 fails: move on to s3, not back to s1.
    s2.stop();
    assert_eq!(cli_port_tcp(port).unwrap(), s3.port);
    for (from, to) in [(&s1, &s2), (&s2, &s3)] {
        let line = r.log_line(&format!(
            "[routing:fa] switched destination from '{}' to '{}'",
            from.addr(),
            to.addr()
        ));
        assert!(line.contains(" routing WARNING ["), "{line}");
    }
}

/// The remembered destination lives in the process: a restarted router starts from the
/// top of the list again.
#[test]
fn first_available_restart_starts_from_the_top() {
    let (mut s1, s2) = (MariaDb::start(), MariaDb::start());
    let port = free_port();
    let body = route("fa", port, "first-available", &[&s1, &s2]);
    let r = Router::start(&body, &[port]);
    s1.stop();
    assert_eq!(cli_port_tcp(port).unwrap(), s2.port);
    bring_back(&r, &mut s1);
    assert_eq!(cli_port_tcp(port).unwrap(), s2.port, "sticks to s2");
    drop(r);
    let _r = Router::start(&body, &[port]);
    assert_eq!(
        cli_port_tcp(port).unwrap(),
        s1.port,
        "a new process starts at s1"
    );
}

#[test]
fn next_available_never_goes_back() {
    let (mut s1, mut s2) = (MariaDb::start(), MariaDb::start());
    let port = free_port();
    let r = Router::start(&route("na", port, "next-available", &[&s1, &s2]), &[port]);
    assert_eq!(cli_port_tcp(port).unwrap(), s1.port);
    s1.stop();
    assert_eq!(cli_port_tcp(port).unwrap(), s2.port);
    bring_back(&r, &mut s1);
    assert_eq!(cli_port_tcp(port).unwrap(), s2.port);
    s2.stop();
    // Past the end: no server, although s1 is up...
    let e = lib_port(port).unwrap_err();
    assert_eq!(e, "2003: Can't connect to remote MySQL server");
    // ...and it stays so after s2 was quarantined (s1 is never tried again).
    r.expect_log(&format!(
        "destination '{}' is unreachable and was quarantined",
        s2.addr()
    ));
    for _ in 0..2 {
        assert_eq!(
            lib_port(port).unwrap_err(),
            "2003: Can't connect to remote MySQL server"
        );
    }
}

/// next-available closes its listener while every destination is quarantined and
/// listens again when one recovers (then past the end of its list: 2003).
#[test]
fn next_available_closes_its_listener_while_all_are_down() {
    let mut s1 = MariaDb::start();
    let port = free_port();
    let r = Router::start(&route("na", port, "next-available", &[&s1]), &[port]);
    s1.stop();
    assert_eq!(
        lib_port(port).unwrap_err(),
        "2003: Can't connect to remote MySQL server"
    );
    r.expect_log(&format!(
        "Stop accepting connections for routing routing:na listening on 127.0.0.1:{port}"
    ));
    assert!(
        eventually(WAIT, || { refused(port) }),
        "the listener stays open while all destinations are quarantined"
    );
    s1.restart();
    r.expect_log_count(
        &format!(
            "Start accepting connections for routing routing:na listening on '127.0.0.1:{port}'"
        ),
        2,
    );
    assert_eq!(
        lib_port(port).unwrap_err(),
        "2003: Can't connect to remote MySQL server"
    );
}

#[test]
fn quarantine_skips_and_recovers_within_interval() {
    let (s1, mut s2, s3) = (MariaDb::start(), MariaDb::start(), MariaDb::start());
    let port = free_port();
    let body = route("rr", port, "round-robin", &[&s1, &s2, &s3])
        + "[destination_status]\nerror_quarantine_interval = 1\n";
    let r = Router::start(&body, &[port]);
    s2.stop();
    let got: Vec<u16> = (0..6).map(|_| cli_port_tcp(port).unwrap()).collect();
    assert!(!got.contains(&s2.port), "{got:?}");
    r.expect_log(&format!(
        "destination '{}' is unreachable and was quarantined",
        s2.addr()
    ));
    s2.restart();
    let back = Instant::now();
    // interval (1 s) + a wide margin for the clients on a loaded machine (the interval
    // itself is measured in quarantine_threshold_and_interval_are_honoured)
    let seen = eventually(WAIT, || {
        (0..3).any(|_| cli_port_tcp(port).ok() == Some(s2.port))
    });
    assert!(seen, "s2 not used again {:?} after restart", back.elapsed());
}

#[test]
fn listener_closes_while_all_down_and_reopens() {
    let mut s1 = MariaDb::start();
    let port = free_port();
    let r = Router::start(&route("one", port, "round-robin", &[&s1]), &[port]);
    s1.stop();
    // The client whose connect fails gets the router's 2003 packet...
    let e = lib_port(port).unwrap_err();
    assert_eq!(e, "2003: Can't connect to remote MySQL server");
    // ...then the listener closes: TCP refused.
    assert!(eventually(WAIT, || { refused(port) }));
    r.expect_log(&format!(
        "Stop accepting connections for routing routing:one listening on 127.0.0.1:{port}"
    ));
    s1.restart();
    assert!(eventually(WAIT, || cli_port_tcp(port).ok() == Some(s1.port)));
    r.expect_log_count(
        &format!(
            "Start accepting connections for routing routing:one listening on '127.0.0.1:{port}'"
        ),
        2,
    );
}

#[test]
fn first_available_keeps_listening_and_answers_2003() {
    let mut s1 = MariaDb::start();
    let port = free_port();
    let r = Router::start_with(
        &route("fa", port, "first-available", &[&s1]),
        &[port],
        "debug",
        &[],
    );
    s1.stop();
    for _ in 0..2 {
        let e = lib_port(port).unwrap_err();
        assert_eq!(e, "2003: Can't connect to remote MySQL server");
    }
    // Raw bytes as MySQL Router 9.7.4 sends them.
    let bytes = raw_exchange(port, b"", Duration::from_secs(3));
    let mut want = vec![0x27, 0, 0, 0, 0xff, 0xd3, 0x07];
    want.extend_from_slice(b"Can't connect to remote MySQL server");
    assert_eq!(bytes, want);
    r.expect_log(&format!("connect({}) failed after", s1.addr()));
    r.expect_log(&format!(
        "connect(/* {} */): is quarantined, end of destinations: no more destinations",
        s1.addr()
    ));
    r.expect_log("-> (not connected): connection closed (up: 0b; down: 43b)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_2003_as_a_client_library_reports_it() {
    let mut s1 = MariaDb::start();
    let port = free_port();
    let _r = Router::start(&route("fa", port, "first-available", &[&s1]), &[port]);
    s1.stop();
    match select_port(port).await {
        Err(mysql_async::Error::Server(e)) => {
            assert_eq!(e.code, 2003);
            assert_eq!(e.message, "Can't connect to remote MySQL server");
        }
        other => panic!("expected server error 2003, got {other:?}"),
    }
}

#[test]
fn unix_socket_and_ipv6_listeners() {
    let s1 = MariaDb::start();
    let port = free_port();
    let dir = tmp_dir("sock");
    let sock = dir.join("router.sock");
    // A stale socket file from a crashed run is replaced.
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    let body = format!(
        "[routing:v6]\nbind_address = [::1]:{port}\nsocket = {}\ndestinations = {}\nrouting_strategy = round-robin\n",
        sock.display(),
        s1.addr()
    );
    let r = Router::start(&body, &[]);
    assert!(
        r.wait_log("Start accepting connections", WAIT),
        "{}",
        r.log_text()
    );
    assert_eq!(
        cli_port(&["-h", "::1", "-P", &port.to_string(), "--protocol=TCP"]).unwrap(),
        s1.port
    );
    assert_eq!(
        cli_port(&["-S", path_str(&sock), "--protocol=SOCKET"]).unwrap(),
        s1.port
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777,
        0o777
    );
    r.expect_log("already exists, but seems to be unused. Deleting and retrying...");
}

#[test]
fn live_socket_file_is_refused_and_bind_failure_exits_1() {
    let s1 = MariaDb::start();
    let dir = tmp_dir("sock");
    let sock = dir.join("busy.sock");
    let _live = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let body = format!(
        "[routing:s]\nsocket = {}\ndestinations = {}\nrouting_strategy = round-robin\n",
        sock.display(),
        s1.addr()
    );
    let mut r = Router::start(&body, &[]);
    let code = wait_exit(&mut r.child, WAIT);
    assert_eq!(code, Some(1));
    assert!(r.log_text().contains(&format!(
        "Socket file {} already in use by another process",
        sock.display()
    )));

    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let mut r = Router::start(&route("b", port, "round-robin", &[&s1]), &[]);
    assert_eq!(wait_exit(&mut r.child, WAIT), Some(1));
    assert!(
        r.log_text().contains(&format!(
            "Failed setting up acceptor on '127.0.0.1:{port}': Address already in use"
        )),
        "{}",
        r.log_text()
    );
}

/// Megabytes cross the router in both directions unchanged: a query carrying a 4 MiB
/// value of every byte value (as a hex literal, 8 MiB up) comes back as the same
/// 4 MiB (down), in one query and as many client packets as the library makes.
#[test]
fn bytes_pass_unchanged_in_both_directions() {
    use mysql_async::prelude::Queryable;
    let s1 = MariaDb::start_with(&["--max-allowed-packet=64M".to_string()]);
    let port = free_port();
    let _r = Router::start(&route("rr", port, "round-robin", &[&s1]), &[port]);
    // Every byte value, in an order that is not periodic in any small block size.
    let mut x: u32 = 0x9e37_79b9;
    let payload: Vec<u8> = (0..4 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect();
    let hex: String = payload.iter().map(|b| format!("{b:02x}")).collect();
    rt().block_on(async {
        let mut c = mysql_async::Conn::new(opts(port)).await.unwrap();
        for _ in 0..2 {
            let got: Option<(Vec<u8>, u16)> = c
                .query_first(format!("SELECT X'{hex}', @@port"))
                .await
                .unwrap();
            let (got, p) = got.unwrap();
            assert_eq!(p, s1.port);
            assert_eq!(got.len(), payload.len());
            assert!(got == payload, "the value came back changed");
        }
        c.disconnect().await.unwrap();
    });
}

/// When the server ends a session (here its wait_timeout) the router closes the
/// client's side too, even if the client never reads again: no descriptors or slots
/// are held by idle, dead sessions.
#[test]
fn server_side_close_releases_an_idle_client() {
    let s1 = MariaDb::start();
    let port = free_port();
    let r = Router::start(&route("rr", port, "round-robin", &[&s1]), &[port]);
    let idle_fds = r.fd_count();
    rt().block_on(async {
        use mysql_async::prelude::Queryable;
        let mut c = mysql_async::Conn::new(opts(port)).await.unwrap();
        c.query_drop("SET SESSION wait_timeout = 1").await.unwrap();
        assert!(r.fd_count() > idle_fds);
        // The client stays idle; the server closes after 1 s.
        let deadline = Instant::now() + WAIT;
        while r.fd_count() > idle_fds && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(
            r.fd_count(),
            idle_fds,
            "router still holds the dead session"
        );
        match c.query_drop("SELECT 1").await {
            Err(mysql_async::Error::Io(_)) | Err(mysql_async::Error::Driver(_)) => {}
            other => panic!("expected a closed connection, got {other:?}"),
        }
    });
}

/// MySQL's in-protocol TLS passes through the router untouched (PASSTHROUGH): the client
/// negotiates TLS with the server itself, and the router counts such a handshake as
/// completed (with max_connect_errors = 1, a misjudged TLS handshake would block the
/// host after the first connection).
#[test]
fn tls_passes_through_to_the_server() {
    let certs = tmp_dir("tls");
    let (key, cert) = (certs.join("key.pem"), certs.join("cert.pem"));
    let st = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl");
    assert!(st.success());
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let s1 = MariaDb::start_with(&[
        format!("--ssl-cert={}", cert.display()),
        format!("--ssl-key={}", key.display()),
    ]);
    let port = free_port();
    let body = route("tls", port, "first-available", &[&s1]) + "max_connect_errors = 1\n";
    let _r = Router::start(&body, &[port]);
    for _ in 0..3 {
        let out = mariadb_cli()
            .args(["-h", "127.0.0.1", "-P", &port.to_string(), "--protocol=TCP", "--ssl", "-u", USER, &format!("-p{PASS}"), "-N", "-B"])
            .args(["-e", "SELECT @@port, VARIABLE_VALUE FROM information_schema.SESSION_STATUS WHERE VARIABLE_NAME = 'Ssl_cipher'"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let cols: Vec<&str> = text.trim().split('\t').collect();
        assert_eq!(cols[0], s1.port.to_string());
        assert!(
            cols.len() == 2 && !cols[1].is_empty(),
            "no TLS cipher: {text:?}"
        );
    }
}

/// Waits ([`WAIT`]) for a log line that contains all of `parts`; returns it.
fn log_line_with(r: &Router, parts: &[&str]) -> String {
    let find = || {
        r.log_now()
            .lines()
            .find(|l| parts.iter().all(|p| l.contains(p)))
            .map(String::from)
    };
    assert!(
        eventually(WAIT, || find().is_some()),
        "no log line with all of {parts:?}; log:\n{}",
        r.log_text()
    );
    find().unwrap_or_default()
}

/// One failing destination shared by two routes is quarantined once, for both: the
/// second route skips it without trying to connect. Along the way, MySQL Router's DEBUG
/// lines for quarantine and connections.
#[test]
fn quarantine_is_shared_by_routes_with_its_debug_lines() {
    let (mut down, s2) = (MariaDb::start(), MariaDb::start());
    let (a, b) = (free_port(), free_port());
    let body = route("a", a, "first-available", &[&down, &s2])
        + &route("b", b, "first-available", &[&down, &s2]);
    let r = Router::start_with(&body, &[a, b], "debug", &[]);
    assert_eq!(cli_port_tcp(a).unwrap(), down.port);
    down.stop();
    assert_eq!(cli_port_tcp(a).unwrap(), s2.port);
    let d = down.addr();
    r.expect_log(&format!(
        "[routing:a] destination '{d}' is unreachable and was quarantined"
    ));
    assert_eq!(cli_port_tcp(b).unwrap(), s2.port);
    let skip = log_line_with(
        &r,
        &[
            "[routing:b] fd=",
            &format!("skip quarantined destination '{d}'"),
        ],
    );
    assert!(skip.contains(" routing DEBUG ["), "{skip}");
    // Route b switched without a failed connect of its own.
    r.expect_log(&format!(
        "[routing:b] switched destination from '{d}' to '{}'",
        s2.addr()
    ));
    let log = r.log_text();
    assert!(
        !log.contains(&format!("[routing:b] destination '{d}' is unreachable"))
            && !log.contains(&format!("[routing:b] add destination '{d}'")),
        "route b tried the quarantined destination itself:\n{log}"
    );
    bring_back(&r, &mut down);
    for parts in [
        vec![format!("[routing:a] add destination '{d}' to quarantine")],
        vec![format!(
            "Destination candidate '{d}' is available, remove it from quarantine"
        )],
        vec![
            "[routing:a] fd=".into(),
            format!(" connected 127.0.0.1:"),
            format!(" -> {d}"),
        ],
        vec![
            "[routing:b] fd=".into(),
            format!(" -> {}: connection closed (up: ", s2.addr()),
            "b; down: ".into(),
        ],
    ] {
        let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
        let line = log_line_with(&r, &parts);
        assert!(line.contains(" DEBUG ["), "{line}");
    }
}

/// `[destination_status]` away from its defaults: `error_quarantine_threshold = 2` needs
/// two failed connects before the quarantine, and `error_quarantine_interval = 3`
/// re-probes every 3 s (a listener the test owns sees the probes).
#[test]
fn quarantine_threshold_and_interval_are_honoured() {
    let dest = free_port();
    // The destination refuses, and nobody else can listen there meanwhile.
    let refusing = Refusing::bind(dest);
    let port = free_port();
    let body = format!(
        "[routing:q]\nbind_port = {port}\ndestinations = 127.0.0.1:{dest}\nrouting_strategy = first-available\n\
         [destination_status]\nerror_quarantine_threshold = 2\nerror_quarantine_interval = 3\n"
    );
    let r = Router::start(&body, &[port]);
    let quarantined = format!("destination '127.0.0.1:{dest}' is unreachable and was quarantined");
    let failed = "connecting to backend(s) for client from";
    // First failure: counted, not quarantined (the ERROR line follows the quarantine's).
    assert_eq!(lib_port(port).unwrap_err(), E2003);
    r.expect_log_count(failed, 1);
    assert!(!r.log_text().contains(&quarantined), "{}", r.log_text());
    // Second failure: quarantined.
    assert_eq!(lib_port(port).unwrap_err(), E2003);
    r.expect_log(&quarantined);
    // The probes: the first one to find the listener takes the destination back; then
    // it fails again, and the next probe to find it comes a whole interval later. The
    // router's own timestamps of the two "reachable again" lines measure it.
    let back = "is reachable again and left quarantine";
    let l = refusing.listen();
    r.expect_log_count(back, 1);
    drop(l);
    let _refusing = Refusing::bind(dest);
    for _ in 0..2 {
        assert_eq!(lib_port(port).unwrap_err(), E2003);
    }
    r.expect_log_count(&quarantined, 2);
    let _l = _refusing.listen();
    r.expect_log_count(back, 2);
    let stamps: Vec<u64> = r
        .log_text()
        .lines()
        .filter(|l| l.contains(back))
        .map(log_ms)
        .collect();
    let gap = Duration::from_millis(ms_between(stamps[0], stamps[1]));
    assert!(
        gap >= Duration::from_millis(2500) && gap < Duration::from_secs(10),
        "probes {gap:?} apart with error_quarantine_interval = 3"
    );
}

/// The failover story is in the log at the default level (`warning`), and nothing
/// below it.
#[test]
fn failover_lines_at_the_default_level() {
    let (mut s1, s2) = (MariaDb::start(), MariaDb::start());
    let port = free_port();
    let r = Router::start_with(
        &route("rw", port, "first-available", &[&s1, &s2]),
        &[],
        "",
        &[],
    );
    // Without INFO lines there is no "listening" line to wait for.
    r.wait_listening(port, WAIT);
    s1.stop();
    assert_eq!(cli_port_tcp(port).unwrap(), s2.port);
    bring_back(&r, &mut s1);
    for needle in [
        format!("[routing:rw] destination '{}' is unreachable and was quarantined: connect({}) failed after", s1.addr(), s1.addr()),
        format!("[routing:rw] switched destination from '{}' to '{}'", s1.addr(), s2.addr()),
        format!("destination '{}' is reachable again and left quarantine after", s1.addr()),
    ] {
        let line = r.log_line(&needle);
        assert!(line.contains(" routing WARNING ["), "{line}");
    }
    let log = r.log_text();
    assert!(
        !log.contains(" INFO [") && !log.contains(" DEBUG ["),
        "default level is warning:\n{log}"
    );
}

/// `routing_strategy` wins over the legacy `mode` when both are set.
#[test]
fn routing_strategy_wins_over_mode() {
    let (s1, s2) = (MariaDb::start(), MariaDb::start());
    let port = free_port();
    let body = route("m", port, "first-available", &[&s1, &s2]) + "mode = read-only\n";
    let r = Router::start(&body, &[port]);
    r.expect_log("[routing:m] started: routing strategy = first-available");
    for _ in 0..3 {
        assert_eq!(
            cli_port_tcp(port).unwrap(),
            s1.port,
            "read-only would rotate"
        );
    }
}

/// The `mariadb` CLI reports the pre-4.1 2003 packet as 2027 (as with Oracle's router).
#[test]
fn mariadb_cli_shows_2027_for_the_2003_packet() {
    let mut s1 = MariaDb::start();
    let port = free_port();
    let _r = Router::start(&route("fa", port, "first-available", &[&s1]), &[port]);
    s1.stop();
    let e = cli_port_tcp(port).unwrap_err();
    assert_eq!(e, "ERROR 2027 (HY000): Received malformed packet");
}
