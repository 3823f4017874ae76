//! Client admission against real servers: connection limits (1040), blocked hosts
//! (1129), bad handshakes (1043), the handshake timeout, and SIGUSR1 unblocking.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;

fn route(name: &str, port: u16, s: &MariaDb, extra: &str) -> String {
    format!(
        "[routing:{name}]\nbind_port = {port}\ndestinations = {}\nrouting_strategy = round-robin\n{extra}\n",
        s.addr()
    )
}

async fn connect(port: u16) -> Result<mysql_async::Conn, String> {
    match tokio::time::timeout(WAIT, mysql_async::Conn::new(opts(port))).await {
        Err(_) => Err("timeout".into()),
        Ok(Ok(c)) => Ok(c),
        Ok(Err(mysql_async::Error::Server(e))) => Err(format!("{}: {}", e.code, e.message)),
        Ok(Err(e)) => Err(e.to_string()),
    }
}

/// Opens `n` connections and holds them; all must succeed. Clients that just left may
/// still be closing inside the router (mysql_async closes dropped connections in the
/// background), so a 1040 is retried for up to 5 s.
async fn full_quota(port: u16, n: usize) -> Vec<mysql_async::Conn> {
    let mut v = Vec::new();
    let deadline = Instant::now() + WAIT;
    while v.len() < n {
        match connect(port).await {
            Ok(c) => v.push(c),
            Err(e) if e.starts_with("1040") && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Err(e) => panic!("client {} of a full quota of {n}: {e}", v.len()),
        }
    }
    v
}

/// A greeting read from a raw socket, then `send`, then everything until EOF.
fn after_greeting(port: u16, send: &[u8]) -> (Vec<u8>, Vec<u8>) {
    greeting_then(TcpStream::connect(("127.0.0.1", port)).unwrap(), send)
}

/// [`after_greeting`] from the source address `src`.
fn after_greeting_from(src: &str, port: u16, send: &[u8]) -> (Vec<u8>, Vec<u8>) {
    greeting_then(connect_from(src, port), send)
}

/// A raw client holding a slot: connected and greeted by the server. A 1040 (the route
/// still full of clients that are leaving) is retried for up to [`WAIT`].
fn greeted(port: u16) -> TcpStream {
    let deadline = Instant::now() + WAIT;
    loop {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        let mut g = [0u8; 512];
        let n = s.read(&mut g).unwrap();
        if n > 6 && g[4..7] == [0xff, 0x10, 0x04] && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        assert!(n > 5 && g[4] == 0x0a, "no greeting: {:?}", &g[..n]);
        return s;
    }
}

fn greeting_then(mut s: TcpStream, send: &[u8]) -> (Vec<u8>, Vec<u8>) {
    s.set_read_timeout(Some(WAIT)).unwrap();
    let mut g = vec![0u8; 512];
    let n = s.read(&mut g).unwrap();
    g.truncate(n);
    (g, send_then_rest(s, send))
}

/// `send`, then everything until EOF, on a client that has its greeting already.
fn send_then_rest(mut s: TcpStream, send: &[u8]) -> Vec<u8> {
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(send).unwrap();
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    rest
}

/// The first 32+ bytes of a HandshakeResponse41 (CLIENT_PROTOCOL_41), cut short.
fn partial_response() -> Vec<u8> {
    let mut p = vec![0x40, 0, 0, 1];
    p.extend_from_slice(&0x0000_a28du32.to_le_bytes());
    p.extend_from_slice(&[0; 10]);
    p
}

const BAD_HANDSHAKE: &[u8] = b"\x10\x00\x00\x02\xff\x13\x04Bad handshake";

#[test]
fn route_limit_1040_and_release_on_every_path() {
    let mut s1 = MariaDb::start();
    let port = free_port();
    // first-available keeps listening while its server is down (path 5 below).
    let body = route(
        "lim",
        port,
        &s1,
        "max_connections = 3\nclient_connect_timeout = 2\nmax_connect_errors = 1000",
    )
    .replace("round-robin", "first-available");
    let r = Router::start(&body, &[port]);
    let rt = rt();
    rt.block_on(async {
        let held = full_quota(port, 3).await;
        assert_eq!(
            connect(port).await.unwrap_err(),
            "1040: Too many connections to MySQL Router"
        );
        r.expect_log("[routing:lim] reached max active connections for route (3 max=3)");
        // Path 1: clients close normally.
        for c in held {
            c.disconnect().await.unwrap();
        }
        let mut held = full_quota(port, 3).await;
        // Path 2: the server closes (KILL from another session).
        use mysql_async::prelude::Queryable;
        let ids: Vec<u32> = held.iter().map(|c| c.id()).collect();
        let mut admin = mysql_async::Conn::new(opts(s1.port)).await.unwrap();
        for id in ids {
            admin.query_drop(format!("KILL {id}")).await.unwrap();
        }
        for c in held.iter_mut() {
            let _ = c.query_drop("SELECT 1").await;
        }
        drop(held);
    });
    // Path 3: error (garbage handshake) and path 4: timeout (silent client). Each
    // client first has its slot (the greeting), as the previous path's clients may
    // still be leaving.
    for _ in 0..3 {
        let rest = send_then_rest(greeted(port), b"\x08\x00\x00\x01garbage!");
        assert_eq!(rest, BAD_HANDSHAKE);
    }
    let silent: Vec<TcpStream> = (0..3).map(|_| greeted(port)).collect();
    let t = Instant::now();
    for mut s in silent {
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "silent client kept for {:?}",
            t.elapsed()
        );
    }
    // Closed by the handshake timeout, not by something else.
    r.expect_log_count(
        "did not finish the handshake within client_connect_timeout (2s)",
        3,
    );
    // Path 5: connect failure (the server is down).
    s1.stop();
    for _ in 0..3 {
        assert_eq!(lib_port(port).unwrap_err(), E2003);
    }
    s1.restart();
    r.expect_log(&format!("destination '{}' is reachable again", s1.addr()));
    rt.block_on(async {
        let held = full_quota(port, 3).await;
        assert_eq!(
            connect(port).await.unwrap_err(),
            "1040: Too many connections to MySQL Router"
        );
        drop(held);
    });
}

#[test]
fn total_limit_across_routes() {
    let s1 = MariaDb::start();
    let (a, b) = (free_port(), free_port());
    let body = format!(
        "[DEFAULT]\nmax_total_connections = 2\n{}{}",
        route("a", a, &s1, ""),
        route("b", b, &s1, "")
    );
    // The harness's own [DEFAULT] comes first; this one is merged into it.
    let r = Router::start(&body, &[a, b]);
    rt().block_on(async {
        let _c1 = connect(a).await.unwrap();
        let _c2 = connect(b).await.unwrap();
        assert_eq!(
            connect(b).await.unwrap_err(),
            "1040: Too many connections to MySQL Router"
        );
    });
    r.expect_log("[routing:b] Total connections count=2 exceeds [DEFAULT].max_total_connections=2");
}

#[test]
fn blocked_host_1129_per_route_and_sigusr1() {
    let s1 = MariaDb::start();
    let (a, b) = (free_port(), free_port());
    let body = route("A", a, &s1, "max_connect_errors = 3")
        + &route("B", b, &s1, "max_connect_errors = 3");
    let r = Router::start(&body, &[a, b]);
    // A client that connects and leaves without a byte is not counted.
    for _ in 0..5 {
        drop(TcpStream::connect(("127.0.0.1", a)).unwrap());
    }
    assert_eq!(lib_port(a).unwrap(), s1.port);
    // Garbage, truncated and garbage again: three errors.
    let (greet, rest) = after_greeting(a, b"\x08\x00\x00\x01garbage!");
    assert_eq!(greet[4], 0x0a, "the server's greeting is forwarded first");
    assert_eq!(rest, BAD_HANDSHAKE);
    {
        // Part of a HandshakeResponse, then the client goes away.
        let mut t = TcpStream::connect(("127.0.0.1", a)).unwrap();
        let mut g = [0u8; 512];
        let _ = t.read(&mut g).unwrap();
        t.write_all(&partial_response()).unwrap();
    }
    r.expect_log("closed connection before finishing handshake");
    let (_, rest) = after_greeting(a, b"\x05\x00\x00\x01hello");
    assert_eq!(rest, BAD_HANDSHAKE);
    r.expect_log("[routing:A] blocking client host for 127.0.0.1:");
    r.expect_log_count(
        "[routing:A] incrementing error counter for host of 127.0.0.1:",
        3,
    );

    // Blocked on A, as a client library reports it, with the client's ip:port.
    let e = lib_port(a).unwrap_err();
    assert!(
        e.starts_with("1129: Too many connection errors from 127.0.0.1:"),
        "{e}"
    );
    let raw = raw_exchange(a, b"", WAIT);
    assert_eq!(&raw[3..7], &[0, 0xff, 0x69, 0x04]);
    assert!(String::from_utf8_lossy(&raw[7..])
        .starts_with("Too many connection errors from 127.0.0.1:"));
    // A successful handshake does not unblock; route B is independent.
    assert!(lib_port(a)
        .unwrap_err()
        .starts_with("1129: Too many connection errors from 127.0.0.1:"));
    assert_eq!(lib_port(b).unwrap(), s1.port);

    // SIGUSR1 unblocks without a restart.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(r.pid()),
        nix::sys::signal::Signal::SIGUSR1,
    )
    .unwrap();
    r.expect_log("unblocked client host 127.0.0.1 (SIGUSR1)");
    assert_eq!(lib_port(a).unwrap(), s1.port);
}

#[test]
fn successful_handshake_resets_the_counter() {
    let s1 = MariaDb::start();
    let a = free_port();
    let _r = Router::start(&route("A", a, &s1, "max_connect_errors = 2"), &[a]);
    for _ in 0..5 {
        let (_, rest) = after_greeting(a, b"\x08\x00\x00\x01garbage!");
        assert_eq!(rest, BAD_HANDSHAKE);
        assert_eq!(
            lib_port(a).unwrap(),
            s1.port,
            "one error, then reset by a good client"
        );
    }
}

#[test]
fn slowloris_does_not_keep_a_slot() {
    let s1 = MariaDb::start();
    let a = free_port();
    let _r = Router::start_with(
        &route(
            "A",
            a,
            &s1,
            "max_connections = 1\nclient_connect_timeout = 2\nmax_connect_errors = 100",
        ),
        &[a],
        "debug",
        &[],
    );
    let mut s = TcpStream::connect(("127.0.0.1", a)).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(900)))
        .unwrap();
    let t = Instant::now();
    let resp = partial_response();
    let mut closed = false;
    let mut buf = [0u8; 512];
    for b in resp.iter().cycle().take(30) {
        if s.write_all(&[*b]).is_err() {
            closed = true;
            break;
        }
        if let Ok(0) = s.read(&mut buf) {
            closed = true;
            break;
        }
    }
    assert!(closed, "slowloris client was not disconnected");
    assert!(
        t.elapsed() < Duration::from_secs(20),
        "kept for {:?}",
        t.elapsed()
    );
    // The timeout closed it 2 s after the router connected it (the router's clock),
    // however many bytes trickled in, and it was counted as a handshake error.
    let connected = log_ms(&_r.log_line("connected 127.0.0.1:"));
    let timed_out =
        log_ms(&_r.log_line("did not finish the handshake within client_connect_timeout (2s)"));
    let after = ms_between(connected, timed_out);
    assert!(
        (1900..5000).contains(&after),
        "timed out {after} ms after connecting"
    );
    _r.expect_log("[routing:A] incrementing error counter for host of 127.0.0.1:");
    // The single slot is free again.
    let res = lib_port(a);
    assert_eq!(res, Ok(s1.port), "{}", _r.log_text());
}

#[test]
fn unix_socket_clients_are_never_blocked() {
    let s1 = MariaDb::start();
    let dir = tmp_dir("usock");
    let sock = dir.join("r.sock");
    let body = format!(
        "[routing:u]\nsocket = {}\ndestinations = {}\nrouting_strategy = round-robin\nmax_connect_errors = 1\n",
        sock.display(),
        s1.addr()
    );
    let r = Router::start(&body, &[]);
    r.expect_log("Start accepting connections");
    for _ in 0..3 {
        let mut u = std::os::unix::net::UnixStream::connect(&sock).unwrap();
        u.set_read_timeout(Some(WAIT)).unwrap();
        let mut g = [0u8; 512];
        let _ = u.read(&mut g).unwrap();
        u.write_all(b"\x08\x00\x00\x01garbage!").unwrap();
        let mut rest = Vec::new();
        let _ = u.read_to_end(&mut rest);
        assert_eq!(rest, BAD_HANDSHAKE);
    }
    assert_eq!(
        cli_port(&["-S", path_str(&sock), "--protocol=SOCKET"]).unwrap(),
        s1.port
    );
}

/// 1,000 clients at once against `max_connections = 100`: each gets in or gets 1040,
/// nobody hangs, and exactly 100 are in at once (the admitted ones hold their
/// connection until every client has its answer); afterwards the route serves a full
/// quota again.
#[test]
fn over_limit_storm() {
    raise_fd_limit();
    let s1 = MariaDb::start();
    let a = free_port();
    let _r = Router::start(&route("storm", a, &s1, "max_connections = 100"), &[a]);
    rt().block_on(async {
        let (release_tx, release_rx) = tokio::sync::watch::channel(false);
        let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
        let mut tasks = Vec::new();
        for _ in 0..1000 {
            let (mut release, done) = (release_rx.clone(), done_tx.clone());
            tasks.push(tokio::spawn(async move {
                match connect(a).await {
                    Ok(c) => {
                        let _ = done.send(Ok(()));
                        let _ = release.wait_for(|r| *r).await;
                        let _ = c.disconnect().await;
                    }
                    Err(e) => {
                        let _ = done.send(Err(e));
                    }
                }
            }));
        }
        drop(done_tx);
        let (mut ok, mut limited, mut other) = (0, 0, Vec::new());
        for _ in 0..1000 {
            match tokio::time::timeout(Duration::from_secs(60), done_rx.recv()).await {
                Ok(Some(Ok(()))) => ok += 1,
                Ok(Some(Err(e))) if e == "1040: Too many connections to MySQL Router" => {
                    limited += 1
                }
                other_r => other.push(format!("{other_r:?}")),
            }
        }
        release_tx.send_replace(true);
        for t in tasks {
            let _ = tokio::time::timeout(Duration::from_secs(30), t).await;
        }
        assert!(
            other.is_empty(),
            "{} unexpected outcomes: {:?}",
            other.len(),
            &other[..other.len().min(3)]
        );
        assert_eq!((ok, limited), (100, 900), "admitted at once, refused");
        let held = full_quota(a, 100).await;
        assert_eq!(
            connect(a).await.unwrap_err(),
            "1040: Too many connections to MySQL Router"
        );
        drop(held);
    });
}

/// With no `max_total_connections` in the config the process admits 512 clients (the
/// default) and answers the 513th with 1040.
#[test]
fn default_max_total_connections_is_512() {
    raise_fd_limit();
    // The router holds 512 half-open handshakes; the server must not time them out.
    let s1 = MariaDb::start_with(&["--connect-timeout=60".to_string()]);
    let a = free_port();
    let r = Router::start(&route("d", a, &s1, "client_connect_timeout = 60"), &[a]);
    let mut held = Vec::new();
    for i in 0..512 {
        let mut c = TcpStream::connect(("127.0.0.1", a)).unwrap();
        c.set_read_timeout(Some(WAIT)).unwrap();
        let mut g = [0u8; 512];
        let n = c.read(&mut g).unwrap();
        assert!(
            n > 5 && g[4] == 0x0a,
            "client {i} got no greeting: {:?}",
            &g[..n]
        );
        held.push(c);
    }
    let frame = raw_exchange(a, b"", WAIT);
    assert_eq!(&frame[3..7], &[0, 0xff, 0x10, 0x04], "{frame:?}");
    assert!(
        frame.ends_with(b"Too many connections to MySQL Router"),
        "{frame:?}"
    );
    r.expect_log(
        "[routing:d] Total connections count=512 exceeds [DEFAULT].max_total_connections=512",
    );
    drop(held);
}

/// Handshake errors are counted per client IP: a host blocked by `max_connect_errors`
/// (127.0.0.2) does not block another host on the same route (127.0.0.3, 127.0.0.1).
#[test]
fn connect_errors_are_counted_per_client_ip() {
    let s1 = MariaDb::start();
    let a = free_port();
    let r = Router::start(&route("ip", a, &s1, "max_connect_errors = 2"), &[a]);
    for _ in 0..2 {
        let (_, rest) = after_greeting_from("127.0.0.2", a, b"\x08\x00\x00\x01garbage!");
        assert_eq!(rest, BAD_HANDSHAKE);
    }
    r.expect_log("[routing:ip] blocking client host for 127.0.0.2:");
    let raw = raw_exchange_from("127.0.0.2", a, b"", WAIT);
    assert_eq!(&raw[3..7], &[0, 0xff, 0x69, 0x04], "{raw:?}");
    assert!(String::from_utf8_lossy(&raw[7..])
        .starts_with("Too many connection errors from 127.0.0.2:"));
    // 127.0.0.3 has its own counter: one error, and it still gets the server.
    let (g, rest) = after_greeting_from("127.0.0.3", a, b"\x08\x00\x00\x01garbage!");
    assert_eq!(g[4], 0x0a, "127.0.0.3 gets the server's greeting: {g:?}");
    assert_eq!(rest, BAD_HANDSHAKE);
    r.expect_log("[routing:ip] incrementing error counter for host of 127.0.0.3:");
    let mut c = connect_from("127.0.0.3", a);
    c.set_read_timeout(Some(WAIT)).unwrap();
    let mut g = [0u8; 512];
    let n = c.read(&mut g).unwrap();
    assert!(
        n > 5 && g[4] == 0x0a,
        "127.0.0.3 is not blocked: {:?}",
        &g[..n]
    );
    drop(c);
    assert_eq!(lib_port(a), Ok(s1.port), "127.0.0.1 is not blocked");
    assert!(
        !r.log_text().contains("blocking client host for 127.0.0.3")
            && !r.log_text().contains("blocking client host for 127.0.0.1"),
        "{}",
        r.log_text()
    );
}

/// A wrong password is the server's verdict on a completed handshake: it resets the
/// host's counter (through the binary, with a real client library).
#[test]
fn wrong_password_resets_the_counter() {
    let s1 = MariaDb::start();
    let a = free_port();
    let r = Router::start(&route("pw", a, &s1, "max_connect_errors = 2"), &[a]);
    let wrong: mysql_async::Opts = mysql_async::OptsBuilder::from_opts(opts(a))
        .pass(Some("wrong"))
        .into();
    let garbage = || {
        let (_, rest) = after_greeting(a, b"\x08\x00\x00\x01garbage!");
        assert_eq!(
            rest, BAD_HANDSHAKE,
            "garbage answered with 1043, not blocked"
        );
    };
    garbage();
    r.expect_log("(now 1)");
    let e = rt().block_on(async {
        match mysql_async::Conn::new(wrong).await {
            Err(mysql_async::Error::Server(e)) => e.code,
            other => panic!("expected the server's access denied, got {other:?}"),
        }
    });
    assert_eq!(e, 1045, "access denied by the server");
    garbage();
    r.expect_log_count(
        "[routing:pw] incrementing error counter for host of 127.0.0.1:",
        2,
    );
    assert!(
        r.log_text().matches("(now 1)").count() == 2,
        "the wrong password reset the counter: {}",
        r.log_text()
    );
    assert_eq!(lib_port(a), Ok(s1.port), "not blocked");
}

/// A client that stays silent after the greeting is disconnected after
/// `client_connect_timeout` and counted: with `max_connect_errors = 1` its host is
/// blocked.
#[test]
fn handshake_timeout_is_counted() {
    let s1 = MariaDb::start();
    let a = free_port();
    let r = Router::start_with(
        &route(
            "to",
            a,
            &s1,
            "client_connect_timeout = 2\nmax_connect_errors = 1",
        ),
        &[a],
        "debug",
        &[],
    );
    let mut c = connect_from("127.0.0.2", a);
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut got = Vec::new();
    let _ = c.read_to_end(&mut got);
    assert_eq!(got[4], 0x0a, "greeting, then nothing: {got:?}");
    // Closed 2 s after the router connected it, by the router's clock.
    let connected = log_ms(&r.log_line("connected 127.0.0.2:"));
    let timed_out =
        log_ms(&r.log_line("did not finish the handshake within client_connect_timeout (2s)"));
    let after = ms_between(connected, timed_out);
    assert!(
        (1900..5000).contains(&after),
        "timed out {after} ms after connecting"
    );
    r.expect_log("[routing:to] blocking client host for 127.0.0.2:");
    let raw = raw_exchange_from("127.0.0.2", a, b"", WAIT);
    assert_eq!(&raw[3..7], &[0, 0xff, 0x69, 0x04], "{raw:?}");
}

/// `protocol = x`: errors reach the client as `Mysqlx.Error` frames (no MariaDB server
/// speaks X protocol, so the backend here is a plain TCP listener the test holds).
#[test]
fn x_protocol_errors_are_mysqlx_frames() {
    let backend = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let bport = backend.local_addr().unwrap().port();
    let port = free_port();
    let body = format!(
        "[routing:x]\nbind_port = {port}\ndestinations = 127.0.0.1:{bport}\nrouting_strategy = first-available\nprotocol = x\nmax_connections = 1\n"
    );
    let _r = Router::start(&body, &[port]);
    let _held = TcpStream::connect(("127.0.0.1", port)).unwrap();
    // The router connects to the backend only after taking the slot.
    let (_b, _) = backend.accept().unwrap();
    let frame = raw_exchange(port, b"", WAIT);
    assert_x_error(
        &frame,
        1040,
        "08004",
        "Too many connections to MySQL Router",
    );
    drop(_held);
    drop(backend);
    // The held client's slot is released once the router sees it close.
    let mut frame = Vec::new();
    assert!(
        eventually(WAIT, || {
            frame = raw_exchange(port, b"", WAIT);
            decode_x_error(&frame).0 != 1040
        }),
        "the slot was not released"
    );
    assert_x_error(
        &frame,
        2003,
        "HY000",
        "Can't connect to remote MySQL server",
    );
}

fn assert_x_error(frame: &[u8], code: u32, state: &str, msg: &str) {
    assert_eq!(
        decode_x_error(frame),
        (code, state.to_string(), msg.to_string())
    );
}

/// Decodes a `Mysqlx.Error` frame (u32 length, type 1, protobuf fields) into
/// (code, sql_state, message); asserts severity ERROR.
fn decode_x_error(frame: &[u8]) -> (u32, String, String) {
    assert!(frame.len() > 5, "{frame:?}");
    let len = u32::from_le_bytes([frame[0], frame[1], frame[2], frame[3]]) as usize;
    assert_eq!(len, frame.len() - 4, "{frame:?}");
    assert_eq!(frame[4], 1, "Mysqlx.ServerMessages.ERROR");
    let (mut i, pb) = (0, &frame[5..]);
    let (mut got_code, mut got_state, mut got_msg, mut severity) =
        (0u32, String::new(), String::new(), None);
    let varint = |i: &mut usize| {
        let (mut v, mut shift) = (0u64, 0);
        loop {
            let b = pb[*i];
            *i += 1;
            v |= ((b & 0x7f) as u64) << shift;
            shift += 7;
            if b < 0x80 {
                return v;
            }
        }
    };
    while i < pb.len() {
        let tag = varint(&mut i);
        match (tag >> 3, tag & 7) {
            (1, 0) => severity = Some(varint(&mut i)),
            (2, 0) => got_code = varint(&mut i) as u32,
            (f, 2) => {
                let l = varint(&mut i) as usize;
                let s = String::from_utf8_lossy(&pb[i..i + l]).to_string();
                i += l;
                if f == 3 {
                    got_msg = s;
                } else if f == 4 {
                    got_state = s;
                }
            }
            other => panic!("unexpected field {other:?}"),
        }
    }
    assert_eq!(severity, Some(0), "severity ERROR");
    (got_code, got_state, got_msg)
}

/// A server that accepts but never greets is not the client's fault: the client is
/// disconnected after client_connect_timeout but not counted.
#[test]
fn silent_server_does_not_count_against_the_client() {
    let backend = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let bport = backend.local_addr().unwrap().port();
    let port = free_port();
    let body = format!(
        "[routing:s]\nbind_port = {port}\ndestinations = 127.0.0.1:{bport}\nrouting_strategy = first-available\nclient_connect_timeout = 2\nmax_connect_errors = 1\n"
    );
    let r = Router::start(&body, &[port]);
    // The server accepts and stays silent until the test ends.
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let _hold = std::thread::spawn(move || {
        let mut v = Vec::new();
        for _ in 0..3 {
            if let Ok((s, _)) = backend.accept() {
                v.push(s);
            }
        }
        let _ = done_rx.recv_timeout(Duration::from_secs(60));
    });
    // With max_connect_errors = 1, a counted client would get the next one blocked
    // (1129 at once instead of silence).
    for _ in 0..3 {
        let t = Instant::now();
        let got = raw_exchange(port, b"", WAIT);
        assert!(got.is_empty(), "{got:?}");
        assert!(
            t.elapsed() >= Duration::from_millis(1500) && t.elapsed() < Duration::from_secs(15),
            "{:?}",
            t.elapsed()
        );
    }
    r.expect_log_count("sent no greeting within client_connect_timeout (2s)", 3);
    assert!(
        !r.log_text().contains("incrementing error counter"),
        "{}",
        r.log_text()
    );
    drop(done_tx);
}

/// X protocol: a client that sends something other than a handshake frame gets a
/// `Mysqlx.Error` 1043 and is counted; at the limit its host gets 1129 as an X frame.
#[test]
fn x_protocol_bad_handshake_is_counted() {
    let backend = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let bport = backend.local_addr().unwrap().port();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let _keep = std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in backend.incoming().take(4).flatten() {
            held.push(s);
        }
        let _ = done_rx.recv_timeout(Duration::from_secs(60));
    });
    let port = free_port();
    let body = format!(
        "[routing:x]\nbind_port = {port}\ndestinations = 127.0.0.1:{bport}\nrouting_strategy = first-available\nprotocol = x\nmax_connect_errors = 2\n"
    );
    let r = Router::start(&body, &[port]);
    for _ in 0..2 {
        let frame = raw_exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", WAIT);
        assert_x_error(&frame, 1043, "08S01", "Bad handshake");
    }
    r.expect_log("[routing:x] blocking client host for 127.0.0.1:");
    let (code, state, msg) = decode_x_error(&raw_exchange(port, b"", WAIT));
    assert_eq!((code, state.as_str()), (1129, "HY000"));
    assert!(
        msg.starts_with("Too many connection errors from 127.0.0.1:"),
        "{msg}"
    );
    drop(done_tx);
}

/// X protocol: a pre-authentication frame may be at most 1 MiB. A frame of exactly
/// 1 MiB is forwarded to the server; one byte more is a bad handshake.
#[test]
fn x_protocol_pre_auth_frame_limit_is_1_mib() {
    let backend = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let bport = backend.local_addr().unwrap().port();
    let port = free_port();
    let body = format!(
        "[routing:x]\nbind_port = {port}\ndestinations = 127.0.0.1:{bport}\nrouting_strategy = first-available\nprotocol = x\n"
    );
    let r = Router::start(&body, &[port]);
    // Exactly 1 MiB (the length counts the type byte): type 1, CON_CAPABILITIES_GET.
    let mut frame = ((1u32 << 20).to_le_bytes()).to_vec();
    frame.push(1);
    frame.resize(4 + (1 << 20), b'c');
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let (mut b, _) = backend.accept().unwrap();
    c.write_all(&frame).unwrap();
    b.set_read_timeout(Some(WAIT)).unwrap();
    let mut got = vec![0u8; frame.len()];
    b.read_exact(&mut got).unwrap();
    assert!(got == frame, "the 1 MiB frame reached the server unchanged");
    c.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut one = [0u8; 1];
    assert!(
        matches!(c.read(&mut one), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the client got no error and stays connected"
    );
    drop((c, b));
    // 1 MiB + 1: Mysqlx.Error 1043, without waiting for the payload.
    let mut hdr = ((1u32 << 20) + 1).to_le_bytes().to_vec();
    hdr.push(1);
    let frame = raw_exchange(port, &hdr, WAIT);
    assert_x_error(&frame, 1043, "08S01", "Bad handshake");
    r.expect_log("sent a bad handshake packet");
}
