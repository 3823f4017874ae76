//! Chaos under load: new connections at a steady rate plus long-lived sessions running
//! queries, through a round-robin and a first-available route over three real MariaDB
//! servers and a blackholed destination, while servers are SIGKILLed, SIGSTOPped and
//! restarted. Then the router's descriptors, threads and RSS must be back at idle.
//!
//! `cargo test` runs 20 s at 150 new connections/s with 100 sessions;
//! `RELIABILITY_LONG=1` runs the 60 s at 300/s with 200 sessions.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::reliability::*;
use common::*;
use mysql_async::prelude::Queryable;

/// A listener that never accepts, its backlog filled: connects to it hang (SYN not
/// answered), like a firewalled host.
fn blackhole() -> (socket2::Socket, Vec<std::net::TcpStream>, u16) {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    s.bind(
        &"127.0.0.1:0"
            .parse::<std::net::SocketAddr>()
            .unwrap()
            .into(),
    )
    .unwrap();
    s.listen(0).unwrap();
    let port = s.local_addr().unwrap().as_socket().unwrap().port();
    let mut fill = Vec::new();
    for _ in 0..4 {
        if let Ok(c) = std::net::TcpStream::connect_timeout(
            &format!("127.0.0.1:{port}").parse().unwrap(),
            Duration::from_millis(300),
        ) {
            fill.push(c);
        }
    }
    // The backlog is full once a connect times out.
    assert!(
        std::net::TcpStream::connect_timeout(
            &format!("127.0.0.1:{port}").parse().unwrap(),
            Duration::from_millis(500)
        )
        .is_err(),
        "blackhole still answers"
    );
    (s, fill, port)
}

/// A new connection: when it started, its route's port, and its outcome.
type Arrival = (Duration, u16, Result<u16, String>);

#[derive(Debug, Clone)]
struct Event {
    at: Duration,
    what: String,
}

#[test]
fn chaos_under_load() {
    raise_fd_limit();
    let long = long_run();
    let (secs, rate, sessions) = if long {
        (60u64, 300u64, 200usize)
    } else {
        (20, 150, 100)
    };
    let mut servers = [MariaDb::start(), MariaDb::start(), MariaDb::start()];
    let ports: Vec<u16> = servers.iter().map(|s| s.port).collect();
    let (_hole, _fill, hole_port) = blackhole();
    let (rr, fa) = (free_port(), free_port());
    let addrs: Vec<String> = servers.iter().map(|s| s.addr()).collect();
    let body = format!(
        "[routing:rr]\nbind_port = {rr}\ndestinations = {},127.0.0.1:{hole_port}\nrouting_strategy = round-robin\nconnect_timeout = 1\n\n\
         [routing:fa]\nbind_port = {fa}\ndestinations = {}\nrouting_strategy = first-available\nconnect_timeout = 1\n",
        addrs.join(","),
        addrs.join(",")
    );
    let mut r = start_router(
        &body,
        &[rr, fa],
        "info",
        "max_total_connections = 4000\n[destination_status]\nerror_quarantine_interval = 1",
        None,
    );
    let pid = r.pid();
    // Idle footprint after clients on both routes (first-use allocations) and with the
    // blackholed destination quarantined: its re-probe (every second, each hanging for
    // connect_timeout) is part of idle, so idle is the most seen over two probe cycles.
    assert!(cli_port_tcp(fa).is_ok());
    for _ in 0..4 {
        let _ = lib_port(rr);
    }
    assert!(
        r.wait_log(
            &format!("destination '127.0.0.1:{hole_port}' is unreachable"),
            Duration::from_secs(10)
        ),
        "the blackholed destination was not quarantined"
    );
    let mut idle = footprint(pid);
    for _ in 0..25 {
        std::thread::sleep(Duration::from_millis(100));
        let f = footprint(pid);
        idle.fds = idle.fds.max(f.fds);
        idle.threads = idle.threads.max(f.threads);
        idle.rss_kb = f.rss_kb;
    }
    eprintln!("idle: {idle:?}");

    let events: Arc<Mutex<Vec<Event>>> = Arc::default();
    let start = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let rt = rt();

    // Long-lived sessions: a query every 50 ms; a failure is recorded with the server
    // the session was on, then the session reconnects.
    let session_failures: Arc<Mutex<Vec<(Duration, u16, String)>>> = Arc::default();
    let session_queries = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let session_tasks: Vec<_> = (0..sessions)
        .map(|i| {
            let port = if i % 2 == 0 { rr } else { fa };
            let (stop, fails, n) = (
                stop.clone(),
                session_failures.clone(),
                session_queries.clone(),
            );
            rt.spawn(async move {
                while !stop.load(Ordering::SeqCst) {
                    let Ok(Ok(mut c)) = tokio::time::timeout(
                        Duration::from_secs(10),
                        mysql_async::Conn::new(opts(port)),
                    )
                    .await
                    else {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    };
                    let Ok(Ok(Some(on))) = c
                        .query_first::<u16, _>("SELECT @@port")
                        .await
                        .map(Ok::<_, ()>)
                    else {
                        continue;
                    };
                    while !stop.load(Ordering::SeqCst) {
                        let t = start.elapsed();
                        match tokio::time::timeout(
                            Duration::from_secs(10),
                            c.query_first::<u16, _>("SELECT @@port"),
                        )
                        .await
                        {
                            Ok(Ok(Some(p))) if p == on => n.fetch_add(1, Ordering::Relaxed),
                            other => {
                                fails.lock().unwrap().push((t, on, format!("{other:?}")));
                                break;
                            }
                        };
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    if stop.load(Ordering::SeqCst) {
                        let _ = c.disconnect().await;
                    }
                }
            })
        })
        .collect();

    // New connections at `rate` per second, alternating routes: connect, SELECT, quit.
    let arrivals = {
        let stop = stop.clone();
        rt.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
            let sem = Arc::new(tokio::sync::Semaphore::new(1000));
            let results: Arc<Mutex<Vec<Arrival>>> = Arc::default();
            let mut i = 0u64;
            while !stop.load(Ordering::SeqCst) {
                tick.tick().await;
                i += 1;
                let port = if i % 2 == 0 { rr } else { fa };
                let (sem, results) = (sem.clone(), results.clone());
                let Ok(p) = sem.try_acquire_owned() else {
                    results.lock().unwrap().push((
                        start.elapsed(),
                        port,
                        Err("1000 in flight".into()),
                    ));
                    continue;
                };
                tokio::spawn(async move {
                    let t = start.elapsed();
                    let r = match tokio::time::timeout(Duration::from_secs(10), select_port(port))
                        .await
                    {
                        Ok(Ok(p)) => Ok(p),
                        Ok(Err(e)) => Err(e.to_string()),
                        Err(_) => Err("hung 10 s".into()),
                    };
                    results.lock().unwrap().push((t, port, r));
                    drop(p);
                });
            }
            // Let the last ones finish.
            let _ = tokio::time::timeout(Duration::from_secs(15), sem.acquire_many(1000)).await;
            let v = results.lock().unwrap().clone();
            v
        })
    };

    // The chaos script.
    let at = |f: f64| Duration::from_secs_f64(secs as f64 * f);
    let log = |what: String| {
        eprintln!("{:>6.2}s {what}", start.elapsed().as_secs_f64());
        events.lock().unwrap().push(Event {
            at: start.elapsed(),
            what,
        });
    };
    let sleep_until = |t: Duration| {
        if let Some(d) = t.checked_sub(start.elapsed()) {
            std::thread::sleep(d);
        }
    };
    sleep_until(at(0.15));
    log(format!("SIGKILL {}", ports[0]));
    servers[0].kill();
    sleep_until(at(0.30));
    servers[0].restart();
    log(format!("restarted {}", ports[0]));
    sleep_until(at(0.45));
    let p1 = servers[1].pid().unwrap();
    log(format!("SIGSTOP {}", ports[1]));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(p1),
        nix::sys::signal::Signal::SIGSTOP,
    )
    .unwrap();
    std::thread::sleep(Duration::from_secs(5));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(p1),
        nix::sys::signal::Signal::SIGCONT,
    )
    .unwrap();
    log(format!("SIGCONT {}", ports[1]));
    sleep_until(at(0.75));
    log(format!("SIGKILL {}", ports[2]));
    servers[2].kill();
    servers[2].restart();
    log(format!("restarted {}", ports[2]));
    sleep_until(at(1.0));
    assert!(r.is_running(), "router died during the run");
    stop.store(true, Ordering::SeqCst);
    let new_conns = rt.block_on(arrivals).unwrap();
    rt.block_on(async {
        for t in session_tasks {
            let _ = tokio::time::timeout(Duration::from_secs(15), t).await;
        }
    });
    drop(rt);
    let events = events.lock().unwrap().clone();

    // New connections failed only around a failure: within 3 s after a kill, or
    // during a SIGSTOP (+ 3 s). Everything else succeeded.
    let windows: Vec<(Duration, Duration)> = {
        let find = |p: &str| {
            events
                .iter()
                .filter(|e| e.what.starts_with(p))
                .map(|e| e.at)
                .collect::<Vec<_>>()
        };
        let mut w: Vec<(Duration, Duration)> = find("SIGKILL")
            .into_iter()
            .map(|t| (t, t + Duration::from_secs(3)))
            .collect();
        for (s, c) in find("SIGSTOP").into_iter().zip(find("SIGCONT")) {
            w.push((s, c + Duration::from_secs(3)));
        }
        w
    };
    let in_window = |t: Duration| {
        windows
            .iter()
            .any(|(a, b)| t + Duration::from_secs(10) >= *a && t <= *b)
    };
    let total = new_conns.len();
    let failed: Vec<_> = new_conns.iter().filter(|(_, _, r)| r.is_err()).collect();
    let unexplained: Vec<_> = failed.iter().filter(|(t, _, _)| !in_window(*t)).collect();
    let q = session_queries.load(Ordering::Relaxed);
    let sf = session_failures.lock().unwrap().clone();
    eprintln!(
        "{total} new connections in {secs} s ({:.0}/s), {} failed ({} outside failure windows); {sessions} sessions ran {q} queries, {} session failures",
        total as f64 / secs as f64,
        failed.len(),
        unexplained.len(),
        sf.len()
    );
    assert!(
        total as u64 >= secs * rate * 8 / 10,
        "the load generator fell behind: {total}"
    );
    assert!(
        unexplained.is_empty(),
        "new connections failed away from any failure: {:?}",
        &unexplained[..unexplained.len().min(5)]
    );
    assert!(
        failed.len() * 10 <= total,
        "{} of {total} new connections failed",
        failed.len()
    );
    // Sessions failed only on the killed servers (the stopped one stalls, then goes on).
    let wrong: Vec<_> = sf
        .iter()
        .filter(|(_, on, _)| *on != ports[0] && *on != ports[2])
        .collect();
    assert!(
        wrong.is_empty(),
        "sessions failed on a server that did not fail: {:?}",
        &wrong[..wrong.len().min(5)]
    );

    // Both routes serve again, over all three servers for round-robin.
    let mut seen = std::collections::HashSet::new();
    for _ in 0..12 {
        if let Ok(p) = lib_port(rr) {
            seen.insert(p);
        }
    }
    assert_eq!(seen.len(), 3, "round-robin after the run reaches {seen:?}");
    assert!(lib_port(fa).is_ok());
    assert!(r.is_running(), "router died");

    // Back at idle: descriptors and threads exactly, RSS within 16 MiB.
    let after = settle(pid, idle, 16 * 1024, Duration::from_secs(15));
    eprintln!("after: {after:?}");
    assert!(
        after.fds <= idle.fds,
        "descriptors: idle {idle:?}, after {after:?}"
    );
    assert!(
        after.threads <= idle.threads,
        "threads: idle {idle:?}, after {after:?}"
    );
    assert!(
        after.rss_kb <= idle.rss_kb + 16 * 1024,
        "RSS: idle {idle:?}, after {after:?}"
    );
}
