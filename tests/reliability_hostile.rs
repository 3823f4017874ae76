//! Hostile clients through the router binary: 16 MiB frames, length-field lies,
//! 100,000 tiny packets, closing mid-frame; a well-behaved client alongside must not
//! notice. Real MariaDB; raw sockets for the attackers, mysql_async for the bystander.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::reliability::*;
use common::*;
use mysql_async::prelude::Queryable;

fn frame(seq: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = (payload.len() as u32).to_le_bytes()[..3].to_vec();
    f.push(seq);
    f.extend_from_slice(payload);
    f
}

/// Reads until EOF or `max`; whether the peer closed within it.
fn closed_within(s: &mut TcpStream, max: Duration) -> bool {
    let _ = s.set_read_timeout(Some(max));
    let start = Instant::now();
    let mut buf = [0u8; 65536];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) if start.elapsed() < max => continue,
            Ok(_) => return false,
            Err(e) => {
                return !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                )
            }
        }
    }
}

fn greeted(port: u16) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut h = [0u8; 4];
    s.read_exact(&mut h).expect("greeting header");
    let mut g = vec![0u8; u32::from_le_bytes([h[0], h[1], h[2], 0]) as usize];
    s.read_exact(&mut g).expect("greeting");
    s
}

#[test]
fn hostile_clients_do_not_affect_others() {
    raise_fd_limit();
    let server = MariaDb::start();
    let port = free_port();
    let body = format!(
        "[routing:rr]\nbind_port = {port}\ndestinations = {}\nrouting_strategy = round-robin\nclient_connect_timeout = 2\nmax_connect_errors = 1000000\n",
        server.addr()
    );
    let mut r = start_router(&body, &[port], "info", "max_total_connections = 4000", None);
    let pid = r.pid();
    let idle = footprint(pid);

    // The bystander: one session querying in a loop and a new connection every 200 ms,
    // for as long as the attacks last; its worst latency is recorded.
    let stop = Arc::new(AtomicBool::new(false));
    let sport = server.port;
    let bystander = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let rt = rt();
            rt.block_on(async move {
                let mut c = mysql_async::Conn::new(opts(port)).await.expect("bystander");
                let (mut queries, mut connects, mut worst) = (0u64, 0u64, Duration::ZERO);
                let mut last_connect = Instant::now();
                while !stop.load(Ordering::SeqCst) {
                    let t = Instant::now();
                    let v: Option<u32> = tokio::time::timeout(
                        Duration::from_secs(5),
                        c.query_first("SELECT 41 + 1"),
                    )
                    .await
                    .expect("bystander query hung")
                    .expect("bystander query failed");
                    assert_eq!(v, Some(42));
                    worst = worst.max(t.elapsed());
                    queries += 1;
                    if last_connect.elapsed() > Duration::from_millis(200) {
                        let t = Instant::now();
                        let p = tokio::time::timeout(Duration::from_secs(5), select_port(port))
                            .await
                            .expect("bystander connect hung")
                            .expect("bystander connect failed");
                        assert_eq!(p, sport);
                        worst = worst.max(t.elapsed());
                        connects += 1;
                        last_connect = Instant::now();
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                (queries, connects, worst)
            })
        })
    };

    let attacks: Vec<(&str, std::thread::JoinHandle<String>)> = vec![
        (
            "16 MiB frames in the handshake",
            std::thread::spawn(move || {
                let big = vec![0x41u8; 0xff_ffff];
                for _ in 0..4 {
                    let mut s = greeted(port);
                    let _ = s.write_all(&frame(1, &big));
                    assert!(
                        closed_within(&mut s, Duration::from_secs(10)),
                        "16 MiB handshake frame: not closed"
                    );
                }
                "4 clients".into()
            }),
        ),
        (
            "16 MiB frames after login",
            std::thread::spawn(move || {
                let mut sent = 0;
                for _ in 0..2 {
                    let mut s = raw_login(port).expect("login");
                    let mut q = vec![0x03u8];
                    q.extend_from_slice(b"SELECT '");
                    q.resize(0xff_ffff, b'a');
                    // A full 16 MiB - 1 packet, its empty continuation, then the server's
                    // verdict (max_allowed_packet) or a result; either way it ends.
                    let _ = s.write_all(&frame(0, &q));
                    let _ = s.write_all(&frame(1, b""));
                    sent += 1;
                    // The server got all of it: it answers (a result or its
                    // max_allowed_packet error) or closes.
                    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                    let mut b = [0u8; 1];
                    assert!(s.read(&mut b).is_ok(), "no answer to a 16 MiB command");
                }
                format!("{sent} clients")
            }),
        ),
        (
            "length-field lies",
            std::thread::spawn(move || {
                // Announces 1,000 bytes, sends 10, then waits: closed by client_connect_timeout.
                let mut s = greeted(port);
                let mut f = frame(1, &[0u8; 10]);
                f[0..3].copy_from_slice(&1000u32.to_le_bytes()[..3]);
                s.write_all(&f).unwrap();
                assert!(
                    closed_within(&mut s, Duration::from_secs(6)),
                    "short frame not closed"
                );
                // Announces 5 bytes, sends 500.
                let mut s = greeted(port);
                let mut f = frame(1, &[7u8; 500]);
                f[0..3].copy_from_slice(&5u32.to_le_bytes()[..3]);
                let _ = s.write_all(&f);
                assert!(
                    closed_within(&mut s, Duration::from_secs(6)),
                    "long frame not closed"
                );
                // After login: a command whose length says 16 MiB - 1, 100 bytes sent, then
                // the client stops: the session just waits for its bytes (like a server
                // would); closing it ends it.
                let mut s = raw_login(port).expect("login");
                let mut f = frame(0, &[0x03; 100]);
                f[0..3].copy_from_slice(&0xff_ffffu32.to_le_bytes()[..3]);
                s.write_all(&f).unwrap();
                std::thread::sleep(Duration::from_millis(500));
                drop(s);
                "3 clients".into()
            }),
        ),
        (
            "100,000 tiny packets",
            std::thread::spawn(move || {
                let s = raw_login(port).expect("login");
                let mut w = s.try_clone().unwrap();
                let reader = std::thread::spawn(move || {
                    let mut s = s;
                    let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
                    let mut n = 0usize;
                    let mut buf = vec![0u8; 65536];
                    // Each COM_PING is answered by a 7-byte OK in an 11-byte packet.
                    while n < 100_000 * 11 {
                        match s.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(k) => n += k,
                        }
                    }
                    n / 11
                });
                for _ in 0..100_000 {
                    w.write_all(&frame(0, &[0x0e])).expect("ping write");
                }
                let oks = reader.join().unwrap();
                assert_eq!(oks, 100_000, "pings answered");
                format!("{oks} pings answered")
            }),
        ),
        (
            "closing mid-frame",
            std::thread::spawn(move || {
                for i in 0..300 {
                    let mut s = greeted(port);
                    let f = frame(1, &[0x41u8; 64]);
                    let cut = 1 + i % (f.len() - 1);
                    let _ = s.write_all(&f[..cut]);
                    drop(s);
                    let mut s = raw_login(port).expect("login");
                    let q = frame(0, b"\x03SELECT 1");
                    let _ = s.write_all(&q[..1 + i % (q.len() - 1)]);
                }
                "600 clients".into()
            }),
        ),
    ];
    for (name, h) in attacks {
        match h.join() {
            Ok(what) => eprintln!("{name}: {what}"),
            Err(e) => panic!("attack {name:?} failed: {e:?}"),
        }
    }
    stop.store(true, Ordering::SeqCst);
    let (queries, connects, worst) = bystander.join().expect("bystander failed");
    eprintln!("bystander: {queries} queries and {connects} connections, worst {worst:?}");
    assert!(
        queries >= 20 && connects >= 2,
        "the bystander ran too little to tell"
    );
    assert!(
        worst < Duration::from_secs(2),
        "a bystander waited {worst:?}"
    );
    assert!(r.is_running(), "router died");
    let after = settle(pid, idle, 64 * 1024, Duration::from_secs(15));
    eprintln!("idle {idle:?}, after {after:?}");
    assert!(
        after.fds <= idle.fds,
        "descriptors: idle {idle:?}, after {after:?}"
    );
    assert!(
        after.rss_kb <= idle.rss_kb + 64 * 1024,
        "RSS: idle {idle:?}, after {after:?}"
    );
}
