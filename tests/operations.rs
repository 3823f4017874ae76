//! Operations: log format and sinks, logrotate (rename + SIGHUP) under load, SIGTERM
//! drain, pid file, privilege drop, systemd notifications.

mod common;

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

fn route(port: u16, s: &MariaDb) -> String {
    format!(
        "[routing:ops]\nbind_port = {port}\ndestinations = {}\nrouting_strategy = round-robin\n",
        s.addr()
    )
}

fn signal(pid: i32, sig: Signal) {
    kill(Pid::from_raw(pid), sig).unwrap();
}

/// `YYYY-MM-DD HH:MM:SS.mmm <domain> <LEVEL> [<hex>] <message>`
fn is_log_line(l: &str, frac: usize) -> bool {
    let b = l.as_bytes();
    let ts = 19 + if frac > 0 { frac + 1 } else { 0 };
    if b.len() < ts + 4 {
        return false;
    }
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    let rest: Vec<&str> = l[ts + 1..].splitn(4, ' ').collect();
    digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[10] == b' '
        && b[13] == b':'
        && b[16] == b':'
        && (frac == 0 || (b[19] == b'.' && digits(20..20 + frac)))
        && rest.len() == 4
        && ["SYSTEM", "ERROR", "WARNING", "INFO", "NOTE", "DEBUG"].contains(&rest[1])
        && rest[2].starts_with('[')
        && rest[2].ends_with(']')
        && u64::from_str_radix(&rest[2][1..rest[2].len() - 1], 16).is_ok()
}

#[test]
fn log_format_file_sink_and_folder_creation() {
    let s1 = MariaDb::start();
    let port = free_port();
    let dir = tmp_dir("logs");
    let folder = dir.join("newlogs");
    let conf = dir.join("c.conf");
    std::fs::write(
        &conf,
        format!(
            "[DEFAULT]\nlogging_folder = {}\n[logger]\nlevel = debug\ntimestamp_precision = ms\n[io]\nthreads = 3\n{}",
            folder.display(),
            route(port, &s1)
        ),
    )
    .unwrap();
    let mut child = Proc::spawn(
        Command::new(router_bin())
            .arg("-c")
            .arg(&conf)
            .stderr(Stdio::piped())
            .stdout(Stdio::piped()),
    );
    let log = folder.join("mysqlrouter.log");
    assert!(wait_file_contains(&log, "Start accepting", WAIT));
    assert_eq!(cli_port_tcp(port).unwrap(), s1.port);
    // The session ends a moment after the client: its close line, then the signal
    // (a SIGTERM first would close it "by shutdown").
    assert!(wait_file_contains(&log, "connection closed (up: ", WAIT));
    signal(child.id() as i32, Signal::SIGTERM);
    assert_eq!(wait_exit(&mut child, WAIT), Some(0));
    let out = child.output();
    assert!(
        out.stderr.is_empty(),
        "file sink: nothing on the console: {:?}",
        String::from_utf8_lossy(&out.stderr)
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&folder).unwrap().permissions().mode() & 0o777,
        0o700
    );
    let text = std::fs::read_to_string(&log).unwrap();
    for l in text.lines() {
        assert!(is_log_line(l, 3), "bad line: {l:?}");
    }
    let first = text.lines().next().unwrap();
    assert!(
        first.contains(" main SYSTEM [")
            && first.ends_with(&format!(
                "Starting 'MySQL Router', version: {} (mysqlrouter-rs)",
                env!("CARGO_PKG_VERSION")
            )),
        "{first}"
    );
    assert!(
        text.contains(" routing INFO [")
            && text.contains("[routing:ops] started: routing strategy = round-robin")
    );
    assert!(text.contains(&format!(
        "Start accepting connections for routing routing:ops listening on '127.0.0.1:{port}'"
    )));
    assert!(text.contains(" routing DEBUG [") && text.contains("connection closed (up: "));
    assert!(
        text.contains(" io INFO [")
            && text.contains("starting 3 io-threads, using backend 'linux_epoll'")
    );
    assert!(text.contains(&format!(
        "Stop accepting connections for routing routing:ops listening on 127.0.0.1:{port}"
    )));
    assert!(text.contains("[routing:ops] stopped"));
    // MySQL Router's order: the Stopping line as soon as the signal arrives, then the
    // routes stop.
    let stopping = text
        .find("Stopping 'MySQL Router', version: ")
        .expect("Stopping line");
    let stop_accepting = text
        .find("Stop accepting connections")
        .expect("Stop accepting line");
    assert!(stopping < stop_accepting, "{text}");
    assert!(
        text.lines()
            .last()
            .unwrap()
            .contains("[routing:ops] stopped"),
        "{text}"
    );
}

#[test]
fn log_folder_errors_and_console_destination() {
    let dir = tmp_dir("logerr");
    let conf = dir.join("c.conf");
    let missing = dir.join("no/such");
    std::fs::write(&conf, format!("[DEFAULT]\nlogging_folder = {}\n[routing:a]\nbind_port = {}\ndestinations = 127.0.0.1:1\nrouting_strategy = round-robin\n", missing.display(), free_port())).unwrap();
    let out = Command::new(router_bin())
        .arg("-c")
        .arg(&conf)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "Error: Error when creating dir '{}': 2: No such file or directory\n",
            missing.display()
        )
    );
    // [consolelog] destination = /dev/stdout, below-level lines filtered per sink.
    let port = free_port();
    std::fs::write(
        &conf,
        format!("[DEFAULT]\nlogging_folder =\n[logger]\nlevel = info\n[consolelog]\ndestination = /dev/stdout\nlevel = warning\n[routing:a]\nbind_port = {port}\ndestinations = 127.0.0.1:1\nrouting_strategy = round-robin\nfoo = bar\n"),
    )
    .unwrap();
    let mut child = Proc::spawn(
        Command::new(router_bin())
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    // Read the console as it is written; SIGTERM once the warning is there.
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().expect("piped stdout");
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut all = String::new();
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line.clone());
            all += &line;
            all.push('\n');
        }
        all
    });
    let deadline = Instant::now() + WAIT;
    while let Ok(l) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        if l.contains("option 'routing.foo' is not supported") {
            break;
        }
    }
    // The signal handlers are in place once the route listens.
    assert!(eventually(WAIT, || listening(port)));
    signal(child.id() as i32, Signal::SIGTERM);
    assert_eq!(wait_exit(&mut child, WAIT), Some(0));
    let stdout = reader.join().expect("stdout reader");
    let out = child.output();
    assert!(out.stderr.is_empty());
    assert!(
        stdout.contains("main WARNING") && stdout.contains("option 'routing.foo' is not supported"),
        "{stdout}"
    );
    assert!(
        !stdout.contains(" INFO "),
        "INFO filtered by the sink's level: {stdout}"
    );
    assert!(stdout.lines().all(|l| is_log_line(l, 0)), "{stdout}");
}

/// logrotate: `mv mysqlrouter.log mysqlrouter.log.1; kill -HUP` under continuous load
/// leaves every line in one of the two files.
#[test]
fn logrotate_rename_and_hup_under_load_loses_no_line() {
    let s1 = MariaDb::start();
    let port = free_port();
    let r = Router::start_with(&route(port, &s1), &[port], "debug", &[]);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let served = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let load = {
        let (stop, served) = (stop.clone(), served.clone());
        std::thread::spawn(move || {
            // (clients that got the greeting, clients that connected at all)
            let (mut greeted, mut connected) = (0usize, 0usize);
            let deadline = Instant::now() + Duration::from_secs(30);
            while !stop.load(std::sync::atomic::Ordering::SeqCst) && Instant::now() < deadline {
                // raw TCP clients: connect, read the greeting, close
                if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
                    use std::io::Read;
                    connected += 1;
                    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                    let mut g = [0u8; 256];
                    if s.read(&mut g).unwrap_or(0) > 0 {
                        greeted += 1;
                        served.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                }
            }
            (greeted, connected)
        })
    };
    let served_at_least = |n: usize| {
        assert!(
            eventually(Duration::from_secs(20), || served
                .load(std::sync::atomic::Ordering::SeqCst)
                >= n),
            "load stalled at {} clients",
            served.load(std::sync::atomic::Ordering::SeqCst)
        );
    };
    served_at_least(20);
    let rotated = r.dir.join("mysqlrouter.log.1");
    std::fs::rename(&r.log, &rotated).unwrap();
    signal(r.pid(), Signal::SIGHUP);
    r.expect_log("log file reopened (SIGHUP)");
    let after_hup = served.load(std::sync::atomic::Ordering::SeqCst);
    served_at_least(after_hup + 20);
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (n, connected) = load.join().unwrap();
    let count = |t: &str, pat: &str| t.lines().filter(|l| l.contains(pat)).count();
    let lines = |pat: &str| {
        count(&std::fs::read_to_string(&rotated).unwrap_or_default(), pat)
            + count(&r.log_text(), pat)
    };
    // The last close lines are written a moment after the clients left.
    eventually(WAIT, || {
        let a = lines("connection accepted at");
        a >= n && lines("connection closed") == a
    });
    let old = std::fs::read_to_string(&rotated).unwrap();
    let new = r.log_text();
    let accepted = count(&old, "connection accepted at") + count(&new, "connection accepted at");
    let closed = count(&old, "connection closed") + count(&new, "connection closed");
    // Every client the router served has its accepted and its closed line in one of the
    // two files (a client that timed out before its greeting is still logged).
    assert!(
        (n..=connected).contains(&accepted),
        "accepted lines {accepted}, clients greeted {n}, connected {connected}"
    );
    assert_eq!(closed, accepted, "a closed line for every accepted one");
    assert!(
        count(&new, "connection accepted at") > 0,
        "new file is written after HUP"
    );
    assert!(new.contains("log file reopened (SIGHUP)"));
}

#[test]
fn log_reopen_failure_exits_1() {
    let s1 = MariaDb::start();
    let port = free_port();
    let mut r = Router::start(&route(port, &s1), &[port]);
    std::fs::rename(&r.log, r.dir.join("old.log")).unwrap();
    std::fs::create_dir(&r.log).unwrap(); // the log path is now a directory
    signal(r.pid(), Signal::SIGHUP);
    assert_eq!(wait_exit(&mut r.child, WAIT), Some(1));
    let err = {
        let mut s = String::new();
        use std::io::Read;
        r.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        s
    };
    assert!(
        err.contains("reopening the log file failed: Cannot open log file"),
        "{err}"
    );
}

#[test]
fn sigterm_stops_accepting_drains_and_removes_pid_file() {
    let s1 = MariaDb::start();
    let port = free_port();
    let other = free_port();
    let body = format!(
        "[DEFAULT]\npid_file = router.pid\nshutdown_timeout = 5\n{}{}",
        route(port, &s1),
        route(other, &s1).replace("[routing:ops]", "[routing:idle]")
    );
    let mut r = Router::start(&body, &[port]);
    let pid_path = r.dir.join("router.pid"); // relative: under runtime_folder
    assert_eq!(
        std::fs::read_to_string(&pid_path).unwrap().trim(),
        r.pid().to_string()
    );
    assert!(r.log_text().contains(&format!(
        "PID {} written to '{}'",
        r.pid(),
        pid_path.display()
    )));
    rt().block_on(async {
        use mysql_async::prelude::Queryable;
        let mut held = mysql_async::Conn::new(opts(port)).await.unwrap();
        let t0 = Instant::now();
        signal(r.pid(), Signal::SIGTERM);
        // Stops accepting at once (well within the 5 s drain)...
        let deadline = Instant::now() + Duration::from_secs(4);
        while !(refused(port) && refused(other)) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // ...on every route, also the one with no connection...
        for p in [port, other] {
            assert!(refused(p), "{p} still accepting after SIGTERM");
        }
        // ...the active connection keeps working during the drain period...
        let p: Option<u16> = held.query_first("SELECT @@port").await.unwrap();
        assert_eq!(p, Some(s1.port));
        // ...and is closed after it.
        let code = tokio::task::block_in_place(|| wait_exit(&mut r.child, WAIT));
        assert_eq!(code, Some(0));
        let took = t0.elapsed();
        assert!(
            took >= Duration::from_millis(4500) && took < Duration::from_secs(20),
            "{took:?}"
        );
        match held.query_drop("SELECT 1").await {
            Err(mysql_async::Error::Io(_)) | Err(mysql_async::Error::Driver(_)) => {}
            other => panic!("expected a closed connection, got {other:?}"),
        }
    });
    assert!(!pid_path.exists(), "pid file removed");
    let log = r.log_text();
    assert!(log.contains("closing 1 active connection(s)"), "{log}");
    assert!(
        log.contains("Stopping 'MySQL Router', version: ")
            && log.contains(&format!(
                "reason: REQUESTED (Signal Terminated sent by UID: {} and PID: {})",
                nix::unistd::Uid::current(),
                std::process::id()
            ))
    );
}

#[test]
fn pid_file_precedence_and_live_process() {
    let dir = tmp_dir("pid");
    let port = free_port();
    let conf = dir.join("c.conf");
    let cfg_pid = dir.join("cfg.pid");
    std::fs::write(&conf, format!("[DEFAULT]\nlogging_folder =\npid_file = {}\n[routing:a]\nbind_port = {port}\ndestinations = 127.0.0.1:1\nrouting_strategy = first-available\n", cfg_pid.display())).unwrap();
    let cli_pid = dir.join("cli.pid");
    let env_pid = dir.join("env.pid");
    let start = |args: &[&str]| {
        Proc::spawn(
            Command::new(router_bin())
                .arg("-c")
                .arg(&conf)
                .args(args)
                .env("ROUTER_PID", &env_pid)
                .stdout(Stdio::null())
                .stderr(Stdio::piped()),
        )
    };
    let wait_file = |p: &std::path::Path| {
        let deadline = Instant::now() + WAIT;
        while !p.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        p.exists()
    };
    // --pid-file wins over pid_file and ROUTER_PID.
    let mut c = start(&["--pid-file", cli_pid.to_str().unwrap()]);
    assert!(wait_file(&cli_pid));
    assert!(!cfg_pid.exists() && !env_pid.exists());
    // A second router with the same pid file refuses to start.
    let second = Command::new(router_bin())
        .arg("-c")
        .arg(&conf)
        .arg("--pid-file")
        .arg(&cli_pid)
        .output()
        .unwrap();
    assert_eq!(second.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&second.stderr).contains(&format!(
        "PID file {} found. Already running?",
        cli_pid.display()
    )));
    signal(c.id() as i32, Signal::SIGTERM);
    assert_eq!(wait_exit(&mut c, WAIT), Some(0));
    assert!(!cli_pid.exists());
    // pid_file wins over ROUTER_PID.
    let mut c = start(&[]);
    assert!(wait_file(&cfg_pid));
    assert!(!env_pid.exists());
    signal(c.id() as i32, Signal::SIGTERM);
    assert_eq!(wait_exit(&mut c, WAIT), Some(0));
    // ROUTER_PID alone; a stale file of a dead process is replaced.
    std::fs::write(
        &conf,
        std::fs::read_to_string(&conf)
            .unwrap()
            .replace(&format!("pid_file = {}\n", cfg_pid.display()), ""),
    )
    .unwrap();
    std::fs::write(&env_pid, "999999\n").unwrap();
    let mut c = start(&[]);
    let deadline = Instant::now() + WAIT;
    while std::fs::read_to_string(&env_pid).unwrap_or_default().trim() != c.id().to_string()
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        std::fs::read_to_string(&env_pid).unwrap().trim(),
        c.id().to_string()
    );
    signal(c.id() as i32, Signal::SIGTERM);
    assert_eq!(wait_exit(&mut c, WAIT), Some(0));
    assert!(!env_pid.exists());
}

/// Runs as root (as CI does): `--user` switches uid, gid and supplementary groups, and
/// the process cannot get root back.
#[test]
fn user_switch_drops_root() {
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "this test needs root (CI runs as root)"
    );
    // Created for this test and deleted when the guard drops, however the test ends.
    let guard = SystemUser::create("sw");
    let name = guard.name.as_str();
    let user = nix::unistd::User::from_name(name).unwrap().unwrap();
    let dir = tmp_dir("user");
    Command::new("chown")
        .arg(format!("{name}:"))
        .arg(&dir)
        .status()
        .unwrap();
    let port = free_port();
    let conf = dir.join("c.conf");
    std::fs::write(&conf, format!("[DEFAULT]\nlogging_folder = {}\n[logger]\nlevel=info\n[routing:a]\nbind_port = {port}\ndestinations = 127.0.0.1:1\nrouting_strategy = first-available\n", dir.display())).unwrap();
    let mut c = Proc::spawn(
        Command::new(router_bin())
            .arg("-c")
            .arg(&conf)
            .arg("--user")
            .arg(name)
            .stderr(Stdio::piped()),
    );
    let log = dir.join("mysqlrouter.log");
    assert!(wait_file_contains(&log, "Start accepting", WAIT));
    let status = std::fs::read_to_string(format!("/proc/{}/status", c.id())).unwrap();
    let field = |k: &str| {
        status
            .lines()
            .find(|l| l.starts_with(k))
            .unwrap()
            .split_whitespace()
            .skip(1)
            .map(String::from)
            .collect::<Vec<_>>()
    };
    let uid = user.uid.as_raw().to_string();
    let gid = user.gid.as_raw().to_string();
    assert_eq!(
        field("Uid:"),
        vec![uid.clone(); 4],
        "real, effective, saved and fs uid"
    );
    assert_eq!(field("Gid:"), vec![gid.clone(); 4]);
    assert!(
        field("Groups:").iter().all(|g| *g == gid),
        "supplementary groups: {:?}",
        field("Groups:")
    );
    assert_eq!(
        field("CapEff:"),
        vec!["0000000000000000".to_string()],
        "no capabilities left"
    );
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        std::fs::metadata(&log).unwrap().uid(),
        user.uid.as_raw(),
        "log written as the user"
    );
    signal(c.id() as i32, Signal::SIGTERM);
    assert_eq!(wait_exit(&mut c, WAIT), Some(0));
    // [DEFAULT] user works the same way; an unknown user is refused.
    let out = Command::new(router_bin())
        .arg("-c")
        .arg(&conf)
        .args(["--DEFAULT.user=no_such_user_x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("Can't use user 'no_such_user_x'. Please check that the user exists!"));
}

#[test]
fn systemd_notify_ready_after_listening_and_stopping() {
    let dir = tmp_dir("notify");
    let sock_path = dir.join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(WAIT)).unwrap();
    let port = free_port();
    let conf = dir.join("c.conf");
    std::fs::write(&conf, format!("[DEFAULT]\nlogging_folder =\n[routing:a]\nbind_port = {port}\ndestinations = 127.0.0.1:1\nrouting_strategy = first-available\n")).unwrap();
    let mut c = Proc::spawn(
        Command::new(router_bin())
            .arg("-c")
            .arg(&conf)
            .env("NOTIFY_SOCKET", &sock_path)
            .stderr(Stdio::null()),
    );
    let mut buf = [0u8; 256];
    let n = sock.recv(&mut buf).unwrap();
    let msg = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(
        msg.contains("READY=1") && msg.contains("STATUS=running"),
        "{msg}"
    );
    // READY only once the route listens.
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
    signal(c.id() as i32, Signal::SIGTERM);
    let n = sock.recv(&mut buf).unwrap();
    let msg = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(
        msg.contains("STOPPING=1") && msg.contains("STATUS=Router shutdown in progress"),
        "{msg}"
    );
    assert_eq!(wait_exit(&mut c, WAIT), Some(0));
}

/// SIGPIPE is ignored: the router's SigIgn mask has it, a SIGPIPE sent to it and
/// clients that vanish while it writes to them leave it serving (a router that
/// restored the default action would die of either).
#[test]
fn sigpipe_does_not_kill_the_router() {
    let s1 = MariaDb::start();
    let port = free_port();
    let mut r = Router::start(&route(port, &s1), &[port]);
    let status = std::fs::read_to_string(format!("/proc/{}/status", r.pid())).unwrap();
    let ign = status
        .lines()
        .find_map(|l| l.strip_prefix("SigIgn:"))
        .map(|v| u64::from_str_radix(v.trim(), 16).unwrap())
        .unwrap();
    assert!(
        ign & (1 << (Signal::SIGPIPE as i32 - 1)) != 0,
        "SIGPIPE not ignored: SigIgn {ign:x}"
    );
    r.signal(Signal::SIGPIPE);
    // Clients that vanish while the router writes to them.
    for _ in 0..50 {
        let s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::from_secs(0)));
        drop(s);
    }
    assert_eq!(cli_port_tcp(port).unwrap(), s1.port);
    assert!(r.is_running());
}

/// SIGINT stops the router like SIGTERM. With the default `shutdown_timeout = 0`
/// active connections on every route are closed at once, as Oracle's router does.
#[test]
fn sigint_with_default_shutdown_timeout_closes_every_route_at_once() {
    let s1 = MariaDb::start();
    let (a, b) = (free_port(), free_port());
    let body = format!(
        "[DEFAULT]\npid_file = router.pid\n{}{}",
        route(a, &s1),
        route(b, &s1).replace("[routing:ops]", "[routing:ops2]")
    );
    let mut r = Router::start(&body, &[a, b]);
    let pid_path = r.dir.join("router.pid");
    assert!(pid_path.exists());
    rt().block_on(async {
        use mysql_async::prelude::Queryable;
        let mut ca = mysql_async::Conn::new(opts(a)).await.unwrap();
        let mut cb = mysql_async::Conn::new(opts(b)).await.unwrap();
        let t0 = Instant::now();
        r.signal(Signal::SIGINT);
        let code = tokio::task::block_in_place(|| r.child.wait_exit(WAIT));
        assert_eq!(code, Some(0));
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "took {:?}",
            t0.elapsed()
        );
        for c in [&mut ca, &mut cb] {
            match c.query_drop("SELECT 1").await {
                Err(mysql_async::Error::Io(_)) | Err(mysql_async::Error::Driver(_)) => {}
                other => panic!("expected a closed connection, got {other:?}"),
            }
        }
    });
    assert!(!pid_path.exists(), "pid file removed");
    for p in [a, b] {
        assert!(refused(p));
    }
    let log = r.log_text();
    assert!(
        log.contains(&format!(
            "reason: REQUESTED (Signal Interrupt sent by UID: {} and PID: {})",
            nix::unistd::Uid::current(),
            std::process::id()
        )),
        "{log}"
    );
    assert!(
        !log.contains("waiting up to"),
        "no drain period by default: {log}"
    );
    // At once: the router's own timestamps of the signal and of the close.
    let stamp = |needle: &str| {
        log_ms(
            log.lines()
                .find(|l| l.contains(needle))
                .unwrap_or_else(|| panic!("no {needle:?} line: {log}")),
        )
    };
    let after = ms_between(
        stamp("Stopping 'MySQL Router'"),
        stamp("closing 2 active connection(s)"),
    );
    // (Any drain period would have logged "waiting up to"; this bounds the rest.)
    assert!(after < 2000, "closed {after} ms after the signal: {log}");
    for (name, p) in [("ops", a), ("ops2", b)] {
        assert!(
            log.contains(&format!(
                "Stop accepting connections for routing routing:{name} listening on 127.0.0.1:{p}"
            )),
            "{log}"
        );
    }
}

/// Log timestamps are local time (the TZ the router runs with), not UTC.
#[test]
fn log_timestamps_are_local_time() {
    let port = free_port();
    let tz = "LOC-05:30"; // POSIX: 5 h 30 min east of UTC, no zone database needed
    let date = || {
        let out = Command::new("date")
            .env("TZ", tz)
            .arg("+%Y-%m-%d %H:%M")
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let before = date();
    let r = Router::start_with(
        &format!("[routing:t]\nbind_port = {port}\ndestinations = 127.0.0.1:1\nrouting_strategy = first-available\n"),
        &[port],
        "info",
        &[("TZ", tz)],
    );
    let after = date();
    let first = r.log_line("Starting 'MySQL Router'");
    let stamp = &first[..16];
    assert!(
        stamp == before || stamp == after,
        "log time {stamp:?}, local time {before:?}..{after:?}"
    );
}

/// `[io] threads = 0` (the default) runs one I/O thread per CPU.
#[test]
fn io_threads_zero_is_one_per_cpu() {
    let port = free_port();
    let cpus = std::thread::available_parallelism().unwrap().get();
    let r = Router::start(
        &format!("[io]\nthreads = 0\n[routing:t]\nbind_port = {port}\ndestinations = 127.0.0.1:1\nrouting_strategy = first-available\n"),
        &[port],
    );
    r.expect_log(&format!(
        "starting {cpus} io-threads, using backend 'linux_epoll'"
    ));
    // Each thread names itself when it starts running.
    let io_threads = || {
        std::fs::read_dir(format!("/proc/{}/task", r.pid()))
            .unwrap()
            .flatten()
            .filter(|t| {
                std::fs::read_to_string(t.path().join("comm"))
                    .unwrap_or_default()
                    .starts_with("io-")
            })
            .count()
    };
    eventually(WAIT, || io_threads() >= cpus);
    assert_eq!(io_threads(), cpus);
}

/// Sections accepted for compatibility but not acted on load, each with an INFO line.
#[test]
fn accepted_only_sections_log_an_info_line() {
    let port = free_port();
    let r = Router::start(
        &format!("[keepalive]\ninterval = 60\n[rest_metadata_cache]\n[routing:t]\nbind_port = {port}\ndestinations = 127.0.0.1:1\nrouting_strategy = first-available\n"),
        &[port],
    );
    for sec in ["keepalive", "rest_metadata_cache"] {
        let line = r.log_line(&format!(
            "[{sec}] is accepted for compatibility but not implemented by this router; its options have no effect"
        ));
        assert!(line.contains(" main INFO ["), "{line}");
    }
}

/// `[logger] sinks = syslog` sends syslog(3)-style datagrams to /dev/log. The router runs
/// in a private mount namespace whose /dev/log is the test's own socket.
#[test]
fn syslog_sink_writes_to_dev_log() {
    let dir = tmp_dir("syslog");
    let sock_path = dir.join("log.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(WAIT)).unwrap();
    let port = free_port();
    let conf = dir.join("c.conf");
    std::fs::write(
        &conf,
        format!("[DEFAULT]\nlogging_folder =\n[logger]\nsinks = syslog\nlevel = info\n[routing:a]\nbind_port = {port}\ndestinations = 127.0.0.1:1\nrouting_strategy = first-available\n"),
    )
    .unwrap();
    let script = format!(
        "mount -t tmpfs tmpfs /dev && ln -s {} /dev/log && exec {} -c {}",
        sock_path.display(),
        router_bin(),
        conf.display()
    );
    let mut c = Proc::spawn(
        Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c", &script])
            .stderr(Stdio::piped()),
    );
    let mut got = Vec::new();
    let mut buf = [0u8; 2048];
    while let Ok(n) = sock.recv(&mut buf) {
        let m = String::from_utf8_lossy(&buf[..n]).to_string();
        let done = m.contains("Start accepting connections");
        got.push(m);
        if done {
            break;
        }
    }
    let pid = c.id();
    signal(c.id() as i32, Signal::SIGTERM);
    let code = wait_exit(&mut c, WAIT);
    let stderr = String::from_utf8_lossy(&c.output().stderr).into_owned();
    assert_eq!(code, Some(0), "{stderr}");
    let first = got.first().cloned().unwrap_or_default();
    // <27> = facility daemon (3) * 8 + severity error (3), for a SYSTEM line.
    assert!(first.starts_with("<27>"), "{got:?}; stderr: {stderr}");
    assert!(
        first.contains(&format!(
            " mysqlrouter[{pid}]: main SYSTEM Starting 'MySQL Router'"
        )),
        "{got:?}"
    );
    assert!(
        got.iter()
            .any(|m| m.starts_with("<30>") && m.contains("routing INFO [routing:a] started")),
        "{got:?}"
    );
}
