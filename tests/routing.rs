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
    assert!(r.wait_log(
        &format!("destination '{}' is reachable again", s.addr()),
        Duration::from_secs(5)
    ));
}

/// Polls `f` until it returns true or `max` passes.
fn eventually(max: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + max;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
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
    let log = r.log_text();
    assert!(
        log.contains(&format!(
            "[routing:fa] switched destination from '{}' to '{}'",
            s1.addr(),
            s2.addr()
        )),
        "{log}"
    );
    assert!(
        log.contains(&format!(
            "[routing:fa] switched destination from '{}' to '{}'",
            s2.addr(),
            s3.addr()
        )),
        "{log}"
    );
    assert!(log.contains("routing WARNING"), "{log}");
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
    // Past the end: no server, although s1 is up.
    let e = lib_port(port).unwrap_err();
    assert_eq!(e, "2003: Can't connect to remote MySQL server");
    std::thread::sleep(Duration::from_millis(1500));
    assert!(cli_port_tcp(port).is_err());
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
    assert!(r.log_text().contains(&format!(
        "destination '{}' is unreachable and was quarantined",
        s2.addr()
    )));
    s2.restart();
    let back = Instant::now();
    // interval (1 s) + 2 s
    let seen = eventually(Duration::from_secs(3), || {
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
    assert!(eventually(Duration::from_secs(2), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err()
    }));
    assert!(r.log_text().contains(&format!(
        "Stop accepting connections for routing routing:one listening on 127.0.0.1:{port}"
    )));
    s1.restart();
    assert!(eventually(Duration::from_secs(4), || cli_port_tcp(port)
        .ok()
        == Some(s1.port)));
    let log = r.log_text();
    assert_eq!(
        log.matches(&format!(
            "Start accepting connections for routing routing:one listening on '127.0.0.1:{port}'"
        ))
        .count(),
        2,
        "{log}"
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
    let log = r.log_text();
    assert!(
        log.contains(&format!("connect({}) failed after", s1.addr())),
        "{log}"
    );
    assert!(
        log.contains(&format!(
            "connect(/* {} */): is quarantined, end of destinations: no more destinations",
            s1.addr()
        )),
        "{log}"
    );
    assert!(
        log.contains("-> (not connected): connection closed (up: 0b; down: 43b)"),
        "{log}"
    );
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
        r.wait_log("Start accepting connections", Duration::from_secs(5)),
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
    assert!(r
        .log_text()
        .contains("already exists, but seems to be unused. Deleting and retrying..."));
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
    let code = wait_exit(&mut r.child, Duration::from_secs(10));
    assert_eq!(code, Some(1));
    assert!(r.log_text().contains(&format!(
        "Socket file {} already in use by another process",
        sock.display()
    )));

    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let mut r = Router::start(&route("b", port, "round-robin", &[&s1]), &[]);
    assert_eq!(wait_exit(&mut r.child, Duration::from_secs(10)), Some(1));
    assert!(
        r.log_text().contains(&format!(
            "Failed setting up acceptor on '127.0.0.1:{port}': Address already in use"
        )),
        "{}",
        r.log_text()
    );
}

#[test]
fn bytes_pass_unchanged_in_both_directions() {
    // A large result and a large query through the router equal those of the server.
    let s1 = MariaDb::start();
    let port = free_port();
    let _r = Router::start(&route("rr", port, "round-robin", &[&s1]), &[port]);
    let q = "SELECT SHA2(REPEAT('ab', 500000), 256), LENGTH(REPEAT('x', 3000000))";
    let run = |p: u16| {
        let out = std::process::Command::new("mariadb")
            .args([
                "-h",
                "127.0.0.1",
                "-P",
                &p.to_string(),
                "--protocol=TCP",
                "-u",
                USER,
                &format!("-p{PASS}"),
                "-N",
                "-B",
                "-e",
                q,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    assert_eq!(run(port), run(s1.port));
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
        let deadline = Instant::now() + Duration::from_secs(5);
        while r.fd_count() > idle_fds && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(
            r.fd_count(),
            idle_fds,
            "router still holds the dead session"
        );
        assert!(c.query_drop("SELECT 1").await.is_err());
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
        let out = std::process::Command::new("mariadb")
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
