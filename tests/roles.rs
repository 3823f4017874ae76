//! Server roles: the `[monitor]` and routes with `role`, against real MariaDB GTID
//! replication on loopback (a primary and two replicas, shared by the tests of this
//! binary and used by one test at a time), standalone servers that hang or die, and the
//! configuration errors.

mod common;

use std::collections::HashMap;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use common::replication::{self, Replication, APP_PASS, APP_USER, MON_PASS, MON_USER};
use common::{MariaDb, Router};
use mysql_async::prelude::Queryable;

/// The replication set, one test at a time (tests change its topology).
fn repl() -> MutexGuard<'static, Replication> {
    static R: OnceLock<Mutex<Replication>> = OnceLock::new();
    R.get_or_init(|| {
        let r = Replication::start(2);
        r.kill_when_process_ends();
        Mutex::new(r)
    })
    .lock()
    .unwrap_or_else(|p| p.into_inner())
}

/// Unique ids for rows written by the tests.
fn next_id() -> i32 {
    static N: AtomicI32 = AtomicI32::new(1);
    N.fetch_add(1, Ordering::SeqCst)
}

/// A `[monitor]` section whose password is in a 0600 file.
fn monitor_section(password: &str) -> String {
    monitor_section_with(password, "")
}

fn monitor_section_with(password: &str, extra: &str) -> String {
    use std::os::unix::fs::PermissionsExt;
    let dir = common::tmp_dir("monpw");
    let f = dir.join("monitor.pw");
    std::fs::write(&f, format!("{password}\n")).unwrap();
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
    format!(
        "[monitor]\nuser = {MON_USER}\npassword_file = {}\ninterval = 1\nconnect_timeout = 1\nread_timeout = 1\n{extra}\n",
        f.display()
    )
}

fn route(name: &str, port: u16, dests: &[String], extra: &str) -> String {
    format!(
        "[routing:{name}]\nbind_port = {port}\ndestinations = {}\n{extra}\n",
        dests.join(",")
    )
}

fn app_opts(port: u16) -> mysql_async::Opts {
    mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(port)
        .user(Some(APP_USER))
        .pass(Some(APP_PASS))
        .prefer_socket(false)
        .into()
}

/// Connects as `app` through `port`; the connection and the server's `@@port`.
async fn app_conn(port: u16) -> Result<(mysql_async::Conn, u16), String> {
    let f = async {
        let mut c = mysql_async::Conn::new(app_opts(port)).await?;
        let p: Option<u16> = c.query_first("SELECT @@port").await?;
        Ok::<_, mysql_async::Error>((c, p.unwrap_or(0)))
    };
    match tokio::time::timeout(Duration::from_secs(5), f).await {
        Ok(Ok(x)) => Ok(x),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timeout".into()),
    }
}

/// `@@port` of one short `app` session through `port`.
fn app_port(port: u16) -> Result<u16, String> {
    common::rt().block_on(async {
        let (c, p) = app_conn(port).await?;
        let _ = c.disconnect().await;
        Ok(p)
    })
}

/// Waits until `app_port(port)` answers `want` (bounded).
fn wait_port(port: u16, want: u16, max: Duration) -> bool {
    let deadline = Instant::now() + max;
    while Instant::now() < deadline {
        if app_port(port) == Ok(want) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

fn count_lines(log: &str, needle: &str) -> usize {
    log.lines().filter(|l| l.contains(needle)).count()
}

/// A write acknowledged through the PRIMARY route.
struct Ack {
    id: i32,
    port: u16,
    at: Instant,
}

#[derive(Default)]
struct WriterLog {
    acks: Vec<Ack>,
    /// Writes refused with 1290 (read-only server).
    read_only_errors: usize,
    /// Sessions that ended under the writer (closed by the router).
    dropped: usize,
}

/// Writes through `port` every 20 ms until `stop` (at most `max`): one session, kept
/// after an error 1290, reconnected when it is closed.
fn writer(port: u16, stop: Arc<AtomicBool>, max: Duration) -> WriterLog {
    common::rt().block_on(async move {
        let mut log = WriterLog::default();
        let deadline = Instant::now() + max;
        let mut conn: Option<(mysql_async::Conn, u16)> = None;
        while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
            if conn.is_none() {
                match app_conn(port).await {
                    Ok(c) => conn = Some(c),
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                }
            }
            let Some((c, p)) = conn.as_mut() else {
                continue;
            };
            let id = next_id();
            let q = format!("INSERT INTO test.w VALUES ({id}, @@port)");
            match tokio::time::timeout(Duration::from_secs(5), c.query_drop(q)).await {
                Ok(Ok(())) => log.acks.push(Ack {
                    id,
                    port: *p,
                    at: Instant::now(),
                }),
                Ok(Err(mysql_async::Error::Server(e))) if e.code == 1290 => {
                    log.read_only_errors += 1
                }
                _ => {
                    log.dropped += 1;
                    conn = None;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if let Some((c, _)) = conn {
            let _ = c.disconnect().await;
        }
        log
    })
}

#[test]
fn switchover_moves_the_primary_route_and_closes_old_sessions() {
    let mut r = repl();
    let (rw, ro) = (common::free_port(), common::free_port());
    let dests: Vec<String> = r.servers.iter().map(|s| s.addr()).collect();
    let body = format!(
        "{}{}{}",
        monitor_section(MON_PASS),
        route(
            "rw",
            rw,
            &dests,
            "role = PRIMARY\nrouting_strategy = first-available"
        ),
        route(
            "ro",
            ro,
            &dests,
            "role = SECONDARY\nrouting_strategy = round-robin"
        )
    );
    let router = Router::start(&body, &[rw, ro]);
    let old = r.primary;
    let old_port = r.servers[old].port;
    assert!(
        wait_port(rw, old_port, Duration::from_secs(10)),
        "PRIMARY route does not reach the primary; log:\n{}",
        router.log_text()
    );
    let replica_ports: Vec<u16> = r
        .replica_indexes()
        .iter()
        .map(|&i| r.servers[i].port)
        .collect();
    for _ in 0..4 {
        let p = app_port(ro).unwrap();
        assert!(replica_ports.contains(&p), "SECONDARY route reached {p}");
    }

    let stop = Arc::new(AtomicBool::new(false));
    let w = {
        let stop = stop.clone();
        std::thread::spawn(move || writer(rw, stop, Duration::from_secs(40)))
    };
    std::thread::sleep(Duration::from_secs(2));
    let to = r.replica_indexes()[0];
    let new_port = r.servers[to].port;
    let writable_at = r.switchover(to);
    // Let the writer run on the new primary for a while.
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        if router.log_text().contains("closing 1 connection(s)")
            && Instant::now() > writable_at + Duration::from_secs(4)
        {
            break;
        }
    }
    stop.store(true, Ordering::SeqCst);
    let log = w.join().unwrap();
    let text = router.log_text();

    let before = log.acks.iter().filter(|a| a.port == old_port).count();
    let after: Vec<&Ack> = log.acks.iter().filter(|a| a.port == new_port).collect();
    assert!(
        before > 0 && !after.is_empty(),
        "writes: {before} on the old primary, {} on the new; log:\n{text}",
        after.len()
    );
    // Zero writes accepted by the old primary once writes moved: every write it took
    // comes before every write the new primary took, and the old primary's rows are
    // exactly the acknowledged ones (nothing committed there unacknowledged).
    let last_old = log
        .acks
        .iter()
        .filter(|a| a.port == old_port)
        .map(|a| a.id)
        .max();
    assert!(
        last_old < Some(after[0].id),
        "a write went to the old primary after the switch"
    );
    // Every acknowledged write is on the new primary (none stranded on another server).
    let ids: Vec<String> = log.acks.iter().map(|a| a.id.to_string()).collect();
    let found = replication::must(
        r.primary(),
        &format!(
            "SELECT COUNT(*) FROM test.w WHERE id IN ({})",
            ids.join(",")
        ),
    );
    assert_eq!(found, ids.len().to_string());
    let on_old = replication::must(
        r.primary(),
        &format!(
            "SELECT COUNT(*) FROM test.w WHERE port = {old_port} AND id >= {}",
            log.acks[0].id
        ),
    );
    assert_eq!(on_old, before.to_string());
    // The route followed within interval + 1 s.
    let first_new = after[0].at.saturating_duration_since(writable_at);
    eprintln!(
        "switchover: first write on the new primary {} ms after it turned writable; {} refused (1290) on the old one; {} session(s) closed",
        first_new.as_millis(),
        log.read_only_errors,
        log.dropped
    );
    assert!(
        first_new <= Duration::from_secs(2),
        "route followed after {first_new:?}; log:\n{text}"
    );
    // The old primary's session was closed by the router, with a WARNING.
    assert!(
        log.dropped >= 1,
        "the writer's session on the old primary was not closed"
    );
    let old_addr = r.servers[old].addr();
    assert!(
        text.contains(&format!(
            "[routing:rw] closing 1 connection(s) to '{old_addr}': it is no longer PRIMARY"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "destination '{old_addr}' changed role from PRIMARY to"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "destination '{}' changed role from SECONDARY to PRIMARY",
            r.servers[to].addr()
        )),
        "{text}"
    );
    // New clients of the SECONDARY route now avoid the new primary.
    r.wait_running(Duration::from_secs(10));
    let replica_ports: Vec<u16> = r
        .replica_indexes()
        .iter()
        .map(|&i| r.servers[i].port)
        .collect();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut seen = Vec::new();
    while seen.len() < 4 && Instant::now() < deadline {
        if let Ok(p) = app_port(ro) {
            seen.push(p);
        }
    }
    assert!(
        seen.iter().all(|p| replica_ports.contains(p)),
        "{seen:?} vs {replica_ports:?}"
    );
}

#[test]
fn lagging_replica_leaves_the_secondary_route_and_returns() {
    let r = repl();
    r.wait_running(Duration::from_secs(10));
    let ro = common::free_port();
    let dests: Vec<String> = r.servers.iter().map(|s| s.addr()).collect();
    let body = format!(
        "{}{}",
        monitor_section(MON_PASS),
        route(
            "ro",
            ro,
            &dests,
            "role = SECONDARY\nrouting_strategy = round-robin\nmax_replication_lag = 2"
        )
    );
    // The REST API and /metrics show the monitor's view.
    let http = common::free_port();
    let pw = common::http::passwd_file(&common::tmp_dir("rest"), "u", "p");
    let body = format!(
        "{body}{}\n[metrics]\n",
        common::http::monitoring_sections(http, &pw)
    );
    let router = Router::start(&body, &[ro]);
    let reps = r.replica_indexes();
    let (lagging, other) = (&r.servers[reps[0]], &r.servers[reps[1]]);
    assert!(wait_port(ro, lagging.port, Duration::from_secs(10)));
    assert!(wait_port(ro, other.port, Duration::from_secs(5)));

    // Writes go on while the replica's SQL thread is stopped.
    let stop = Arc::new(AtomicBool::new(false));
    let primary_port = r.primary().port;
    let w = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            common::rt().block_on(async move {
                let mut c = mysql_async::Conn::new(common::opts(primary_port))
                    .await
                    .unwrap();
                let deadline = Instant::now() + Duration::from_secs(40);
                while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                    let id = next_id();
                    c.query_drop(format!("INSERT INTO test.w VALUES ({id}, @@port)"))
                        .await
                        .unwrap();
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                let _ = c.disconnect().await;
            })
        })
    };
    replication::must(lagging, "STOP SLAVE SQL_THREAD");
    let stopped = Instant::now();
    let leave = format!(
        "[routing:ro] destination '{}' does not serve role SECONDARY: replication lag",
        lagging.addr()
    );
    assert!(
        router.wait_log(&leave, Duration::from_secs(15)),
        "{}",
        router.log_text()
    );
    let left_after = stopped.elapsed();
    assert!(
        left_after >= Duration::from_secs(1),
        "left after {left_after:?}, before the lag could exceed 2 s"
    );
    assert!(router
        .log_text()
        .contains("is over max_replication_lag (2s)"));
    for _ in 0..6 {
        assert_eq!(app_port(ro), Ok(other.port));
    }
    // Roles and lag in the REST API and the metrics while the replica lags.
    let url = format!("http://127.0.0.1:{http}/api/20190715/routes/ro/destinations");
    let lag_of = |port: u16| {
        let a = common::http::curl(&["-u", "u:p"], &url)?;
        let items = a.json()["items"].as_array()?.clone();
        let d = items.into_iter().find(|d| d["port"] == port)?;
        assert_eq!(d["role"], "SECONDARY", "{d}");
        d["replicationLagSeconds"].as_u64()
    };
    assert!(
        common::eventually(Duration::from_secs(10), || lag_of(lagging.port)
            .is_some_and(|l| l >= 2)),
        "REST shows no lag over 2 s for {}: {:?}",
        lagging.addr(),
        common::http::curl(&["-u", "u:p"], &url).map(|a| a.body)
    );
    let metrics = common::http::curl(&[], &format!("http://127.0.0.1:{http}/metrics"))
        .expect("metrics")
        .body;
    for s in [lagging, other] {
        let line = format!(
            "mysqlrouter_destination_role{{route=\"ro\",destination=\"{}\",role=\"SECONDARY\"}} 1",
            s.addr()
        );
        assert!(metrics.contains(&line), "no {line} in\n{metrics}");
    }
    assert!(
        metrics.contains(&format!(
            "mysqlrouter_destination_replication_lag_seconds{{route=\"ro\",destination=\"{}\"}}",
            lagging.addr()
        )),
        "{metrics}"
    );

    replication::must(lagging, "START SLAVE SQL_THREAD");
    let back = format!(
        "[routing:ro] destination '{}' serves role SECONDARY again",
        lagging.addr()
    );
    assert!(
        router.wait_log(&back, Duration::from_secs(15)),
        "{}",
        router.log_text()
    );
    assert!(wait_port(ro, lagging.port, Duration::from_secs(5)));
    stop.store(true, Ordering::SeqCst);
    w.join().unwrap();
    eprintln!(
        "lag: replica left the SECONDARY route {} ms after its SQL thread stopped",
        left_after.as_millis()
    );
}

#[test]
fn least_connections_keeps_replicas_within_one() {
    let r = repl();
    r.wait_running(Duration::from_secs(10));
    let ro = common::free_port();
    let dests: Vec<String> = r.servers.iter().map(|s| s.addr()).collect();
    let body = format!(
        "{}{}",
        monitor_section(MON_PASS),
        route(
            "ro",
            ro,
            &dests,
            "role = SECONDARY\nrouting_strategy = least-connections"
        )
    );
    let router = Router::start(&body, &[ro]);
    let replica_ports: Vec<u16> = r
        .replica_indexes()
        .iter()
        .map(|&i| r.servers[i].port)
        .collect();
    assert!(
        wait_port(ro, replica_ports[0], Duration::from_secs(10))
            || wait_port(ro, replica_ports[1], Duration::from_secs(1))
    );
    common::rt().block_on(async {
        let mut held: Vec<(mysql_async::Conn, u16)> = Vec::new();
        for step in 0..24 {
            match step % 4 {
                // long sessions stay open
                0 | 1 => held.push(app_conn(ro).await.unwrap()),
                // a short session
                2 => {
                    let (c, p) = app_conn(ro).await.unwrap();
                    assert!(replica_ports.contains(&p));
                    c.disconnect().await.unwrap();
                }
                // one long session ends
                _ => {
                    if step % 8 == 3 && !held.is_empty() {
                        let (c, _) = held.remove(0);
                        c.disconnect().await.unwrap();
                    }
                }
            }
            // Let the router see the session end before the next one arrives.
            tokio::time::sleep(Duration::from_millis(150)).await;
            let mut count: HashMap<u16, i64> = HashMap::new();
            for (_, p) in &held {
                *count.entry(*p).or_default() += 1;
            }
            assert!(count.keys().all(|p| replica_ports.contains(p)), "{count:?}");
            let a = count.get(&replica_ports[0]).copied().unwrap_or(0);
            let b = count.get(&replica_ports[1]).copied().unwrap_or(0);
            assert!((a - b).abs() <= 1, "step {step}: {a} vs {b} active");
        }
        eprintln!(
            "least-connections: {} long sessions held at the end",
            held.len()
        );
        for (c, _) in held {
            let _ = c.disconnect().await;
        }
    });
    drop(router);
}

#[test]
fn wrong_monitor_password_fails_closed_with_one_error_line() {
    let r = repl();
    let (rw, plain) = (common::free_port(), common::free_port());
    let dests: Vec<String> = r.servers.iter().map(|s| s.addr()).collect();
    let body = format!(
        "{}{}{}",
        monitor_section("wrong"),
        route(
            "rw",
            rw,
            &dests,
            "role = PRIMARY\nrouting_strategy = first-available"
        ),
        route(
            "plain",
            plain,
            &[r.primary().addr()],
            "routing_strategy = first-available"
        )
    );
    let router = Router::start(&body, &[rw, plain]);
    // Several probe rounds.
    std::thread::sleep(Duration::from_secs(4));
    let err = app_port(rw).unwrap_err();
    assert!(
        err.contains("2003") || err.contains("Can't connect"),
        "{err}"
    );
    // The route without a role is untouched.
    assert_eq!(app_port(plain), Ok(r.primary().port));
    let text = router.log_text();
    for s in &r.servers {
        let line = format!("cannot read the role of destination '{}'", s.addr());
        assert_eq!(count_lines(&text, &line), 1, "{text}");
        assert!(text.contains("Access denied"), "{text}");
    }
    assert!(
        !text.contains("wrong"),
        "the password reached the log:\n{text}"
    );
    assert!(
        text.contains("[routing:rw] no destination serves role PRIMARY"),
        "{text}"
    );
}

fn status(s: &MariaDb, name: &str) -> u64 {
    replication::must(s, &format!("SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = '{name}'"))
        .parse()
        .unwrap()
}

#[test]
fn monitor_quits_cleanly_and_survives_a_hung_and_a_dead_server() {
    let mut s = MariaDb::start();
    replication::must(
        &s,
        "CREATE USER 'mon'@'%' IDENTIFIED BY 'monpw'; GRANT SLAVE MONITOR, BINLOG MONITOR ON *.* TO 'mon'@'%'; \
         CREATE USER 'app'@'%' IDENTIFIED BY 'app';",
    );
    let rw = common::free_port();
    // PREFERRED against a server without TLS: the monitor falls back to plain TCP.
    let body = format!(
        "{}{}",
        monitor_section_with(MON_PASS, "ssl_mode = PREFERRED"),
        route(
            "rw",
            rw,
            &[s.addr()],
            "role = PRIMARY\nrouting_strategy = first-available"
        )
    );
    let mut router = Router::start(&body, &[rw]);
    assert!(
        wait_port(rw, s.port, Duration::from_secs(10)),
        "{}",
        router.log_text()
    );

    // SIGSTOP: the probe times out, the route refuses at once instead of hanging.
    let pid = nix::unistd::Pid::from_raw(s.pid().unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
    let hung = format!(
        "cannot read the role of destination '{}': no answer within read_timeout",
        s.addr()
    );
    let ok = router.wait_log(&hung, Duration::from_secs(10));
    let t = Instant::now();
    let refused = app_port(rw);
    let took = t.elapsed();
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).unwrap();
    assert!(ok, "{}", router.log_text());
    assert!(
        refused.is_err() && took < Duration::from_secs(3),
        "{refused:?} after {took:?}"
    );
    assert!(
        wait_port(rw, s.port, Duration::from_secs(10)),
        "{}",
        router.log_text()
    );
    assert!(router.log_text().contains(&format!(
        "destination '{}' answers the monitor again",
        s.addr()
    )));

    // SIGKILL: refused while dead, back after the restart.
    s.kill();
    assert!(router.wait_log(
        &format!(
            "destination '{}' changed role from PRIMARY to UNKNOWN",
            s.addr()
        ),
        Duration::from_secs(10)
    ));
    assert!(app_port(rw).is_err());
    s.restart();
    assert!(
        wait_port(rw, s.port, Duration::from_secs(15)),
        "{}",
        router.log_text()
    );

    // A clean stop: the monitor's connection ends with COM_QUIT, and its probes in
    // between leave no aborted connection either.
    let before = (
        status(&s, "ABORTED_CONNECTS"),
        status(&s, "ABORTED_CLIENTS"),
    );
    std::thread::sleep(Duration::from_secs(2));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(router.pid()),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert_eq!(
        common::wait_exit(&mut router.child, Duration::from_secs(10)),
        Some(0)
    );
    let after = (
        status(&s, "ABORTED_CONNECTS"),
        status(&s, "ABORTED_CLIENTS"),
    );
    assert_eq!(
        before, after,
        "the monitor left aborted connections (connects, clients)"
    );
}

/// Runs the router on a config; (exit code, stderr).
fn run_config(body: &str) -> (Option<i32>, String) {
    let dir = common::tmp_dir("rolecfg");
    let path = dir.join("c.conf");
    std::fs::write(&path, format!("[DEFAULT]\nlogging_folder =\n{body}")).unwrap();
    let mut child = Command::new(common::router_bin())
        .arg("-c")
        .arg(&path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let code = common::wait_exit(&mut child, Duration::from_secs(5));
    if code.is_none() {
        let _ = child.kill();
    }
    let out = child.wait_with_output().unwrap();
    (code, String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn role_options_are_validated_with_clear_messages() {
    let mon = "[monitor]\nuser = mon\npassword = x\n";
    let r = |extra: &str| {
        format!("[routing:a]\nbind_port = 16999\ndestinations = 127.0.0.1:13306\n{extra}\n")
    };
    let cases: Vec<(String, &str)> = vec![
        (
            r("routing_strategy = round-robin\nrole = PRIMARY"),
            "Error: Configuration error: in [routing:a]: option role needs a [monitor] section",
        ),
        (
            format!("{mon}{}", r("routing_strategy = round-robin\nrole = leader")),
            "Error: Configuration error: option role in [routing:a]: The role in '?role=leader' does not contain one of the valid role names: PRIMARY, SECONDARY, PRIMARY_AND_SECONDARY",
        ),
        (
            format!("{mon}{}", r("routing_strategy = round-robin-with-fallback\nrole = PRIMARY")),
            "in [routing:a]: Strategy 'round-robin-with-fallback' is supported only for SECONDARY routing",
        ),
        (
            format!("{mon}{}", r("routing_strategy = next-available\nrole = SECONDARY")),
            "option routing_strategy in [routing:a] is invalid; valid with role are first-available, round-robin, round-robin-with-fallback, and least-connections (was 'next-available')",
        ),
        (
            format!("{mon}{}", r("routing_strategy = round-robin\nrole = PRIMARY\ndisconnect_on_promoted_to_primary = yes")),
            "in [routing:a]: Option 'disconnect_on_promoted_to_primary' is valid only for role=SECONDARY",
        ),
        (
            format!("{mon}{}", r("routing_strategy = round-robin\nrole = SECONDARY\ndisconnect_on_metadata_unavailable = maybe")),
            "in [routing:a]: Invalid value for option 'disconnect_on_metadata_unavailable'. Allowed are 'yes' and 'no'",
        ),
        (
            format!("{mon}{}", r("routing_strategy = round-robin\nrole = SECONDARY\nmax_replication_lag = -1")),
            "option max_replication_lag in [routing:a] needs value between 0 and 31536000 inclusive, was '-1'",
        ),
        (
            format!("{mon}{}", r("routing_strategy = round-robin\nmax_replication_lag = 5")),
            "in [routing:a]: option max_replication_lag needs option role",
        ),
        (
            format!("[monitor]\npassword = x\n{}", r("routing_strategy = round-robin\nrole = PRIMARY")),
            "option user in [monitor] is required",
        ),
        (
            format!("[monitor]\nuser = mon\n{}", r("routing_strategy = round-robin\nrole = PRIMARY")),
            "in [monitor]: option password_file (or password) is required",
        ),
        (
            format!("[monitor]\nuser = mon\npassword_file = /nonexistent/pw\n{}", r("routing_strategy = round-robin\nrole = PRIMARY")),
            "option password_file in [monitor]: cannot read '/nonexistent/pw'",
        ),
        (
            format!("{mon}interval = 0\n{}", r("routing_strategy = round-robin\nrole = PRIMARY")),
            "option interval in [monitor] needs value between 1 and 3600 inclusive, was '0'",
        ),
        (
            format!("{mon}ssl_mode = VERIFY_CA\n{}", r("routing_strategy = round-robin\nrole = PRIMARY")),
            "invalid value 'VERIFY_CA' for option ssl_mode in [monitor]. Allowed are: DISABLED,PREFERRED,REQUIRED.",
        ),
    ];
    for (conf, want) in cases {
        let (code, err) = run_config(&conf);
        assert_eq!(code, Some(1), "{conf}\n{err}");
        assert!(
            err.contains(want),
            "config:\n{conf}\nwant: {want}\ngot: {err}"
        );
    }
}

#[test]
fn password_in_a_readable_config_is_warned_about() {
    use std::os::unix::fs::PermissionsExt;
    let port = common::free_port();
    let dir = common::tmp_dir("pwwarn");
    let path = dir.join("c.conf");
    std::fs::write(
        &path,
        format!(
            "[DEFAULT]\nlogging_folder =\n[monitor]\nuser = mon\npassword = s3cret-pw\n\n[routing:a]\nbind_port = {port}\ndestinations = 127.0.0.1:1\nrouting_strategy = round-robin\nrole = SECONDARY\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut child = Command::new(common::router_bin())
        .arg("-c")
        .arg(&path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = common::wait_exit(&mut child, Duration::from_secs(5));
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("monitor WARNING")
            && err.contains(
                "[monitor] password is set in a configuration file that other users can read"
            ),
        "{err}"
    );
    assert!(!err.contains("s3cret-pw"), "{err}");
}

/// `etc/readconnroute.conf`, pointed at the test servers: the write port reaches the
/// primary, the read port balances over the replicas.
#[test]
fn readconnroute_sample_config_works() {
    let r = repl();
    r.wait_running(Duration::from_secs(10));
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/etc/readconnroute.conf"
    ))
    .unwrap();
    let (w, rd) = (common::free_port(), common::free_port());
    let dir = common::tmp_dir("readconnroute");
    let pw = dir.join("monitor.pw");
    std::fs::write(&pw, format!("{MON_PASS}\n")).unwrap();
    let dests: Vec<String> = r.servers.iter().map(|s| s.addr()).collect();
    let conf = text
        .replace(
            "logging_folder =",
            &format!("logging_folder = {}", dir.display()),
        )
        .replace(
            "127.0.0.1:3306, 127.0.0.1:3307, 127.0.0.1:3308",
            &dests.join(", "),
        )
        .replace("bind_port = 6446", &format!("bind_port = {w}"))
        .replace("bind_port = 6447", &format!("bind_port = {rd}"))
        .replace("/etc/mysqlrouter/monitor.pw", common::path_str(&pw))
        .replace("user = monitor", &format!("user = {MON_USER}"));
    assert!(conf.contains("role = PRIMARY") && conf.contains("least-connections"));
    let path = dir.join("readconnroute.conf");
    std::fs::write(&path, conf).unwrap();
    let child = common::Proc::spawn(
        Command::new(common::router_bin())
            .arg("-c")
            .arg(&path)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null()),
    );
    let router = Router {
        child,
        log: dir.join("mysqlrouter.log"),
        conf: path,
        dir: dir.clone(),
    };
    for p in [w, rd] {
        assert!(
            router.wait_log(
                &format!("listening on '127.0.0.1:{p}'"),
                Duration::from_secs(10)
            ),
            "{}",
            router.log_text()
        );
    }
    assert!(
        wait_port(w, r.primary().port, Duration::from_secs(10)),
        "{}",
        router.log_text()
    );
    let replica_ports: Vec<u16> = r
        .replica_indexes()
        .iter()
        .map(|&i| r.servers[i].port)
        .collect();
    common::rt().block_on(async {
        let mut held = Vec::new();
        for _ in 0..4 {
            held.push(app_conn(rd).await.unwrap());
        }
        let mut ports: Vec<u16> = held.iter().map(|(_, p)| *p).collect();
        ports.sort();
        let mut want = vec![
            replica_ports[0],
            replica_ports[0],
            replica_ports[1],
            replica_ports[1],
        ];
        want.sort();
        assert_eq!(ports, want);
        for (c, _) in held {
            let _ = c.disconnect().await;
        }
    });
}

/// MySQL 9.7 Group Replication, single-primary, three members:
/// `group_replication_set_as_primary()` moves the PRIMARY route, and the SECONDARY route
/// follows too. The monitor logs in with caching_sha2_password over TLS
/// (`ssl_mode = REQUIRED`); the `app` clients through the routes over plain TCP (RSA).
#[test]
fn group_replication_set_as_primary_moves_the_primary_route() {
    let g = common::group_replication::Group::start(3);
    let (rw, ro) = (common::free_port(), common::free_port());
    let dests: Vec<String> = g.members.iter().map(|m| m.addr()).collect();
    let body = format!(
        "{}{}{}",
        monitor_section_with(MON_PASS, "ssl_mode = REQUIRED"),
        route(
            "rw",
            rw,
            &dests,
            "role = PRIMARY\nrouting_strategy = first-available"
        ),
        route(
            "ro",
            ro,
            &dests,
            "role = SECONDARY\nrouting_strategy = round-robin"
        )
    );
    let router = Router::start(&body, &[rw, ro]);
    let (first, next) = (&g.members[0], &g.members[1]);
    assert_eq!(g.primary_port(), Some(first.port));
    assert!(
        wait_port(rw, first.port, Duration::from_secs(15)),
        "{}",
        router.log_text()
    );
    for _ in 0..4 {
        let p = app_port(ro).unwrap();
        assert!(p != first.port, "SECONDARY route reached the primary");
    }
    // The monitor's session on each member is encrypted.
    for m in &g.members {
        assert_eq!(
            m.must("SELECT GROUP_CONCAT(DISTINCT CONNECTION_TYPE) FROM performance_schema.threads WHERE PROCESSLIST_USER = 'mon'"),
            "SSL/TLS"
        );
    }
    let t = Instant::now();
    first.must(&format!(
        "SELECT group_replication_set_as_primary('{}')",
        next.uuid
    ));
    let switched = t.elapsed();
    assert_eq!(g.primary_port(), Some(next.port));
    assert!(
        wait_port(rw, next.port, Duration::from_secs(10)),
        "{}",
        router.log_text()
    );
    let followed = t.elapsed();
    eprintln!(
        "group replication: set_as_primary took {} ms; the PRIMARY route followed after {} ms",
        switched.as_millis(),
        followed.as_millis()
    );
    let text = router.log_text();
    assert!(
        text.contains(&format!(
            "destination '{}' changed role from SECONDARY to PRIMARY",
            next.addr()
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "destination '{}' changed role from PRIMARY to SECONDARY",
            first.addr()
        )),
        "{text}"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut seen = Vec::new();
    while seen.len() < 4 && Instant::now() < deadline {
        if let Ok(p) = app_port(ro) {
            seen.push(p);
        }
    }
    assert!(seen.len() == 4 && !seen.contains(&next.port), "{seen:?}");
}

/// Two writable servers at once: a PRIMARY route keeps the primary it had, a fresh one
/// refuses; a SECONDARY route with `disconnect_on_promoted_to_primary = yes` closes its
/// session on the replica that turned writable.
#[test]
fn split_brain_keeps_the_primary_it_had_or_refuses() {
    let r = repl();
    r.wait_running(Duration::from_secs(10));
    let p = r.primary();
    let rogue = &r.servers[r.replica_indexes()[0]];
    let (rw, ro, rw2) = (
        common::free_port(),
        common::free_port(),
        common::free_port(),
    );
    let dests: Vec<String> = r.servers.iter().map(|s| s.addr()).collect();
    let replicas: Vec<String> = r
        .replica_indexes()
        .iter()
        .map(|&i| r.servers[i].addr())
        .collect();
    let body = format!(
        "{}{}{}",
        monitor_section(MON_PASS),
        route("rw", rw, &dests, "role = PRIMARY\nrouting_strategy = round-robin"),
        route(
            "ro",
            ro,
            &replicas,
            "role = SECONDARY\nrouting_strategy = first-available\ndisconnect_on_promoted_to_primary = yes"
        )
    );
    let router = Router::start(&body, &[rw, ro]);
    assert!(
        wait_port(rw, p.port, Duration::from_secs(10)),
        "{}",
        router.log_text()
    );
    let rt = common::rt();
    let (mut held, held_port) = rt.block_on(app_conn(ro)).unwrap();
    assert_eq!(held_port, rogue.port);

    // The replica leaves replication and turns writable.
    replication::must(
        rogue,
        "STOP SLAVE; RESET SLAVE ALL; SET GLOBAL read_only = 0",
    );
    let keep = format!(
        "[routing:rw] split brain: '{}', '{}' are all writable; keeping '{}'",
        p.addr(),
        rogue.addr(),
        p.addr()
    );
    let keep_rev = format!(
        "[routing:rw] split brain: '{}', '{}' are all writable; keeping '{}'",
        rogue.addr(),
        p.addr(),
        p.addr()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(router.log_text().contains(&keep) || router.log_text().contains(&keep_rev)) {
        assert!(Instant::now() < deadline, "{}", router.log_text());
        std::thread::sleep(Duration::from_millis(200));
    }
    for _ in 0..6 {
        assert_eq!(app_port(rw), Ok(p.port));
    }
    // The session on the promoted replica was closed.
    assert!(router.wait_log(
        &format!(
            "[routing:ro] closing 1 connection(s) to '{}': it was promoted to PRIMARY",
            rogue.addr()
        ),
        Duration::from_secs(5)
    ));
    let r2: Result<Option<u16>, _> = rt.block_on(held.query_first("SELECT @@port"));
    assert!(
        r2.is_err(),
        "the session on the promoted replica is still open"
    );

    // A router that had no primary refuses while both are writable.
    let body2 = format!(
        "{}{}",
        monitor_section(MON_PASS),
        route(
            "fresh",
            rw2,
            &dests,
            "role = PRIMARY\nrouting_strategy = first-available"
        )
    );
    let fresh = Router::start(&body2, &[rw2]);
    assert!(
        fresh.wait_log("split brain:", Duration::from_secs(10)),
        "{}",
        fresh.log_text()
    );
    let err = app_port(rw2).unwrap_err();
    assert!(
        err.contains("2003") || err.contains("Can't connect"),
        "{err}"
    );
    let text = fresh.log_text();
    assert!(
        text.contains("refusing new clients until one remains"),
        "{text}"
    );
    assert!(
        text.contains("none of them was this route's primary"),
        "{text}"
    );

    // Back to one primary.
    replication::must(
        rogue,
        &format!(
            "SET GLOBAL read_only = 1; CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT={}, \
             MASTER_USER='t', MASTER_PASSWORD='t', MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1; START SLAVE;",
            p.port
        ),
    );
    r.wait_running(Duration::from_secs(10));
    assert!(router.wait_log("[routing:rw] split brain is over", Duration::from_secs(10)));
    assert!(
        wait_port(rw2, p.port, Duration::from_secs(10)),
        "{}",
        fresh.log_text()
    );
}
