//! Descriptor exhaustion: the router under `RLIMIT_NOFILE` 256 with 1,000 clients
//! arriving. Real MariaDB, mysql_async clients and raw TCP clients.

mod common;

use std::io::Read;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::reliability::*;
use common::*;
use mysql_async::prelude::Queryable;

/// How a client's attempt ended.
#[derive(Debug)]
enum Attempt {
    Served(mysql_async::Conn),
    Refused(String),
    Hung,
}

/// Under `ulimit -n 256`: of 1,000 clients, those the descriptors allow are served and
/// the rest get an error or a close within seconds (none hangs); the saturated router
/// uses almost no CPU while clients keep arriving (no busy accept loop); accept
/// failures are logged at most once a second, with a count; the destination is not
/// quarantined for the router's own shortage; and full service returns by itself once
/// the clients leave.
#[test]
fn descriptor_exhaustion_sheds_clients_and_recovers() {
    raise_fd_limit();
    let server = MariaDb::start();
    let port = free_port();
    let body = format!(
        "[routing:rr]\nbind_port = {port}\ndestinations = {}\nrouting_strategy = round-robin\nclient_connect_timeout = 3\n",
        server.addr()
    );
    let mut r = start_router(
        &body,
        &[port],
        "info",
        "max_total_connections = 4000",
        Some(256),
    );
    let pid = r.pid();
    let rt = rt();

    // 1,000 clients arrive, 100 at a time; the served ones stay connected.
    let t0 = Instant::now();
    let attempts: Vec<Attempt> = rt.block_on(async {
        let sem = Arc::new(tokio::sync::Semaphore::new(100));
        let tasks: Vec<_> = (0..1000)
            .map(|_| {
                let sem = sem.clone();
                tokio::spawn(async move {
                    let _p = sem.acquire().await.unwrap();
                    let attempt = async {
                        let mut c = mysql_async::Conn::new(opts(port)).await?;
                        c.query_drop("SELECT 1").await?;
                        Ok::<_, mysql_async::Error>(c)
                    };
                    match tokio::time::timeout(Duration::from_secs(20), attempt).await {
                        Ok(Ok(c)) => Attempt::Served(c),
                        Ok(Err(e)) => Attempt::Refused(e.to_string()),
                        Err(_) => Attempt::Hung,
                    }
                })
            })
            .collect();
        let mut v = Vec::new();
        for t in tasks {
            v.push(t.await.unwrap());
        }
        v
    });
    let served = attempts
        .iter()
        .filter(|a| matches!(a, Attempt::Served(_)))
        .count();
    let refused: Vec<&String> = attempts
        .iter()
        .filter_map(|a| match a {
            Attempt::Refused(e) => Some(e),
            _ => None,
        })
        .collect();
    let hung = attempts
        .iter()
        .filter(|a| matches!(a, Attempt::Hung))
        .count();
    eprintln!(
        "1000 clients in {:?}: {served} served, {} refused, {hung} hung; first refusal: {:?}",
        t0.elapsed(),
        refused.len(),
        refused.first()
    );
    assert_eq!(hung, 0, "clients hung");
    assert!(
        served >= 80,
        "only {served} clients served under 256 descriptors"
    );
    assert!(
        !refused.is_empty(),
        "256 descriptors cannot hold 1,000 sessions"
    );
    assert!(r.is_running(), "router died");

    // Saturated: more clients keep arriving (raw TCP, they only read) for 3 s; each gets
    // the 1040 frame or a close, or (when a refused client has just freed descriptors)
    // the server's greeting and a close after client_connect_timeout (3 s); the
    // router's CPU time stays low.
    let cpu0 = cpu_time(pid);
    let w0 = Instant::now();
    let raw: Vec<_> = (0..60)
        .map(|_| {
            std::thread::sleep(Duration::from_millis(50));
            std::thread::spawn(move || {
                let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
                s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
                let start = Instant::now();
                let mut got = Vec::new();
                let res = s.read_to_end(&mut got);
                Some((res.is_ok(), got, start.elapsed()))
            })
        })
        .collect();
    let raw: Vec<_> = raw.into_iter().map(|h| h.join().unwrap()).collect();
    let wall = w0.elapsed();
    let cpu = cpu_time(pid) - cpu0;
    eprintln!("saturated for {wall:?}: router CPU {cpu:?}");
    for (i, res) in raw.iter().enumerate() {
        let (closed, got, took) = res.as_ref().expect("connect while saturated");
        assert!(
            *closed,
            "raw client {i} was not closed within 10 s (took {took:?})"
        );
        assert!(
            got.is_empty()
                || got.get(4..7) == Some(&[0xff, 0x10, 0x04][..])
                || got.get(4) == Some(&10),
            "raw client {i} got {got:?}, not 1040 nor a greeting"
        );
    }
    assert!(
        cpu < wall / 5,
        "router used {cpu:?} of CPU in {wall:?} while saturated: a busy loop?"
    );

    // The log: failures are counted, not one line each.
    let log = r.log_text();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("Too many open files"))
        .collect();
    let reported: u64 = lines
        .iter()
        .map(|l| {
            l.split_once(" times in the last")
                .and_then(|(a, _)| a.rsplit(" (").next()?.parse().ok())
                .unwrap_or(1)
        })
        .sum();
    let secs = t0.elapsed().as_secs() + 2;
    eprintln!(
        "{} log lines report {reported} failures in about {secs} s",
        lines.len()
    );
    assert!(!lines.is_empty(), "no descriptor error logged:\n{log}");
    assert!(
        lines.len() as u64 <= secs,
        "{} lines in {secs} s: not rate-limited:\n{}",
        lines.len(),
        lines.join("\n")
    );
    assert!(
        reported as usize >= refused.len() / 2,
        "{reported} failures reported for {} refusals:\n{}",
        refused.len(),
        lines.join("\n")
    );
    assert!(
        !log.contains("quarantined"),
        "the router's own shortage quarantined the destination:\n{log}"
    );

    // The clients leave; full service returns by itself.
    rt.block_on(async {
        for a in attempts {
            if let Attempt::Served(c) = a {
                let _ = c.disconnect().await;
            }
        }
    });
    let back = Instant::now() + Duration::from_secs(15);
    let mut ok = 0;
    while ok < 50 && Instant::now() < back {
        match lib_port(port) {
            Ok(p) if p == server.port => ok += 1,
            _ => {
                ok = 0;
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
    assert_eq!(ok, 50, "service did not return after the load left");
    // 200 concurrent sessions fit again (the limit allows about 120 sessions: 2 each).
    let again = rt.block_on(async {
        let mut held = Vec::new();
        for _ in 0..100 {
            held.push(mysql_async::Conn::new(opts(port)).await);
        }
        let n = held.iter().filter(|c| c.is_ok()).count();
        for c in held.into_iter().flatten() {
            let _ = c.disconnect().await;
        }
        n
    });
    assert_eq!(again, 100, "100 concurrent sessions after recovery");
    assert!(r.is_running(), "router died");
}
