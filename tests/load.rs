//! Many clients through one route, and a backend crash under load. Bounded in count
//! and time; real MariaDB servers and the mysql_async client library.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use mysql_async::prelude::Queryable;

/// A round-robin route; the process limit is raised above the 1,000 clients of these
/// tests (the default, 512, is tested in admission.rs).
fn rr_route(port: u16, servers: &[&MariaDb]) -> String {
    let d = servers
        .iter()
        .map(|m| m.addr())
        .collect::<Vec<_>>()
        .join(",");
    format!(
        "[DEFAULT]\nmax_total_connections = 4000\n[routing:rr]\nbind_port = {port}\ndestinations = {d}\nrouting_strategy = round-robin\n"
    )
}

/// MySQL Router's launch scenario: 1,000 concurrent clients on one round-robin route,
/// all connected at once, each runs `SELECT @@port`; all succeed, spread within ±5%.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_concurrent_clients_round_robin() {
    raise_fd_limit();
    let (s1, s2, s3) = (MariaDb::start(), MariaDb::start(), MariaDb::start());
    let port = free_port();
    let _r = Router::start(&rr_route(port, &[&s1, &s2, &s3]), &[port]);
    const N: usize = 1000;
    let barrier = Arc::new(tokio::sync::Barrier::new(N));
    let sem = Arc::new(tokio::sync::Semaphore::new(200)); // pace the connects, not the holding
    let mut tasks = Vec::with_capacity(N);
    for _ in 0..N {
        let (barrier, sem) = (barrier.clone(), sem.clone());
        tasks.push(tokio::spawn(async move {
            let conn = {
                let _p = sem.acquire().await.unwrap();
                tokio::time::timeout(Duration::from_secs(60), mysql_async::Conn::new(opts(port)))
                    .await
            };
            // Everyone waits until all are connected: 1,000 concurrent connections.
            barrier.wait().await;
            let mut c = conn
                .map_err(|_| "connect timeout".to_string())?
                .map_err(|e| e.to_string())?;
            let p: Option<u16> = c
                .query_first("SELECT @@port")
                .await
                .map_err(|e| e.to_string())?;
            let _ = c.disconnect().await;
            Ok::<u16, String>(p.unwrap_or(0))
        }));
    }
    let mut counts = std::collections::HashMap::new();
    let mut failures = Vec::new();
    for t in tasks {
        match tokio::time::timeout(Duration::from_secs(120), t).await {
            Ok(Ok(Ok(p))) => *counts.entry(p).or_insert(0usize) += 1,
            other => failures.push(format!("{other:?}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} failed, first: {:?}",
        failures.len(),
        failures.first()
    );
    for s in [&s1, &s2, &s3] {
        let n = counts.get(&s.port).copied().unwrap_or(0);
        let ideal = N as f64 / 3.0;
        assert!(
            (n as f64 - ideal).abs() <= ideal * 0.05,
            "server {} got {n} of {N}: {counts:?}",
            s.port
        );
    }
}

/// A backend is SIGKILLed while 100 clients are connected and new ones keep arriving:
/// the router stays up, the dead backend's clients get an error promptly, new clients
/// succeed on the others, and the router's descriptors return to their idle count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_killed_under_load() {
    raise_fd_limit();
    let (mut s1, s2, s3) = (MariaDb::start(), MariaDb::start(), MariaDb::start());
    let port = free_port();
    let mut r = Router::start(&rr_route(port, &[&s1, &s2, &s3]), &[port]);
    // The idle count once every I/O thread has started (each builds its own runtime,
    // with descriptors of its own) and the count has been steady for 300 ms.
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let io_threads = || {
        std::fs::read_dir(format!("/proc/{}/task", r.pid()))
            .map(|d| {
                d.flatten()
                    .filter(|t| {
                        std::fs::read_to_string(t.path().join("comm"))
                            .unwrap_or_default()
                            .starts_with("io-")
                    })
                    .count()
            })
            .unwrap_or(0)
    };
    assert!(eventually(WAIT, || io_threads() >= cpus), "I/O threads");
    let mut idle_fds = r.fd_count();
    let steady = Instant::now() + WAIT;
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = r.fd_count();
        if now == idle_fds || Instant::now() > steady {
            break;
        }
        idle_fds = now;
    }

    let mut held = Vec::new();
    for _ in 0..100 {
        let mut c = mysql_async::Conn::new(opts(port)).await.expect("connect");
        let p: Option<u16> = c.query_first("SELECT @@port").await.expect("query");
        held.push((p.unwrap_or(0), c));
    }
    let on_s1 = held.iter().filter(|(p, _)| *p == s1.port).count();
    assert!(on_s1 >= 30, "{on_s1} clients on s1");

    // New clients keep arriving during the crash.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let arrived = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let arrivals = {
        let (stop, arrived) = (stop.clone(), arrived.clone());
        tokio::spawn(async move {
            let (mut ok, mut err) = (0usize, Vec::new());
            let deadline = Instant::now() + Duration::from_secs(30);
            while !stop.load(std::sync::atomic::Ordering::SeqCst) && Instant::now() < deadline {
                match tokio::time::timeout(WAIT, select_port(port)).await {
                    Ok(Ok(_)) => ok += 1,
                    other => err.push(format!("{other:?}")),
                }
                arrived.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            (ok, err)
        })
    };
    let arrivals_reach = |n: usize| {
        let arrived = arrived.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(20);
            while arrived.load(std::sync::atomic::Ordering::SeqCst) < n && Instant::now() < deadline
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            assert!(
                arrived.load(std::sync::atomic::Ordering::SeqCst) >= n,
                "arrivals stalled"
            );
        }
    };
    arrivals_reach(3).await;
    let s1_port = s1.port;
    tokio::task::spawn_blocking(move || {
        s1.kill();
        s1
    })
    .await
    .map(drop)
    .unwrap();

    // Every client of the dead server gets an error within 15 s (generous: the CPUs are shared); the others still work.
    let t0 = Instant::now();
    for (p, mut c) in held {
        let res = tokio::time::timeout(
            Duration::from_secs(15),
            c.query_first::<u16, _>("SELECT @@port"),
        )
        .await;
        if p == s1_port {
            // The connection ends (I/O or closed-connection error), no hang, no answer.
            assert!(
                matches!(
                    res,
                    Ok(Err(mysql_async::Error::Io(_))) | Ok(Err(mysql_async::Error::Driver(_)))
                ),
                "client of killed server: {res:?}"
            );
        } else {
            assert!(
                matches!(res, Ok(Ok(Some(q))) if q == p),
                "client of live server: {res:?}"
            );
            let _ = c.disconnect().await;
        }
    }
    assert!(t0.elapsed() < Duration::from_secs(60), "{:?}", t0.elapsed());
    // More clients arrive after the crash.
    arrivals_reach(arrived.load(std::sync::atomic::Ordering::SeqCst) + 5).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (ok, err) = arrivals.await.unwrap();
    assert!(ok > 0);
    // At most the clients that raced the crash itself may fail (their server died under them).
    assert!(err.len() <= 2, "{} new clients failed: {err:?}", err.len());
    // After the crash, new clients succeed on the live servers.
    for _ in 0..6 {
        let p = select_port(port).await.expect("new client after crash");
        assert!(p == s2.port || p == s3.port);
    }
    assert!(r.is_running(), "router died");
    // The descriptors return to the idle count. Sampled until it holds: the quarantine
    // re-probes s1 every second with a socket of its own, for a moment.
    let back = Instant::now() + WAIT;
    let mut fds = r.fd_count();
    while fds > idle_fds && Instant::now() < back {
        tokio::time::sleep(Duration::from_millis(50)).await;
        fds = r.fd_count();
    }
    assert!(
        fds <= idle_fds,
        "router leaks descriptors: {fds} > {idle_fds}"
    );
}
