//! Shutdown under load: SIGTERM with 2,000 active sessions and `shutdown_timeout` set.
//! Three real MariaDB servers, mysql_async clients.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::reliability::*;
use common::*;
use mysql_async::prelude::Queryable;

const SESSIONS: usize = 2000;
const TIMEOUT_S: u64 = 3;

/// 2,000 sessions through the router; 200 run a 1 s query and 100 a 30 s query when
/// SIGTERM arrives (`shutdown_timeout = 3`): the 1 s queries complete with their
/// result, the 30 s ones and the idle sessions are closed at the timeout, the router
/// exits 0 within timeout + 1 s, and from 200 ms after the signal no new connection is
/// accepted.
#[test]
fn sigterm_with_2000_sessions_drains_then_closes() {
    raise_fd_limit();
    let servers = [MariaDb::start(), MariaDb::start(), MariaDb::start()];
    let port = free_port();
    let body = format!(
        "[routing:rr]\nbind_port = {port}\ndestinations = {}\nrouting_strategy = round-robin\n",
        servers
            .iter()
            .map(|s| s.addr())
            .collect::<Vec<_>>()
            .join(",")
    );
    let mut r = start_router(
        &body,
        &[port],
        "info",
        &format!("max_total_connections = 4000\nshutdown_timeout = {TIMEOUT_S}"),
        None,
    );
    let pid = r.pid();
    let rt = rt();
    let t = Instant::now();
    let mut conns: Vec<mysql_async::Conn> = rt.block_on(async {
        let sem = Arc::new(tokio::sync::Semaphore::new(200));
        let tasks: Vec<_> = (0..SESSIONS)
            .map(|_| {
                let sem = sem.clone();
                tokio::spawn(async move {
                    let _p = sem.acquire().await.unwrap();
                    tokio::time::timeout(
                        Duration::from_secs(60),
                        mysql_async::Conn::new(opts(port)),
                    )
                    .await
                })
            })
            .collect();
        let mut v = Vec::new();
        for t in tasks {
            v.push(t.await.unwrap().expect("connect timeout").expect("connect"));
        }
        v
    });
    eprintln!("{SESSIONS} sessions in {:?}", t.elapsed());
    assert_eq!(conns.len(), SESSIONS);

    let idle: Vec<_> = conns.drain(300..).collect();
    let slow: Vec<_> = conns.drain(200..).collect();
    let quick = conns;
    let (quick_res, slow_res, exit_after, refused) = rt.block_on(async {
        let quick: Vec<_> = quick
            .into_iter()
            .map(|mut c| {
                tokio::spawn(async move {
                    let r: Result<Option<(u32, String)>, _> =
                        c.query_first("SELECT SLEEP(1), 'done'").await;
                    r.map_err(|e| e.to_string())
                })
            })
            .collect();
        let slow: Vec<_> = slow
            .into_iter()
            .map(|mut c| {
                tokio::spawn(async move {
                    let start = Instant::now();
                    let r: Result<Option<u32>, _> = c.query_first("SELECT SLEEP(30)").await;
                    (r.map_err(|e| e.to_string()), start.elapsed())
                })
            })
            .collect();
        // The queries are on their way.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let signal_at = Instant::now();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        // New connections from 200 ms after the signal until the exit are refused.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut refused = 0;
        let mut accepted = Vec::new();
        let exit_after = loop {
            if !std::path::Path::new(&format!("/proc/{pid}/fd")).exists()
                || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .is_ok_and(|s| s.contains(") Z"))
            {
                break signal_at.elapsed();
            }
            match std::net::TcpStream::connect(("127.0.0.1", port)) {
                Ok(_) => accepted.push(signal_at.elapsed()),
                Err(_) => refused += 1,
            }
            if signal_at.elapsed() > Duration::from_secs(TIMEOUT_S + 10) {
                break signal_at.elapsed();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert!(
            accepted.is_empty(),
            "connections accepted after SIGTERM at {accepted:?}"
        );
        let mut q = Vec::new();
        for t in quick {
            q.push(t.await.unwrap());
        }
        let mut s = Vec::new();
        for t in slow {
            s.push(tokio::time::timeout(Duration::from_secs(10), t).await);
        }
        (q, s, exit_after, refused)
    });
    eprintln!("exit {exit_after:?} after SIGTERM; {refused} connects refused meanwhile");
    assert_eq!(
        wait_exit(&mut r.child, Duration::from_secs(5)),
        Some(0),
        "exit status"
    );
    assert!(
        exit_after <= Duration::from_secs(TIMEOUT_S + 1),
        "exit {exit_after:?} after SIGTERM, shutdown_timeout = {TIMEOUT_S}"
    );
    assert!(refused > 0);
    let bad: Vec<_> = quick_res
        .iter()
        .filter(|r| !matches!(r, Ok(Some((0, d))) if d == "done"))
        .collect();
    assert!(
        bad.is_empty(),
        "{} of 200 short queries lost their result: {:?}",
        bad.len(),
        bad.first()
    );
    for s in &slow_res {
        match s {
            Ok(Ok((Err(_), took))) => assert!(
                *took < Duration::from_secs(TIMEOUT_S + 3),
                "a long query ended only after {took:?}"
            ),
            other => panic!("a long query was not closed at the timeout: {other:?}"),
        }
    }
    // The idle sessions were closed too: their next query fails at once.
    let failed = rt.block_on(async {
        let mut n = 0;
        for mut c in idle.into_iter().take(100) {
            if tokio::time::timeout(Duration::from_secs(5), c.query_drop("SELECT 1"))
                .await
                .is_ok_and(|r| r.is_err())
            {
                n += 1;
            }
        }
        n
    });
    assert_eq!(failed, 100, "idle sessions still open after the exit");
}
